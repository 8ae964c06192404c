"""Pure-torch core: inputs, taps, mask generator, losses, optimisation (circuits live in ``nbexplain.circuits``;
the old ``core.circuit``, ``core.circuit_walk``, ``core.circuit_validate`` and ``core.sites`` re-export them).

Nothing here imports a widget or plotting library.
"""
