"""The necessary half of a result as the widget sends it: its region and one line saying what it is.

Pure (no widget, no kernel), like ``_serialize``, so the wire format is tested on its own.
"""

from __future__ import annotations

from typing import Any

from ..core.plumbing import class_name
from ._serialize import json_safe, mask_to_uint8


def necessary_state(result: Any) -> tuple[bytes, list[int], dict]:
    """(region bytes, [h, w], summary) of ``result.necessary``; empty when the result has none
    (``necessary=False``, an interrupted run, or a result from before the necessary half)."""
    nec = getattr(result, "necessary", None)
    if nec is None:
        return b"", [0, 0], {}
    name = _namer(result)
    data, shape = mask_to_uint8(nec.mask)
    summary = {
        "found": bool(nec.found),
        "area": nec.area,
        "turns_into": nec.turns_into,
        "turns_into_name": None if nec.turns_into is None else name(nec.turns_into),
        "prob_before": nec.prob_before,
        "prob_after": nec.prob_after,
        "prob_turns_into_before": nec.prob_turns_into_before,
        "prob_turns_into_after": nec.prob_turns_into_after,
        "contrastive": bool(nec.contrastive),
        "foils": [name(k) for k in nec.foils],
        "max_area": nec.max_area,
        "note": nec.note,
        "text": necessary_line(nec, name),
        "details": nec.describe(name),  # every number, on hover
    }
    return data, shape, json_safe(summary)


def necessary_line(nec: Any, name) -> str:
    """One line for the widget, e.g. "necessary: removing 3.1% turns it into 'missile' (p 0.41)"."""
    if not nec.found:
        return f"necessary: none. {nec.note or f'no region up to {nec.max_area:.0%} changes the decision'}"
    new = name(nec.turns_into)
    # A named foil need only overtake the target, not become the top class.
    change = f"makes {new!r} overtake {name(nec.target)!r}" if nec.contrastive else f"turns it into {new!r}"
    return f"necessary: removing {nec.area:.1%} {change} (p {nec.prob_turns_into_after:.2f})"


def _namer(result: Any):
    """``result.class_name``, or the labels, or "class k"."""
    fn = getattr(result, "class_name", None)
    if callable(fn):
        return fn
    labels = getattr(result, "labels", None)
    return lambda k: class_name(labels, k)
