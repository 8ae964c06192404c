"""An amortised explainer: one mask generator trained over many images, then
explanations in a single forward pass (optionally refined per image).

The generator is the per-image U-Net, given what the frozen classifier already
knows: its tapped activations on the image (a 1x1 projection per layer), a
class-specific map (a learned class embedding dotted with the deepest layer's
channels, like a CAM), and the per-image method's own starting ranking (the
target's relevance, as it is and smoothed along the image's edges), which it
adds to its output as a prior. It learns from the per-image masks of the
training images what to change in that ranking; every one-pass mask is then the
smallest sufficient cut of its logits, checked as a per-image mask is.
"""

from __future__ import annotations

import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .config import resolve_config
from .types import ConfigLike, Images, Labels, Preprocess, Target
from .core.batching import images_per_pass
from .core.fills import make_fill
from .core.inputs import DefaultPreprocess, Normalization, per_image, split_images, to_model_input
from .core.masknet import MaskUNet
from .core.optimize import MaskOptimizer, working_size
from .core.plumbing import LogitsOf, borrowed, input_channels
from .core.relevance import relevance_maps, relevance_probes, start_logits
from .core.sufficiency import total_loss
from .core.taps import tap_activations
from .explainer import Explainer

FORMAT = "nbexplain-amortized-3"
STARTS = 2  #: prior maps the generator sees: the relevance ranking as it is, and smoothed along edges


class ConditionedMaskNet(nn.Module):
    """U-Net over [image, projected classifier features, class map, relevance starts] -> mask logits,
    plus the relevance start itself (with a learned gain) as a prior."""

    def __init__(self, in_channels: int, num_classes: int, feature_channels: list[int], width: int = 16,
                 depth: int = 3, proj: int = 4):
        super().__init__()
        if not feature_channels:
            raise ValueError("the amortised explainer needs at least one tapped layer with [N, C, H, W] outputs")
        self.config = dict(in_channels=in_channels, num_classes=num_classes, feature_channels=list(feature_channels),
                           width=width, depth=depth, proj=proj)
        self.proj = nn.ModuleList(nn.Conv2d(c, proj, 1) for c in feature_channels)
        self.class_map = nn.Embedding(num_classes, feature_channels[-1])
        nn.init.normal_(self.class_map.weight, std=feature_channels[-1] ** -0.5)
        self.unet = MaskUNet(in_channels + proj * len(feature_channels) + 1 + STARTS, n=1, width=width, depth=depth)
        self.prior = nn.Parameter(torch.tensor(1.0))

    @property
    def head(self):
        return self.unet.head

    def forward(self, x_small: torch.Tensor, target: torch.Tensor, feats: list[torch.Tensor],
                starts: torch.Tensor) -> torch.Tensor:
        size = x_small.shape[-2:]
        # Each layer scaled to unit mean magnitude per image: layers and models differ by orders of magnitude.
        feats = [f / (f.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-6) for f in feats]
        maps = [p(f) for p, f in zip(self.proj, feats)]
        maps.append((self.class_map(target)[:, :, None, None] * feats[-1]).sum(1, keepdim=True))
        maps = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
        return self.unet(torch.cat([x_small, *maps, starts], dim=1)) + self.prior * starts.mean(1)


class _ForTarget(nn.Module):
    """The conditioned generator with its classes, features and starts fixed: net_input -> logits."""

    def __init__(self, net: ConditionedMaskNet, target: torch.Tensor, feats: list[torch.Tensor], starts: torch.Tensor):
        super().__init__()
        self.net, self.target, self.feats, self.starts = net, target, feats, starts

    @property
    def head(self):
        return self.net.head

    def forward(self, x_small):
        return self.net(x_small, self.target, self.feats, self.starts)


def spatial_features(acts: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The tapped activations that are feature maps [N, C, H, W], finest first (so the last is the deepest)."""
    maps = [a.detach() for a in acts.values() if a.dim() == 4]
    return sorted(maps, key=lambda a: -a.shape[-1] * a.shape[-2])


def relevance_starts(relevance: dict, x: torch.Tensor, cfg) -> torch.Tensor:
    """The per-image method's starting rankings [B, STARTS, h, w] at the mask's working size (zeros where
    no relevance was read, e.g. with ``target_aware=False``)."""
    size = working_size(*x.shape[-2:], cfg)
    if not relevance:
        return x.new_zeros(x.shape[0], STARTS, *size)
    guide = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return torch.stack([start_logits(relevance, size, 0.5), start_logits(relevance, size, 0.5, guide=guide)], 1)


class AmortizedExplainer(Explainer):
    """Train once over a dataset, then explain in one forward pass.

    >>> am = AmortizedExplainer(model, preprocess=pre, labels=labels)
    >>> am.fit(train_images)                 # images, (image, label) pairs, a tensor, a Dataset or a DataLoader
    >>> res = am.explain(img)                # one generator pass, then its smallest sufficient cut
    >>> res = am.explain(img, refine=10)     # then 10 per-image steps from that start
    >>> am.save("amortized.pt"); AmortizedExplainer.load("amortized.pt", model)
    """

    def __init__(self, model: nn.Module, layers: list[str] | None = None, preprocess: Preprocess = None,
                 labels: Labels = None, config: ConfigLike = None, device: str | torch.device | None = None):
        super().__init__(model, layers=layers, preprocess=preprocess, labels=labels, config=config, device=device)
        from .core.taps import plan_layers

        if any(v.layout != "channels_first" for v in plan_layers(self._network, self.layers).views.values()):
            raise ValueError(
                f"the amortised explainer reads channels-first feature maps; {type(self._network).__name__}'s layers "
                f"{self.layers} are tokens or channels-last maps (a transformer). Use Explainer(model).explain(...), "
                "which reads them."
            )
        self.generator: ConditionedMaskNet | None = None
        self.fit_history: dict[str, list[float]] = {}
        self.fit_info: dict = {}  #: images, size, seconds of the teacher and of the distillation
        self.teacher_masks: torch.Tensor | None = None  #: the per-image masks fit() learned from (reuse: fit(masks=))
        self.classes_seen: tuple[int, ...] = ()  #: the classes fit() explained

    # ------------------------------------------------------------------
    def fit(self, images, targets: Target = None, *, masks: torch.Tensor | None = None, steps: int = 1000, finetune_steps: int = 0,
            batch_size: int = 16, lr: float = 3e-3, teacher: str = "fast", seed: int = 0,
            progress: bool = True) -> "AmortizedExplainer":
        """Train the generator over ``images``: a list of images or ``(image, label)`` pairs, a
        [N, C, H, W] model-space tensor, a torch ``Dataset`` or a ``DataLoader`` (of images or
        ``(image, label)`` items), all of one size.

        First the per-image explainer (preset ``teacher``, batched) explains every image
        (``self.teacher_masks`` keeps those masks: pass them as ``masks=`` to a second fit to skip
        this pass), and the generator learns to reproduce them from the classifier's features and
        the relevance start (cross-entropy per pixel). Then, optionally, ``finetune_steps`` steps
        of the explanation objective itself. ``targets``: classes to explain (default: each
        image's top-1; ``"label"``: the data's labels).
        """
        started = time.perf_counter()
        x_all, labels = self._training_images(images)
        n = x_all.shape[0]
        if isinstance(targets, str):
            if targets != "label":
                raise ValueError(f"targets must be class indices, None (top-1) or 'label', got {targets!r}")
            if any(label is None for label in labels):
                raise ValueError("targets='label' needs labelled data: (image, label) items or class folders")
            targets = labels
        if masks is None:
            masks, y_all = self._teacher_masks(x_all, targets, teacher, seed, progress)
        else:
            masks = torch.as_tensor(masks).float()
            if masks.shape != (n, *x_all.shape[-2:]):
                raise ValueError(f"masks must be [N, H, W] = {[n, *x_all.shape[-2:]]}, got {list(masks.shape)}")
            y_all = self._target_tensor([None] * n if targets is None else list(targets), self._logits_of(x_all)).tolist()
        teacher_seconds = time.perf_counter() - started
        self.teacher_masks = masks
        self.classes_seen = tuple(sorted(set(int(t) for t in y_all)))
        y_all = torch.tensor(y_all)
        size = working_size(*x_all.shape[-2:], self.config)
        small = F.interpolate(masks[:, None], size=size, mode="area")[:, 0]
        x_small = F.interpolate(x_all, size=size, mode="bilinear", align_corners=False, antialias=True)
        starts = self._starts_of(x_all, y_all)
        net_model = self._network
        classes = self._logits_of(x_all[:1]).shape[1]
        with borrowed(net_model), tap_activations(net_model, self.layers) as taps:
            # Per batch, not cached: a large model's early feature maps for a whole dataset do not fit in memory.
            def features(idx):
                with torch.no_grad():
                    net_model(x_all[idx].to(self.device).clone())
                    return spatial_features(taps.collect())

            if self.generator is None:
                feats = features(torch.arange(1))
                with torch.random.fork_rng():
                    torch.manual_seed(seed)
                    self.generator = ConditionedMaskNet(x_all.shape[1], classes, [f.shape[1] for f in feats],
                                                        self.config.unet_width, self.config.unet_depth).to(self.device)
            gen = torch.Generator().manual_seed(seed)
            optim = torch.optim.Adam(self.generator.parameters(), lr=lr)
            self.generator.train()
            # Kept pixels are rare: weight them up so the generator does not settle on empty masks.
            kept = float(small.mean().clamp(1e-3, 1 - 1e-3))
            pos_weight = torch.tensor(min(20.0, (1 - kept) / kept), device=self.device)
            bar = _progress(steps, progress, "training the generator")
            with torch.inference_mode(False), torch.enable_grad():
                for step in range(steps):
                    idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
                    z = self.generator(x_small[idx].to(self.device), y_all[idx].to(self.device), features(idx),
                                       starts[idx].to(self.device))
                    loss = F.binary_cross_entropy_with_logits(z, small[idx].to(self.device), pos_weight=pos_weight)
                    optim.zero_grad(set_to_none=True)
                    loss.backward()
                    # No normalisation layers in the U-Net: clipping keeps a rare huge step from diverging it.
                    nn.utils.clip_grad_norm_(self.generator.parameters(), 1.0)
                    optim.step()
                    self.fit_history.setdefault("distill", []).append(float(loss.detach()))
                    if bar is not None:
                        bar.update(1)
            if bar is not None:
                bar.close()
        if finetune_steps:
            with torch.inference_mode(False), torch.enable_grad():
                self._finetune(x_all, y_all, starts, finetune_steps, batch_size, lr / 10, seed)
        self.generator.eval()
        self.fit_info = {"images": n, "size": list(x_all.shape[-2:]),
                         "teacher": teacher if isinstance(teacher, str) else "custom",
                         "teacher_seconds": teacher_seconds, "seconds": time.perf_counter() - started}
        return self

    def _training_images(self, data) -> tuple[torch.Tensor, list]:
        """Model-space images [N, C, H, W] and their labels (None where unknown) from any accepted data."""
        if isinstance(data, torch.Tensor) and data.dim() == 4:
            return data.detach().float(), [None] * data.shape[0]
        channels = input_channels(self._network)
        xs, labels = [], []
        if isinstance(data, torch.utils.data.DataLoader):
            for batch in data:
                images, batch_labels = (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)
                images = images if isinstance(images, torch.Tensor) and images.dim() == 4 else torch.stack(list(images))
                xs.append(images.float())
                labels += [None] * len(images) if batch_labels is None else [int(v) for v in batch_labels]
            if not xs:
                raise ValueError("fit() got an empty DataLoader")
            x_all = torch.cat(xs)
        else:
            from .audits.data import as_audit_data

            items = as_audit_data(data)
            if len(items) == 0:
                raise ValueError("fit() got no images")
            for i in range(len(items)):
                xs.append(to_model_input(items.image(i), self.preprocess, self.normalization, channels))
                labels.append(items.label(i))
            shapes = sorted({tuple(x.shape[1:]) for x in xs})
            if len(shapes) != 1:
                raise ValueError(f"fit() needs images of one size; got {shapes} (resize them in preprocess)")
            x_all = torch.cat(xs)
        return x_all, labels

    def _teacher_masks(self, x_all, targets, teacher, seed, progress):
        """Per-image explanations of every training image, batched: (masks [N, H, W], targets)."""
        n = x_all.shape[0]
        teacher_ex = Explainer(self.model, layers=self.layers, preprocess=self.preprocess, labels=self.labels,
                               config=self.config.preset(teacher) if isinstance(teacher, str) else teacher)
        teacher_ex.normalization = self.normalization
        masks, y_all = [], []
        bar = _progress(n, progress, "explaining the training images")
        for start in range(0, n, 32):
            idx = list(range(start, min(n, start + 32)))
            tgt = None if targets is None else [int(targets[i]) for i in idx]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # notes on single training images are not the user's concern here
                results = teacher_ex.explain(list(x_all[idx]), target=tgt, seed=seed, progress=False, live=False)
            masks += [r.mask for r in results]
            y_all += [r.target for r in results]
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return torch.stack(masks), y_all

    def _starts_of(self, x_all, y_all) -> torch.Tensor:
        """The relevance starts [N, STARTS, h, w] of the training images, in batches."""
        net, out = self._network, []
        with borrowed(net), tap_activations(net, self.layers) as taps, torch.inference_mode(False), torch.enable_grad():
            for i in range(0, len(x_all), 32):
                x = x_all[i:i + 32].to(self.device)
                with relevance_probes(net, self.layers, True) as probes:
                    scores = LogitsOf(net)(x.clone())
                    acts = {k: a.detach() for k, a in taps.collect().items()}
                    rel = relevance_maps(scores, probes, acts, y_all[i:i + 32].to(self.device))
                out.append(relevance_starts(rel, x, self.config).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def _logits_of(self, x_all):
        with borrowed(self._network):
            return torch.cat([LogitsOf(self._network)(x_all[i:i + 64].to(self.device).clone())
                              for i in range(0, len(x_all), 64)])

    def _finetune(self, x_all, y_all, starts, steps, batch_size, lr, seed) -> None:
        """Steps of the explanation objective itself, over random batches."""
        cfg, net_model, n = self.config, self._network, x_all.shape[0]
        gen = torch.Generator().manual_seed(seed + 1)
        optim = torch.optim.Adam(self.generator.parameters(), lr=lr)
        with borrowed(net_model), tap_activations(net_model, self.layers) as taps:
            for step in range(steps):
                idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
                x, target = x_all[idx].to(self.device), y_all[idx].to(self.device)
                with torch.no_grad():
                    logits_x = LogitsOf(net_model)(x.clone())
                    acts_x = taps.collect()
                fill = make_fill(x, cfg.fill, self.normalization)
                net = _ForTarget(self.generator, target, spatial_features(acts_x), starts[idx].to(self.device))
                problem = MaskOptimizer(LogitsOf(net_model), taps, self.layers, x, target, acts_x, logits_x, fill,
                                        cfg, seed + step, net=net)
                terms, hard, logits_e, *_ = problem.loss_terms(step)
                total = total_loss(cfg, terms, logits_e, target).mean()
                optim.zero_grad(set_to_none=True)
                total.backward()
                optim.step()
                self.fit_history.setdefault("finetune", []).append(float(total.detach()))

    # ------------------------------------------------------------------
    def explain(self, image: Images, target: Target = None, *, refine: int = 0, seed: int = 0, progress: bool = False,
                callbacks=(), live: bool | None = False, config: ConfigLike = None, **options):
        """One generator pass and its smallest sufficient cut (plus ``refine`` per-image steps from it).

        Same-size images of a list (or of a batched tensor ``[B, C, H, W]``) go through together, as
        many as fit one pass. The result's
        ``sufficient`` says whether a cut kept the label (under the fill and every check fill)."""
        if self.generator is None:
            raise RuntimeError("this AmortizedExplainer is not trained: call fit(images) or load a saved one first")
        cfg = resolve_config(config) if config is not None else self.config
        # No steps to wait for, so no robustness draws and no necessary evidence unless asked
        # (necessary=True): they would dominate the time of one pass.
        cfg = cfg.replace(**{"robustness_draws": 0, "necessary": False, **options})
        if refine:
            # refine=k is a budget of k steps: no retry from a fuller mask after them, and no warm-up
            # (that protects a freshly calibrated U-Net; a trained generator starts from a good cut).
            cfg = cfg.replace(steps=int(refine), min_steps=min(cfg.min_steps, int(refine)), retry_area=None,
                              warmup=1)
        images, many = split_images(image)
        if not images:
            raise ValueError("explain() got an empty list of images")
        channels = input_channels(self._network)
        xs = [to_model_input(img, self.preprocess, self.normalization, channels) for img in images]
        targets = per_image(target, len(xs), "target")
        results = [None] * len(xs)
        for shape in dict.fromkeys(tuple(x.shape) for x in xs):
            idx = [i for i, x in enumerate(xs) if tuple(x.shape) == shape]
            per_step = 1 + len(cfg.check_fills) + (cfg.n_backgrounds if refine else 0)
            group = max(1, images_per_pass(self.device, *shape[-2:]) * (1 if refine else 4) // per_step)
            for part in (idx[k:k + group] for k in range(0, len(idx), group)):
                net = self._generator_copy() if refine else self.generator
                batch = torch.cat([xs[i] for i in part])
                out = self._explain_batch(batch, [targets[i] for i in part], cfg, seed, list(callbacks),
                                          mask_net=lambda t, acts, rel, x, net=net: _ForTarget(
                                              net, t, spatial_features(acts), relevance_starts(rel, x, cfg)),
                                          optimise=bool(refine))
                for i, res in zip(part, out):
                    results[i] = res
        for res in results:
            self._warn_if_unseen(res)
        return results if many else results[0]

    def _warn_if_unseen(self, res) -> None:
        if self.classes_seen and res.target not in self.classes_seen:
            warnings.warn(f"the generator never explained {res.target_name!r} during fit(): its one-pass mask "
                          "leans on the relevance start alone; fit on images of that class, or use refine=k "
                          "or the per-image Explainer", UserWarning, stacklevel=3)
        note = res.warning()
        if note:
            warnings.warn(f"explaining {res.target_name!r}: {note}.", UserWarning, stacklevel=3)

    def _generator_copy(self) -> ConditionedMaskNet:
        """Refinement trains a copy, so the shared generator is never changed by explain()."""
        copy = ConditionedMaskNet(**self.generator.config).to(self.device)
        copy.load_state_dict(self.generator.state_dict())
        return copy

    # ------------------------------------------------------------------
    def save(self, path) -> None:
        """Everything needed to explain again: the generator, the layers, the fill and check fills,
        the preprocessing's normalisation, the classes it was fitted on and how the fit went."""
        if self.generator is None:
            raise RuntimeError("nothing to save: call fit() first")
        norm = self.normalization
        torch.save({"state_dict": self.generator.state_dict(), "generator": self.generator.config,
                    "layers": list(self.layers), "fill": self.config.fill,
                    "check_fills": list(self.config.check_fills),
                    "normalization": None if norm is None else {"mean": list(norm.mean), "std": list(norm.std)},
                    "classes_seen": list(self.classes_seen), "fit_info": dict(self.fit_info),
                    "labels": self.labels, "format": FORMAT}, path)

    @classmethod
    def load(cls, path, model, layers=None, preprocess=None, labels=None, config=None, device=None):
        """A saved generator for ``model``. Without ``preprocess``, images are normalised as at fit time
        (to-tensor and the saved mean/std: resize them yourself); without ``labels``, the saved names."""
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format") != FORMAT:
            raise ValueError(f"{path} is not an nbexplain amortised generator of this version ({FORMAT}); "
                             "train it again with AmortizedExplainer.fit()")
        norm = saved.get("normalization")
        if preprocess is None and norm is not None:
            preprocess = DefaultPreprocess(Normalization(tuple(norm["mean"]), tuple(norm["std"])))
        am = cls(model, layers=layers or saved["layers"], preprocess=preprocess,
                 labels=labels if labels is not None else saved.get("labels"), config=config, device=device)
        if config is None:  # score and refine with the fills it was trained with
            am.config = am.config.replace(fill=saved["fill"], check_fills=tuple(saved["check_fills"]))
        gen_cfg = saved["generator"]
        if am.config.unet_width != gen_cfg["width"] or am.config.unet_depth != gen_cfg["depth"]:
            am.config = am.config.replace(unet_width=gen_cfg["width"], unet_depth=gen_cfg["depth"])
        am.generator = ConditionedMaskNet(**gen_cfg).to(am.device)
        am.generator.load_state_dict(saved["state_dict"])
        am.generator.eval()
        am.classes_seen = tuple(saved.get("classes_seen", ()))
        am.fit_info = dict(saved.get("fit_info", {}))
        return am


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


__all__ = ["AmortizedExplainer", "ConditionedMaskNet"]
