"""Circuits: the graph of nodes behind one forward pass, for every architecture.

* ``engine``: one function, ``nbexplain.circuits.engine.build_circuit``, builds a
  ``Circuit`` from a reader's ``nbexplain.circuits.engine.Reading`` (the sites in depth
  order, the nodes' energies, the transfer between sites and to the logits): node selection and
  decision sizing, edges, class edges and nodes are written once;
* the readers supply only what differs: ``cnn`` (channels of tapped layers, the structural walk
  ``walk``) and ``transformer`` (heads and MLP units, ``sites``); ``choose`` picks one for a model;
* beside them: ``config`` (``CircuitConfig``), ``validate`` (the causal check and decision
  sizing), ``compare`` (what two circuits share) and ``circuit`` (the ``Circuit`` itself, its
  graph and JSON).
"""

from ..errors import CircuitUnsupportedError
from .choose import circuit_of, reads_tokens
from .circuit import Circuit, channel_energy
from .cnn import read_circuit
from .compare import CircuitComparison, compare_circuits
from .config import CircuitConfig
from .engine import Head, Reading, build_circuit
from .transformer import read_transformer_circuit
from .validate import CircuitValidation, Sizing

__all__ = [
    "Circuit", "CircuitComparison", "CircuitConfig", "CircuitUnsupportedError", "CircuitValidation", "Head",
    "Reading", "Sizing", "build_circuit", "channel_energy", "circuit_of", "compare_circuits", "read_circuit",
    "read_transformer_circuit", "reads_tokens",
]
