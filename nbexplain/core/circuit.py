"""Moved to ``nbexplain.circuits`` (the CNN reader is ``nbexplain.circuits.cnn``, the engine both
readers share ``nbexplain.circuits.engine``); these names stay importable from here."""

from ..circuits import (
    Circuit,
    CircuitComparison,
    CircuitConfig,
    CircuitUnsupportedError,
    CircuitValidation,
    channel_energy,
    read_circuit,
)

__all__ = [
    "Circuit", "CircuitConfig", "CircuitComparison", "CircuitUnsupportedError", "CircuitValidation",
    "channel_energy", "read_circuit",
]
