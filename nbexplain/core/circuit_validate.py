"""Moved to ``nbexplain.circuits.validate``; these names stay importable from here."""

from ..circuits.validate import CircuitValidation, Sizing, validate_circuit

__all__ = ["CircuitValidation", "Sizing", "validate_circuit"]
