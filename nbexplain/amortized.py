"""An amortised explainer: one mask generator trained over many images, then
explanations in a single forward pass (optionally refined per image).

The generator is the per-image U-Net, given what the frozen classifier already
knows: its tapped activations on the image (a 1x1 projection per layer) and a
class-specific map (a learned class embedding dotted with the deepest layer's
channels, like a CAM), so one generator serves every class. From pixels alone a
small U-Net cannot learn where the object is from a few hundred images; from the
classifier's features it can.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import resolve_config
from .core.inputs import to_model_input
from .core.masknet import MaskUNet
from .core.fills import make_fill
from .core.optimize import MaskOptimizer, total_loss, working_size
from .core.taps import borrowed, input_channels, tap_activations
from .explainer import Explainer, _LogitsOf, _logits

FORMAT = "nbexplain-amortized-2"


class ConditionedMaskNet(nn.Module):
    """U-Net over [image, projected classifier features, class map] -> mask logits."""

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
        self.unet = MaskUNet(in_channels + proj * len(feature_channels) + 1, n=1, width=width, depth=depth)

    @property
    def head(self):
        return self.unet.head

    def forward(self, x_small: torch.Tensor, target: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        size = x_small.shape[-2:]
        # Each layer scaled to unit mean magnitude per image: layers and models differ by orders of magnitude.
        feats = [f / (f.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-6) for f in feats]
        maps = [p(f) for p, f in zip(self.proj, feats)]
        maps.append((self.class_map(target)[:, :, None, None] * feats[-1]).sum(1, keepdim=True))
        maps = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
        return self.unet(torch.cat([x_small, *maps], dim=1))


class _ForTarget(nn.Module):
    """The conditioned generator with its classes and features fixed: net_input -> logits."""

    def __init__(self, net: ConditionedMaskNet, target: torch.Tensor, feats: list[torch.Tensor]):
        super().__init__()
        self.net, self.target, self.feats = net, target, feats

    @property
    def head(self):
        return self.net.head

    def forward(self, x_small):
        return self.net(x_small, self.target, self.feats)


def spatial_features(acts: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The tapped activations that are feature maps [N, C, H, W], finest first (so the last is the deepest)."""
    maps = [a.detach() for a in acts.values() if a.dim() == 4]
    return sorted(maps, key=lambda a: -a.shape[-1] * a.shape[-2])


class AmortizedExplainer(Explainer):
    """Train once over a dataset, then explain in one forward pass.

    >>> am = AmortizedExplainer(model, preprocess=pre, labels=labels)
    >>> am.fit(train_images)                 # [N, C, H, W] model-space tensor or a list of images
    >>> res = am.explain(img)                # one generator pass + scoring
    >>> res = am.explain(img, refine=20)     # then 20 per-image steps from that start
    >>> am.save("amortized.pt"); AmortizedExplainer.load("amortized.pt", model, preprocess=pre)
    """

    def __init__(self, model, layers=None, preprocess=None, labels=None, config=None, device=None):
        super().__init__(model, layers=layers, preprocess=preprocess, labels=labels, config=config, device=device)
        self.generator: ConditionedMaskNet | None = None
        self.fit_history: dict[str, list[float]] = {}
        self.teacher_masks: torch.Tensor | None = None  # what fit() learned from

    # ------------------------------------------------------------------
    def fit(self, images, targets=None, *, masks=None, steps: int = 1000, finetune_steps: int = 0,
            batch_size: int = 16, lr: float = 3e-3, teacher: str = "fast", seed: int = 0,
            progress: bool = True) -> "AmortizedExplainer":
        """Train the generator over ``images`` (a [N, C, H, W] model-space tensor or a list of images).

        Two stages. First the per-image explainer (preset ``teacher``, batched)
        explains every image and the generator learns to reproduce those masks
        (cross-entropy per pixel): a stable start, where training the binary
        objective from scratch over many images tends to collapse to empty or
        full masks. Then, optionally, ``finetune_steps`` steps of the explanation
        objective itself. ``targets``: classes to explain (default: top-1).
        ``masks``: the images' per-image masks if you have them already (e.g.
        ``self.teacher_masks`` of an earlier fit), which skips the first pass.
        """
        x_all = self._stack(images)
        n = x_all.shape[0]
        if masks is None:
            masks, y_all = self._teacher_masks(x_all, targets, teacher, seed, progress)
        else:
            masks = torch.as_tensor(masks).float()
            if masks.shape != (n, *x_all.shape[-2:]):
                raise ValueError(f"masks must be [N, H, W] = {[n, *x_all.shape[-2:]]}, got {list(masks.shape)}")
            y_all = self._target_tensor([None] * n if targets is None else list(targets), self._logits_of(x_all)).tolist()
        self.teacher_masks = masks
        y_all = torch.tensor(y_all)
        size = working_size(*x_all.shape[-2:], self.config)
        small = F.interpolate(masks[:, None], size=size, mode="area")[:, 0]
        x_small = F.interpolate(x_all, size=size, mode="bilinear", align_corners=False, antialias=True)
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
            with torch.inference_mode(False), torch.enable_grad():
                for step in range(steps):
                    idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
                    z = self.generator(x_small[idx].to(self.device), y_all[idx].to(self.device), features(idx))
                    loss = F.binary_cross_entropy_with_logits(z, small[idx].to(self.device), pos_weight=pos_weight)
                    optim.zero_grad(set_to_none=True)
                    loss.backward()
                    # No normalisation layers in the U-Net: clipping keeps a rare huge step from diverging it.
                    nn.utils.clip_grad_norm_(self.generator.parameters(), 1.0)
                    optim.step()
                    self.fit_history.setdefault("distill", []).append(float(loss.detach()))
                self._calibrate(x_small, y_all, kept, features)
        if finetune_steps:
            with torch.inference_mode(False), torch.enable_grad():
                self._finetune(x_all, y_all, finetune_steps, batch_size, lr / 10, seed)
        self.generator.eval()
        return self

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
            results = teacher_ex.explain(list(x_all[idx]), target=tgt, seed=seed, progress=False, live=False)
            masks += [r.mask for r in results]
            y_all += [r.target for r in results]
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return torch.stack(masks), y_all

    @torch.no_grad()
    def _logits_of(self, x_all):
        with borrowed(self._network):
            return torch.cat([_logits(self._network(x_all[i:i + 64].to(self.device).clone()))
                              for i in range(0, len(x_all), 64)])

    @torch.no_grad()
    def _calibrate(self, x_small, y_all, area: float, features) -> None:
        """Shift the generator's threshold so its masks keep, on average, the teacher's share of pixels."""
        chunks = [torch.arange(i, min(i + 64, len(y_all))) for i in range(0, len(y_all), 64)]
        z = torch.cat([self.generator(x_small[i].to(self.device), y_all[i].to(self.device), features(i)).flatten()
                       for i in chunks])
        sample = z[torch.randperm(z.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
        self.generator.head.conv.bias -= torch.quantile(sample, 1 - area)

    def _finetune(self, x_all, y_all, steps, batch_size, lr, seed) -> None:
        """Steps of the explanation objective itself, over random batches."""
        cfg, net_model, n = self.config, self._network, x_all.shape[0]
        gen = torch.Generator().manual_seed(seed + 1)
        optim = torch.optim.Adam(self.generator.parameters(), lr=lr)
        with borrowed(net_model), tap_activations(net_model, self.layers) as taps:
            for step in range(steps):
                idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
                x, target = x_all[idx].to(self.device), y_all[idx].to(self.device)
                with torch.no_grad():
                    logits_x = _logits(net_model(x.clone()))
                    acts_x = taps.collect()
                fill = make_fill(x, cfg.fill, self.normalization)
                net = _ForTarget(self.generator, target, spatial_features(acts_x))
                problem = MaskOptimizer(_LogitsOf(net_model), taps, self.layers, x, target, acts_x, logits_x, fill,
                                        cfg, seed + step, net=net)
                terms, hard, logits_e, *_ = problem.loss_terms(step)
                total = total_loss(cfg, terms, logits_e, target).mean()
                optim.zero_grad(set_to_none=True)
                total.backward()
                optim.step()
                self.fit_history.setdefault("finetune", []).append(float(total.detach()))

    # ------------------------------------------------------------------
    def explain(self, image, target=None, *, refine: int = 0, seed: int = 0, progress: bool = False,
                callbacks=(), live: bool | None = False, config=None, **options):
        """One generator pass (plus ``refine`` per-image steps starting from it)."""
        if self.generator is None:
            raise RuntimeError("this AmortizedExplainer is not trained: call fit(images) or load a saved one first")
        cfg = resolve_config(config) if config is not None else self.config
        # No steps to wait for, so no robustness draws unless asked: they would dominate the time.
        cfg = cfg.replace(**{"robustness_draws": 0, **options})
        if refine:
            # refine=k is a budget of k steps: no retry from a fuller mask after them, and no warm-up
            # (that protects a freshly calibrated U-Net; a trained generator starts from a good cut).
            cfg = cfg.replace(steps=int(refine), min_steps=min(cfg.min_steps, int(refine)), retry_area=None,
                              warmup=1)
        many = isinstance(image, (list, tuple))
        images = list(image) if many else [image]
        channels = input_channels(self._network)
        xs = [to_model_input(img, self.preprocess, self.normalization, channels) for img in images]
        targets = target if isinstance(target, (list, tuple)) else [target] * len(xs)
        results = []
        for x, t in zip(xs, targets):
            net = self._generator_copy() if refine else self.generator
            res = self._explain_batch(x, [t], cfg, seed, list(callbacks),
                                      mask_net=lambda tt, acts, net=net: _ForTarget(net, tt, spatial_features(acts)),
                                      optimise=bool(refine))[0]
            results.append(res)
        return results if many else results[0]

    def _generator_copy(self) -> ConditionedMaskNet:
        """Refinement trains a copy, so the shared generator is never changed by explain()."""
        copy = ConditionedMaskNet(**self.generator.config).to(self.device)
        copy.load_state_dict(self.generator.state_dict())
        return copy

    # ------------------------------------------------------------------
    def save(self, path) -> None:
        if self.generator is None:
            raise RuntimeError("nothing to save: call fit() first")
        torch.save({"state_dict": self.generator.state_dict(), "generator": self.generator.config,
                    "layers": list(self.layers), "fill": self.config.fill, "format": FORMAT}, path)

    @classmethod
    def load(cls, path, model, layers=None, preprocess=None, labels=None, config=None, device=None):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format") != FORMAT:
            raise ValueError(f"{path} is not an nbexplain amortised generator of this version ({FORMAT}); "
                             "train it again with AmortizedExplainer.fit()")
        am = cls(model, layers=layers or saved["layers"], preprocess=preprocess, labels=labels, config=config,
                 device=device)
        if config is None:  # score and refine with the fill it was trained with (older files: the mean colour)
            am.config = am.config.replace(fill=saved.get("fill", "mean"))
        gen_cfg = saved["generator"]
        if am.config.unet_width != gen_cfg["width"] or am.config.unet_depth != gen_cfg["depth"]:
            am.config = am.config.replace(unet_width=gen_cfg["width"], unet_depth=gen_cfg["depth"])
        am.generator = ConditionedMaskNet(**gen_cfg).to(am.device)
        am.generator.load_state_dict(saved["state_dict"])
        am.generator.eval()
        return am

    def _stack(self, images) -> torch.Tensor:
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            return images.detach().float()
        channels = input_channels(self._network)
        xs = [to_model_input(img, self.preprocess, self.normalization, channels) for img in images]
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"fit() needs images of one size; got {sorted(shapes)}")
        return torch.cat(xs)


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


__all__ = ["AmortizedExplainer", "ConditionedMaskNet"]
