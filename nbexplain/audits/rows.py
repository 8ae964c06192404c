"""The one place an audit explains: images (by id) in, one row per image out (a pyarrow Table).

Every engine calls ``AuditWorker``; none re-implements it. Each image is explained on its
own with a seed drawn from the audit's seed and the image's id, so a mask does not depend on
which engine, actor or batch explained it.
"""

from __future__ import annotations

import hashlib
import io
import time
import warnings
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from ..config import resolve_config
from ..core.inputs import to_model_input
from ..core.plumbing import LogitsOf, borrowed, input_channels
from .data import AuditData

THUMB_SIDE = 64  #: longest side of the stored thumbnails, pixels

ROW_SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("key", pa.string()),
    ("label", pa.int64()),
    ("pred", pa.int64()),
    ("target", pa.int64()),
    ("correct", pa.bool_()),
    ("prob_original", pa.float32()),
    ("prob_explanation", pa.float32()),
    ("area", pa.float32()),
    ("label_kept", pa.bool_()),
    ("empty_but_kept", pa.bool_()),
    ("robustness", pa.float32()),
    ("sufficient", pa.bool_()),  # label kept with the probability needed, under its fill and every check fill
    ("fill", pa.string()),  # what removed pixels became
    ("fill_hides", pa.bool_()),  # the fill alone does not give the target (else the mask says little)
    ("on_object", pa.float32()),  # share of kept pixels on the labelled object (null: no object mask)
    ("channels", pa.list_(pa.string())),  # the circuit's channels, "layer:index"
    ("mask_h", pa.int32()),
    ("mask_w", pa.int32()),
    ("mask_bits", pa.binary()),  # np.packbits of the binary mask, row-major
    ("necessary_found", pa.bool_()),  # a region whose removal changes the decision was found (res.necessary)
    ("necessary_area", pa.float32()),
    ("turns_into", pa.int64()),  # the decision once that region is removed
    ("necessary_bits", pa.binary()),  # np.packbits of the necessary region (same size as the mask)
    ("thumb", pa.binary()),  # JPEG of the image, longest side THUMB_SIDE
    ("seconds", pa.float32()),
    ("error", pa.string()),  # why an image could not be explained (its other fields are null)
])


def image_seed(seed: int, image_id: int) -> int:
    """The explanation seed of one image: the same on every engine and in every batch."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class AuditWorker:
    """Holds one model and one explainer; explains images of ``data`` by id.

    Built once per process (the local engine) or per Ray actor."""

    def __init__(self, model, data: AuditData, *, preprocess=None, labels=None, layers=None, config="fast",
                 seed: int = 0, target: str | int = "predicted", circuits: bool = True):
        from ..explainer import Explainer

        self.data = data
        self.explainer = Explainer(model, layers=layers, preprocess=preprocess, labels=labels,
                                   config=resolve_config(config))
        self.seed = seed
        self.target = target
        self.circuits = circuits
        self._channels = input_channels(self.explainer.network)

    # -- inputs ---------------------------------------------------------------------------
    def model_input(self, image_id: int) -> torch.Tensor:
        """Image ``image_id`` as the model sees it, [1, C, H, W]."""
        ex = self.explainer
        return to_model_input(self.data.image(image_id), ex.preprocess, ex.normalization, self._channels)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """Top-1 class of each model-space input [N, C, H, W] (the transplant test asks here)."""
        net = self.explainer.network
        with borrowed(net):
            out = [LogitsOf(net)(part.to(self.explainer.device)).argmax(1).cpu() for part in inputs.split(chunk)]
        return torch.cat(out)

    # -- rows -----------------------------------------------------------------------------
    def rows(self, ids: Sequence[int]) -> pa.Table:
        """Explain the images ``ids``; one row each, in the order given."""
        return pa.Table.from_pylist([self._row(int(i)) for i in ids], schema=ROW_SCHEMA)

    def _row(self, image_id: int) -> dict:
        start = time.perf_counter()
        label = self.data.label(image_id)
        base = {"id": image_id, "key": self.data.key(image_id), "label": label}
        try:
            x = self.model_input(image_id)
        except (TypeError, ValueError) as err:  # an unreadable image is reported, not fatal to the audit
            return {**base, "error": f"{type(err).__name__}: {err}"}
        target = self._target_for(label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty-mask and fill notes are in the row (empty_but_kept, fill_hides)
            res = self.explainer.explain(x, target=target, seed=image_seed(self.seed, image_id), progress=False,
                                         live=False)
        mask = res.mask.numpy() > 0.5
        nec = res.necessary
        necessary = nec.mask.numpy() > 0.5 if nec is not None else np.zeros_like(mask)
        obj = self.data.object_mask(image_id)
        pred = res.predicted_original
        return {
            **base,
            "pred": pred,
            "target": res.target,
            "correct": None if label is None else pred == label,
            "prob_original": res.prob_original,
            "prob_explanation": res.prob_explanation,
            "area": res.area,
            "label_kept": res.label_kept,
            "empty_but_kept": res.empty_but_kept,
            "robustness": res.robustness,
            "sufficient": res.sufficient,
            "fill": res.fill.name,
            "fill_hides": res.fill.hides,
            "on_object": _on_object(mask, obj),
            "channels": _circuit_channels(res) if self.circuits else [],
            "mask_h": mask.shape[0],
            "mask_w": mask.shape[1],
            "mask_bits": np.packbits(mask).tobytes(),
            "necessary_found": None if nec is None else nec.found,
            "necessary_area": None if nec is None else nec.area,
            "turns_into": None if nec is None else nec.turns_into,
            "necessary_bits": np.packbits(necessary).tobytes(),
            "thumb": thumbnail_jpeg(res.image()),
            "seconds": time.perf_counter() - start,
        }

    def _target_for(self, label):
        if self.target == "predicted":
            return None
        if self.target == "label":
            if label is None:
                raise ValueError("target='label' needs labelled data; this image has no label")
            return label
        return int(self.target)


def _on_object(mask: np.ndarray, obj: np.ndarray | None) -> float | None:
    if obj is None or not mask.any():
        return None
    if obj.shape != mask.shape:
        obj = resize_mask(obj, mask.shape)
    return float((mask & obj).sum() / mask.sum())


def _circuit_channels(res) -> list[str]:
    from ..errors import CircuitUnsupportedError

    try:
        channels = res.circuit.channels
    except CircuitUnsupportedError:
        return []  # a model whose circuit cannot be read is still audited by its masks
    return [f"{layer}:{c}" for layer, chans in channels.items() for c in chans]


def resize_mask(mask: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=tuple(shape), mode="nearest")[0, 0].numpy() > 0.5


def unpack_mask(bits: bytes, h: int, w: int) -> np.ndarray:
    """The bool [h, w] mask stored in a row."""
    return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=h * w).reshape(h, w).astype(bool)


def thumbnail_jpeg(image: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """An HxWx3 float image in [0, 1] as a small JPEG."""
    from PIL import Image

    pil = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    pil.thumbnail((side, side), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
