"""Every knob of an explanation in one frozen, validated record.

The weights are chosen so that each term is of order one at the start of
training (activation distances are scale-free, the area is a fraction, the
total variation is a mean over neighbour pairs).  The trade-off between a
tight and a loose mask (the paper's Figure 2) is ``keep_ratio`` and ``tv``:
lower ``keep_ratio`` for the least evidence the model needs, raise it (and lower
``tv``) for fuller coverage; the per-image mask keeps an exact area budget that
``area`` shrinks while the mask suffices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

DISTANCES = ("auto", "mse", "std_mse", "cosine")
FILLS = ("mean", "black", "blur")
BACKGROUNDS = ("zeros", "gaussian", "uniform")


@dataclass(frozen=True)
class ExplainConfig:
    """Loss weights, schedule and mask generator settings.

    Build one with keywords (``ExplainConfig(keep_ratio=0.9)``), from a preset
    (``ExplainConfig.preset("fast")``) or derive one (``cfg.replace(steps=300)``).
    Unknown names raise a ``TypeError`` that lists the valid ones.
    """

    # -- loss weights ---------------------------------------------------
    activation: float = 1.0  #: multi-layer activation matching (target-aware: see ``target_aware``)
    kl: float = 1.0  #: KL between softmax(f(x)/T) and softmax(f(e)/T)
    ce: float = 1.0  #: cross-entropy keeping the target on the explanation
    #: pressure towards fewer pixels: the per-image mask keeps an exact area budget that shrinks by
    #: exp(-0.025 * area) after each sufficient step (grows after an insufficient one); for a trained
    #: generator (amortised) it is the weight of the fraction of pixels kept
    area: float = 6.0
    binarization: float = 0.2  #: mean of m - m^2 (crisp 0/1 probabilities)
    tv: float = 0.5  #: 8-neighbour total variation (compact masks)
    robustness: float = 1.0  #: target kept with random backgrounds outside the mask

    # -- how terms are measured ---------------------------------------
    layer_weights: tuple[float, ...] | None = None  #: per tapped layer; default grows with depth
    distance: str | tuple[str, ...] = "auto"  #: "auto": cosine for the first two taps, std_mse deeper
    temperature: float = 2.0
    #: the kept mask must recover this share of what x adds to the target's probability over the fill:
    #: p(e) >= p(fill) + keep_ratio * (p(x) - p(fill))
    keep_ratio: float = 0.8
    #: where the start's smallest sufficient cut already gives the target the probability it has on x (as
    #: when it drops other objects that compete with it), smaller masks must keep that: all of what x adds
    keep_free_confidence: bool = True
    #: drop each separate piece of the final mask that the decision does not need (a patch of background,
    #: or one of several objects of the class when another suffices); False keeps such redundant evidence
    drop_pieces: bool = True
    #: weight each tapped position by its relevance to the target (gradient x activation on x), and start
    #: the mask there: without it, matching every activation of x rewards keeping every object in the image
    target_aware: bool = True
    area_gate: bool = True  #: scale area/TV pressure by p(target | explanation): shrink only while the decision holds
    #: what replaces removed pixels: blurred x (default), the dataset mean colour (the paper's), or black.
    #: Against a flat colour the mask's own outline becomes evidence (a disc kept from a ring's
    #: surroundings reads as a ring); a blur leaves no edge to read. Measured on grids of photos and on scenes.
    #: Per image the fill is made stronger, then another kind, until the model does not give the target to
    #: the fill alone (``nbexplain.core.fills``); ``res.fill`` says what was used
    fill: str = "blur"
    #: other neutral fills under which a sufficient mask must keep the label too (a mask that is the
    #: evidence should not depend on which neutral value replaces the rest): "mean" (the paper's fill),
    #: "black", "blur" (the strongest blur); ``res.checks`` reports each. () judges the own fill only
    check_fills: tuple[str, ...] = ("mean",)
    backgrounds: tuple[str, ...] = BACKGROUNDS  #: kinds of random background for robustness
    n_backgrounds: int = 1  #: robustness variants per step (batched with e in one forward)
    #: the variants join every k-th step (1: every step; ``fast`` uses 2, where a step without them costs
    #: half as much); with ``strict_backgrounds`` they join every step
    robustness_every: int = 1
    #: a mask counts as sufficient only if the label also holds on that step's random backgrounds (else the
    #: backgrounds act through the robustness term, and ``res.robustness`` reports the share that keep it):
    #: strict suits small models on simple scenes; real ImageNet models change their mind on noise
    strict_backgrounds: bool = False

    # -- schedule ---------------------------------------------------------
    steps: int = 60  #: maximum optimisation steps
    lr: float = 0.001  #: Adam (U-Net weights), cosine-decayed to a tenth over `steps`
    pixel_lr: float = 0.05  #: learning rate of the per-pixel logit offset beside the U-Net (0: U-Net only)
    #: steps over which the learning rates ramp up from zero: Adam's first step moves every weight by
    #: the full rate, and through the freshly calibrated U-Net that can empty or fill the whole mask at once
    warmup: int = 5
    min_steps: int = 15  #: never stop before this
    patience: int = 8  #: stop once no smaller sufficient mask has come for this many steps
    stable_tol: float = 0.002  #: fraction of mask pixels allowed to flip while "stable"
    #: if no step found a mask that keeps the label, train once more from a mask keeping this
    #: share of the image (None: no retry)
    retry_area: float | None = 0.9

    # -- mask generator -------------------------------------------------
    mask_resolution: int = 56  #: longest side of the working mask; upsampled to the input
    unet_width: int = 16
    unet_depth: int = 3

    # -- necessary evidence (``res.necessary``, ``nbexplain.core.necessity``) --------------------
    #: also find the smallest region whose removal changes the decision (what the sufficient mask need not show:
    #: evidence that only tips a decision, like a watermark)
    necessary: bool = True
    necessary_steps: int = 2  #: gradient steps on the region's cells after its relevance start (0: cut the start)
    necessary_lr: float = 0.3  #: Adam's rate on the cell logits
    necessary_area: float = 2.0  #: price of the removed share in the region's loss
    #: cells along the longest side, at most one a pixel (a transformer uses its patches): fine enough for the
    #: strokes of a text
    necessary_cells: int = 112
    #: how removed pixels are replaced: "surroundings" (what the kept pixels around them predict:
    #: ``nbexplain.core.fills.surroundings``) or "fills" (the explanation's fill and each check fill, the
    #: decision changing under all)
    necessary_removal: str = "surroundings"
    #: random partial removals averaged into the region's relevance start (``nbexplain.core.necessity``)
    necessary_draws: int = 3
    #: the largest region tried; where none up to this changes the decision, ``res.necessary.found`` is False
    necessary_max_area: float = 0.3
    #: without ``foil=``, the decision must change to one of the image's next this-many classes
    necessary_foils: int = 5
    robustness_draws: int = 8  #: random backgrounds scored on the final mask (``res.robustness``); 0 skips it

    max_input_pixels: int | None = 1024 * 1024  #: refuse larger inputs (resize them first)

    def __post_init__(self) -> None:
        for name in ("activation", "kl", "ce", "area", "binarization", "tv", "robustness"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"ExplainConfig.{name} must be a number >= 0, got {value!r}")
        dists = (self.distance,) if isinstance(self.distance, str) else tuple(self.distance)
        for d in dists:
            if d not in DISTANCES:
                raise ValueError(f"ExplainConfig.distance: unknown distance {d!r}; choose from {DISTANCES}")
        if self.fill not in FILLS:
            raise ValueError(f"ExplainConfig.fill must be one of {FILLS}, got {self.fill!r}")
        if isinstance(self.check_fills, list):
            object.__setattr__(self, "check_fills", tuple(self.check_fills))
        bad_checks = [k for k in self.check_fills if k not in FILLS] if isinstance(self.check_fills, tuple) else None
        if bad_checks is None or bad_checks:
            raise ValueError(f"ExplainConfig.check_fills must be a tuple of fills from {FILLS}, got {self.check_fills!r}")
        bad = [b for b in self.backgrounds if b not in BACKGROUNDS]
        if bad or not self.backgrounds:
            raise ValueError(f"ExplainConfig.backgrounds must be a non-empty subset of {BACKGROUNDS}, got {self.backgrounds!r}")
        if not 0 <= self.keep_ratio <= 1:
            raise ValueError(f"ExplainConfig.keep_ratio must be in [0, 1], got {self.keep_ratio!r}")
        if self.temperature <= 0:
            raise ValueError("ExplainConfig.temperature must be > 0")
        if self.layer_weights is not None and any(w < 0 for w in self.layer_weights):
            raise ValueError("ExplainConfig.layer_weights must be >= 0")
        _positive_int(self, "steps", "robustness_every", "mask_resolution", "unet_width", "unet_depth", "patience", "warmup")
        _non_negative_int(self, "min_steps", "n_backgrounds", "robustness_draws", "necessary_steps", "necessary_draws")
        _positive_int(self, "necessary_cells", "necessary_foils")
        if self.necessary_removal not in ("surroundings", "fills"):
            raise ValueError(f"ExplainConfig.necessary_removal must be 'surroundings' or 'fills', got "
                             f"{self.necessary_removal!r}")
        if not 0 < self.necessary_max_area <= 1:
            raise ValueError(f"ExplainConfig.necessary_max_area must be in (0, 1], got {self.necessary_max_area!r}")
        if self.necessary_area < 0 or not 0 < self.necessary_lr < 10:
            raise ValueError("ExplainConfig.necessary_area must be >= 0 and necessary_lr in (0, 10)")
        if not 0 <= self.pixel_lr < 10:
            raise ValueError(f"ExplainConfig.pixel_lr must be in [0, 10), got {self.pixel_lr!r}")
        retry = self.retry_area
        if retry is not None and not (isinstance(retry, (int, float)) and not isinstance(retry, bool) and 0 < retry <= 1):
            raise ValueError(f"ExplainConfig.retry_area must be in (0, 1] or None, got {self.retry_area!r}")
        if not 0 < self.lr < 10:
            raise ValueError(f"ExplainConfig.lr must be in (0, 10), got {self.lr!r}")
        if self.mask_resolution < 2 ** self.unet_depth:
            raise ValueError("ExplainConfig.mask_resolution must be at least 2 ** unet_depth")

    @classmethod
    def preset(cls, name: str, **overrides) -> "ExplainConfig":
        """A named preset: ``"fast"``, ``"default"`` or ``"thorough"``, with optional overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls.from_kwargs(**{**PRESETS[name], **overrides})

    @classmethod
    def from_kwargs(cls, **kwargs) -> "ExplainConfig":
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise TypeError(f"unknown ExplainConfig option(s) {unknown}; valid options: {sorted(valid)}")
        return cls(**kwargs)

    def replace(self, **changes) -> "ExplainConfig":
        """A copy with some fields changed (validated)."""
        return type(self).from_kwargs(**{**dataclasses.asdict(self), **changes})


PRESETS: dict[str, dict] = {
    "default": {},
    # Interactive: a third of the steps, stopping sooner, and ``res.robustness`` is measured on
    # 4 random backgrounds (not 8).
    "fast": dict(steps=20, min_steps=6, patience=4, warmup=3, robustness_every=2, robustness_draws=4,
                 necessary_steps=1, necessary_draws=1),
    # Closer to the authors' budget: more steps, all background kinds each step.
    "thorough": dict(steps=300, min_steps=100, patience=40, n_backgrounds=3),
}


def resolve_config(config) -> ExplainConfig:
    """Accept an ExplainConfig, a preset name, a dict of options, or None."""
    if config is None:
        return ExplainConfig()
    if isinstance(config, ExplainConfig):
        return config
    if isinstance(config, str):
        return ExplainConfig.preset(config)
    if isinstance(config, dict):
        return ExplainConfig.from_kwargs(**config)
    raise TypeError(f"config must be an ExplainConfig, a preset name or a dict, got {type(config).__name__}")


def parse_options(text: str) -> dict:
    """ExplainConfig overrides written for a command line, ``"keep_ratio=0.9,fill='mean'"``, as keywords
    (each value a Python literal)."""
    import ast

    try:
        call = ast.parse(f"options({text})", mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"options must read like keyword arguments, e.g. \"keep_ratio=0.9,fill='mean'\"; "
                         f"got {text!r}") from err
    if call.args:
        raise ValueError(f"options must all be named (name=value); got {text!r}")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def _positive_int(cfg, *names):
    for name in names:
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"ExplainConfig.{name} must be an integer >= 1, got {v!r}")


def _non_negative_int(cfg, *names):
    for name in names:
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"ExplainConfig.{name} must be an integer >= 0, got {v!r}")


__all__ = ["ExplainConfig", "PRESETS", "resolve_config", "parse_options", "DISTANCES", "FILLS", "BACKGROUNDS"]
