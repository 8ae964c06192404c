"""Pure-torch core: inputs, taps, mask generator, losses, optimisation (circuits live in ``nbexplain.circuits``).

Nothing here imports a widget or plotting library.
"""
