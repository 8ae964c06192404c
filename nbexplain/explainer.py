"""``Explainer(model).explain(img)``: the user-facing entry point."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import numbers
import time
import warnings
from functools import partial
from typing import Sequence

import torch
from torch import nn

from .config import ExplainConfig, resolve_config
from .core.batching import images_per_pass, in_chunks
from .core.inputs import DefaultPreprocess, find_normalization, per_image, split_images, to_model_input
from .core.fills import FillCheck, check_kind, hiding_fill, make_fill, random_background, surroundings
from .core.necessity import NecessarySearch, cell_grid, default_foils
from .core.optimize import MaskOptimizer
from .core.progress import ProgressBar
from .core.relevance import relevance_maps, relevance_probes
from .core.plumbing import LogitsOf, borrowed, class_name, input_channels, model_device, unwrap_model
from .core.taps import LayerPlan, plan_layers, resolve_layers, tap_activations
from .explanation import Explanation
from .types import ConfigLike, Images, Labels, Preprocess, Target

logger = logging.getLogger(__name__)

class Explainer:
    """Explains a frozen image classifier with activation-matching masks.

    Parameters
    ----------
    model : torch.nn.Module
        Any classifier mapping ``[B, C, H, W]`` to logits ``[B, classes]``.
        It is borrowed, never changed: train/eval flags, ``requires_grad`` and
        BatchNorm buffers are as before after every call, and no hook stays.
    layers : list of str, optional
        Modules whose outputs are matched (names from ``model.named_modules()``).
        Default: up to five stage outputs (the last block at each resolution, among
        modules that run once per forward), found by a probe forward at the input's
        size (``stem relu, layer1..layer4`` for torchvision ResNets; see
        ``nbexplain.core.layer_choice``).
    preprocess : callable, optional
        Turns a PIL image or HxWxC array into a model-space tensor, e.g.
        ``weights.transforms()``. Default: to-tensor plus ImageNet normalisation
        (no resize).
    labels : sequence of str or dict, optional
        Class names by id.
    config : ExplainConfig, preset name or dict, optional
        Loss weights and schedule; see ``ExplainConfig``.
    device : str or torch.device, optional
        Where to compute; must be where the model's parameters are (default).
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, preprocess: Preprocess = None,
                 labels: Labels = None, config: ConfigLike = None, device: str | torch.device | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._network = unwrap_model(model)
        self.layers = resolve_layers(self._network, _strip_wrapper_prefix(model, layers))
        # Layers (if automatic) and how to read each as a map are found again for each input size:
        # a map that is spatial at 224 px may be 1x1 at 64 px, and a ViT's patch grid follows the size.
        self._auto = layers is None
        self._plans: dict[tuple[int, int], LayerPlan] = {}
        self.plan = LayerPlan(list(self.layers), {})
        self.preprocess = preprocess if preprocess is not None else DefaultPreprocess()
        if not callable(self.preprocess):
            raise TypeError("preprocess must be callable (e.g. torchvision weights.transforms())")
        self.normalization = find_normalization(self.preprocess)
        channels = input_channels(self._network)
        if self.normalization is not None and channels is not None and len(self.normalization.mean) not in (1, channels):
            # E.g. the RGB ImageNet default on a gray model: that normalisation does not describe the model's inputs.
            self.normalization = None
        self.labels = _as_label_list(labels)
        self.config = resolve_config(config)
        home = model_device(self._network)
        self.device = torch.device(device) if device is not None else home
        if self.device.type != home.type or (self.device.index is not None and home.index is not None and self.device.index != home.index):
            raise ValueError(
                f"the model's parameters are on {home} but device={self.device}; move the model with "
                f"model.to('{self.device}') yourself (nbexplain never moves your model), or leave device unset"
            )
        self.last_partial: Explanation | None = None  #: best result so far of an interrupted run

    @property
    def network(self) -> nn.Module:
        """The eager module behind ``model`` (DataParallel / torch.compile wrappers removed): what is run."""
        return self._network

    def __repr__(self) -> str:
        return f"Explainer({type(self._network).__name__}, layers={self.layers})"

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space [C, H, W] -> displayable pixels in [0, 1] (best effort)."""
        from .explanation import to_display

        return torch.from_numpy(to_display(x, self.normalization)).permute(2, 0, 1)

    # ------------------------------------------------------------------
    def explain(self, image: Images, target: Target = None, *, foil: Target = None, seed: int = 0, progress: bool = True,
                callbacks: Sequence = (), live: bool | None = None, config: ConfigLike = None,
                **options) -> Explanation | list[Explanation]:
        """Explain one image, or several optimised together: a list of images or a batched
        tensor ``[B, C, H, W]`` (``B > 1``; a ``[1, C, H, W]`` tensor is one image).

        Returns one ``Explanation`` for one image, a list of them (in order) for several.

        ``target``: class to explain (default: the model's top-1 on the image); for several images,
        one class for all or one per image (a list or a 1-D tensor of ``B``). A shape that is not
        one image nor a batch, or a number of targets that is not the number of images, raises
        ``ValueError``. ``config``/``options`` override the explainer's configuration for this
        call, e.g. ``explain(img, steps=300, keep_ratio=0.9)``. ``foil``: a class (index or label name) for the
        contrastive question "why the target rather than the foil?": ``res.necessary`` is then the
        smallest region whose removal makes the foil overtake the target (default: removal must make
        one of the image's next few classes the top one; ``necessary=False`` skips that half). ``live``: show the live widget
        (default: when running in Jupyter).

        A KeyboardInterrupt stops training, leaves the model as it was, keeps
        the best mask so far in ``explainer.last_partial`` and propagates.
        """
        self.last_partial = None  # only ever the partial result of the latest run
        cfg = resolve_config(config) if config is not None else self.config
        if options:
            cfg = cfg.replace(**options)
        images, many = split_images(image)
        if not images:
            raise ValueError("explain() got an empty list of images")
        targets = per_image(target, len(images), "target")
        foils = per_image(foil, len(images), "foil")
        if foil is not None and not cfg.necessary:
            raise ValueError("foil= asks a question of the necessary evidence, but necessary=False skips it")
        channels = input_channels(self._network)
        xs = [to_model_input(img, self.preprocess, self.normalization, channels) for img in images]
        _check_size(xs, cfg)

        callbacks = list(callbacks)
        if live is None:
            live = not many and in_notebook()
        if live and not many:
            from .widget import live_widget

            callbacks.append(live_widget(labels=self.labels))
        elif progress:
            callbacks.append(ProgressBar())

        results: list[Explanation | None] = [None] * len(xs)
        for shape in dict.fromkeys(tuple(x.shape) for x in xs):  # same-size images share one batch
            idx = [i for i, x in enumerate(xs) if tuple(x.shape) == shape]
            self.use_plan(shape[-2:])
            # Each step forwards every image with its background variants: keep that within one pass.
            group = max(1, images_per_pass(self.device, *shape[-2:]) // (1 + len(cfg.check_fills) + cfg.n_backgrounds))
            for part in (idx[k:k + group] for k in range(0, len(idx), group)):
                batch = torch.cat([xs[i] for i in part])
                asked = {"foils": [foils[i] for i in part]} if foil is not None else {}
                for i, res in zip(part, self._explain_batch(batch, [targets[i] for i in part], cfg, seed, callbacks,
                                                            **asked)):
                    results[i] = res
        for res in results:
            note = res.warning()
            if note:
                warnings.warn(f"explaining {res.target_name!r}: {note}.", UserWarning, stacklevel=2)
        return results if many else results[0]

    def use_plan(self, size) -> LayerPlan:
        """Make the layer plan for inputs of ``size`` (layers, their views, the patch grid) the current one."""
        size = tuple(size)
        if size not in self._plans:
            self._plans[size] = plan_layers(self._network, None if self._auto else self.layers, size)
            logger.debug("%s at %dx%d: tapping %s", type(self._network).__name__, *size, self._plans[size].layers)
        self.plan = self._plans[size]
        self.layers = self.plan.layers
        return self.plan

    # ------------------------------------------------------------------
    def _explain_batch(self, x, targets, cfg: ExplainConfig, seed: int, callbacks, mask_net=None,
                       optimise: bool = True, foils=None) -> list[Explanation]:
        """Explain a batch of same-size images. ``mask_net(target, acts_x, relevance, x)``, if given, returns
        the mask generator to start from (an amortised one); ``optimise=False`` takes its best cut as is."""
        net, start = self._network, time.perf_counter()
        plan = self.use_plan(x.shape[-2:])
        with torch.inference_mode(False), torch.enable_grad(), borrowed(net), \
                tap_activations(net, self.layers, plan.views) as taps:
            x = x.to(self.device).clone()
            # One forward gives x's logits, activations and (with target-aware matching) the relevance.
            with torch.set_grad_enabled(cfg.target_aware), relevance_probes(net, self.layers, cfg.target_aware) as probes:
                scores = LogitsOf(net)(x.clone())  # a clone: some models edit their input in place
                acts_x = {name: a.detach() for name, a in taps.collect().items()}
                prefix_x = {name: t.detach() for name, t in taps.prefix.items()}
            logits_x = scores.detach()
            _warn_if_probabilities(logits_x)
            target = self._target_tensor(targets, logits_x)
            fill, fills = hiding_fill(x, cfg.fill, self.normalization, partial(_logits_alone, net, taps), target,
                                      logits_x.softmax(1).gather(1, target[:, None])[:, 0])
            prob_fill = torch.tensor([f.prob for f in fills], device=x.device)
            checks = torch.stack([make_fill(x, check_kind(k), self.normalization) for k in cfg.check_fills]) \
                if cfg.check_fills else None
            relevance = relevance_maps(scores, probes, acts_x, target, plan.views, prefix_x) \
                if cfg.target_aware else None
            del scores, probes  # the graph of x's forward
            opt = MaskOptimizer(LogitsOf(net), taps, self.layers, x, target, acts_x, logits_x, fill, cfg, seed,
                                callbacks, net=None if mask_net is None else mask_net(target, acts_x, relevance or {}, x),
                                relevance=relevance, prob_fill=prob_fill, checks=checks, prefix_x=prefix_x,
                                patch_grid=plan.patch_grid)
            info = self._start_info(x, target, fill, cfg, opt)
            _call(callbacks, "on_start", info)
            try:
                if mask_net is not None:
                    opt.adopt_current()  # a trained generator's best cut: the result, or the start of refinement
                if optimise:
                    opt.run()
                necessary = self._necessary(opt, x, target, logits_x, fills, cfg, foils, callbacks, taps)
            except KeyboardInterrupt:
                taps.reset()
                so_far = self._finish(opt, x, fills, target, logits_x, acts_x, cfg, start, interrupted=True)
                self.last_partial = so_far[0] if len(so_far) == 1 else so_far
                _call(callbacks, "on_end", {"interrupted": True, "best_mask": opt.best_masks[0].cpu(),
                                            "result": so_far[0]})
                raise
            except Exception:
                # Let progress bars and widgets settle; the original error is what the user must see.
                with contextlib.suppress(Exception):
                    _call(callbacks, "on_end", {"interrupted": True, "best_mask": opt.best_masks[0].cpu(), "result": None})
                raise
            results = self._finish(opt, x, fills, target, logits_x, acts_x, cfg, start, interrupted=False,
                                   necessary=necessary)
        _call(callbacks, "on_end", {"interrupted": False, "best_mask": results[0].mask, "result": results[0]})
        return results

    def _target_tensor(self, targets, logits_x) -> torch.Tensor:
        n_classes = logits_x.shape[1]
        out = []
        for t, logits in zip(targets, logits_x):
            if t is None:
                out.append(int(logits.argmax()))
                continue
            if isinstance(t, torch.Tensor) and t.numel() == 1:
                t = t.item()
            if isinstance(t, numbers.Integral) and not isinstance(t, bool):
                t = int(t)  # numpy integers too
            if isinstance(t, bool) or not isinstance(t, int):
                if isinstance(t, str) and self.labels and t in self.labels:
                    t = self.labels.index(t)
                else:
                    raise TypeError(f"target must be a class index (int) or a known label name, got {t!r}")
            if not 0 <= t < n_classes:
                raise ValueError(f"target {t} is out of range: the model has {n_classes} classes (0..{n_classes - 1})")
            out.append(t)
        return torch.tensor(out, device=logits_x.device)

    def _start_info(self, x, target, fill, cfg, opt) -> dict:
        from .explanation import to_display

        t = int(target[0])
        name = class_name(self.labels, t)
        return {"total_steps": cfg.steps, "input": x[0].detach().cpu(), "image": to_display(x[0], self.normalization),
                # Without a known normalisation the display is scaled per image, so the fill's true colour is unknown.
                "fill_image": to_display(fill[0], self.normalization) if self.normalization is not None else None,
                "target": t, "target_name": name, "mask_shape": opt.size, "prob_original": float(opt.prob_x[0])}

    def _necessary(self, opt, x, target, logits_x, fills, cfg, foils, callbacks, taps) -> list | None:
        """The smallest region whose removal changes each decision (``nbexplain.core.necessity``), or None
        when ``cfg.necessary`` is off."""
        if not cfg.necessary:
            return None
        net, began = self._network, time.perf_counter()
        contrastive = foils is not None and any(f is not None for f in foils)
        if contrastive:
            if any(f is None for f in foils):
                raise ValueError("give a foil for every image of the list, or none")
            foil_ids = self._target_tensor(foils, logits_x)[:, None]
            if bool((foil_ids[:, 0] == target).any()):
                raise ValueError("the foil must be another class than the target")
        else:
            foil_ids = default_foils(logits_x, target, cfg.necessary_foils)
        if cfg.necessary_removal == "surroundings":
            removals = [lambda xs, m, rows: surroundings(xs, m)]
            names = [["surroundings"]] * len(fills)
        else:
            removals = [lambda xs, m, rows, f=f: (1 - m) * xs + m * f[rows]
                        for f in [opt.fill, *opt.checks]]
            names = [[f.name] + [check_kind(k).name for k in cfg.check_fills] for f in fills]

        def logits_of(images, keep_graph=False):
            if not keep_graph:
                return _logits_alone(net, taps, images)
            out = LogitsOf(net)(images.clone())  # a clone: some models edit their input in place
            taps.reset()
            return out

        grid = cell_grid(tuple(x.shape[-2:]), cfg.necessary_cells, self.plan.patch_grid)
        search = NecessarySearch(logits_of, x, target, logits_x, removals, foil_ids, cfg, grid,
                                 patches=self.plan.patch_grid is not None, contrastive=contrastive,
                                 callbacks=callbacks, step_offset=opt.steps_run)
        found = search.run(names)
        seconds = (time.perf_counter() - began) / x.shape[0]
        return [dataclasses.replace(n, seconds=seconds) for n in found]

    def _finish(self, opt, x, fills, target, logits_x, acts_x, cfg, start, interrupted,
                necessary=None) -> list[Explanation]:
        net = self._network
        masks = opt.best_masks.detach()
        m4 = masks[:, None]
        e = m4 * x + (1 - m4) * opt.fill
        if not interrupted:
            opt.phase("scoring the explanation and its random backgrounds")
        with torch.no_grad():
            logits_e = LogitsOf(net)(e.clone())  # e itself goes into the result
            acts_e = opt.taps.collect()
            robust = self._robustness(x, masks, target, cfg, opt.gen) if not interrupted and cfg.robustness_draws else None
            checks = self._checks(x, masks, target, cfg, opt.checks)
        seconds = time.perf_counter() - start
        probs_x, probs_e = logits_x.softmax(1), logits_e.softmax(1)
        out = []
        for i in range(x.shape[0]):
            t = int(target[i])
            out.append(Explanation(
                mask=masks[i].float().cpu(),
                explanation=e[i].detach().cpu(),
                fill=dataclasses.replace(fills[i], image=fills[i].image.detach().cpu()),
                checks=tuple(c[i] for c in checks),
                sufficient=bool(opt.best_rank[i] == 2),
                input=x[i].detach().cpu(),
                target=t,
                prob_original=float(probs_x[i, t]),
                prob_explanation=float(probs_e[i, t]),
                area=float(masks[i].mean()),
                history=opt.history[i],
                layers=list(self.layers),
                activations_original={k: v[i].detach().cpu() for k, v in acts_x.items()},
                activations_explanation={k: v[i].detach().cpu() for k, v in acts_e.items()},
                logits_original=logits_x[i].detach().cpu(),
                logits_explanation=logits_e[i].detach().cpu(),
                model=self.model,
                labels=self.labels,
                seconds=seconds / x.shape[0],
                steps=opt.steps_run,
                config=cfg,
                normalization=self.normalization,
                robustness=None if robust is None else float(robust[i]),
                interrupted=interrupted,
                views=dict(self.plan.views),
                necessary=None if necessary is None else necessary[i],
                _network=net,
            ))
        return out

    def _checks(self, x, masks, target, cfg, fills) -> list[list[FillCheck]]:
        """Per check fill, per image: does the label hold with that fill outside the mask, and does the
        fill alone give the target (then the check says little)."""
        out = []
        m4 = masks[:, None]
        for kind, fill in zip(cfg.check_fills, fills):
            logits = in_chunks(LogitsOf(self._network), torch.cat([m4 * x + (1 - m4) * fill, fill]))
            probs = logits.softmax(1).gather(1, target.repeat(2)[:, None])[:, 0]
            top = logits.argmax(1) == target.repeat(2)
            b = x.shape[0]
            out.append([FillCheck(check_kind(kind).name, bool(top[i]), float(probs[i]), float(probs[b + i]),
                                  not bool(top[b + i])) for i in range(b)])
        return out

    def _robustness(self, x, masks, target, cfg, gen) -> torch.Tensor:
        """Share of random backgrounds (outside the mask) under which the target stays top-1.
        The draws go through the model in batches (a loop of single forwards was a fifth of an
        explanation's time at 224 px)."""
        kinds = cfg.backgrounds
        m4 = masks[:, None]
        draws = [m4 * x + (1 - m4) * random_background(kinds[j % len(kinds)], x, gen)
                 for j in range(cfg.robustness_draws)]
        logits = in_chunks(LogitsOf(self._network), torch.cat(draws))
        kept = (logits.argmax(1) == target.repeat(cfg.robustness_draws)).float()
        return kept.view(cfg.robustness_draws, x.shape[0]).mean(0)


def _logits_alone(net, taps, images) -> torch.Tensor:
    """Logits of a batch, leaving no activations behind in the taps."""
    with torch.no_grad():
        logits = in_chunks(lambda b: LogitsOf(net)(b.clone()), images)
    taps.reset()
    return logits


def _warn_if_probabilities(logits: torch.Tensor) -> None:
    """Softmax outputs look like logits to the shape check but flatten every loss term."""
    sums_to_one = torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-4)
    if logits.shape[1] > 1 and bool(logits.min() >= 0) and sums_to_one:
        warnings.warn(
            "the model's outputs look like probabilities (each row sums to 1); nbexplain needs logits, "
            "so remove the final softmax (or wrap the model) for a faithful explanation",
            UserWarning,
            stacklevel=4,
        )


def _check_size(xs, cfg: ExplainConfig) -> None:
    if cfg.max_input_pixels is None:
        return
    for x in xs:
        h, w = x.shape[-2:]
        if h * w > cfg.max_input_pixels:
            raise ValueError(
                f"the model input is {h}x{w} pixels, more than max_input_pixels={cfg.max_input_pixels}: each "
                "training step runs the model on it. Resize it first (e.g. preprocess=weights.transforms()), "
                "or pass max_input_pixels=None to explain it at full size anyway."
            )


def _as_label_list(labels):
    if labels is None:
        return None
    if isinstance(labels, dict):
        n = max(labels) + 1 if labels else 0
        return [class_name(labels, i) for i in range(n)]
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of class names or a dict {id: name}, not a string")
    return [str(v) for v in labels]


def _strip_wrapper_prefix(model, layers):
    """Accept 'module.layer1' for wrapped models by naming layers on the unwrapped one."""
    if layers is None or isinstance(layers, str) and not layers.startswith(("module.", "_orig_mod.")):
        return layers
    try:
        names = [layers] if isinstance(layers, str) else list(layers)
    except TypeError:
        return layers  # not a list of names: resolve_layers explains what is expected
    out = []
    for name in names:
        while isinstance(name, str) and name.startswith(("module.", "_orig_mod.")) and model is not unwrap_model(model):
            name = name.split(".", 1)[1]
        out.append(name)
    return out


def _call(callbacks, method: str, info) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(info)


def in_notebook() -> bool:
    try:
        from .widget import should_use_widget
    except ImportError:
        return False
    return should_use_widget()
