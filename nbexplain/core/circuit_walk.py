"""Moved to ``nbexplain.circuits.walk``; these names stay importable from here."""

from ..circuits.walk import ModelWalk, head_transfer, record, trace_model, transfer_matrix

__all__ = ["ModelWalk", "head_transfer", "record", "trace_model", "transfer_matrix"]
