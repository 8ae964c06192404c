"""Pure-torch core: inputs, taps, mask generator, losses, optimisation, circuits.

Nothing here imports a widget or plotting library.
"""
