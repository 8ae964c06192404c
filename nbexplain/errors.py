"""The errors a user of nbexplain may catch, in one place; each message says what to do.

The modules that raise them import them from here (and the older homes still hand them on).
"""

from __future__ import annotations


class LayerError(ValueError):
    """A tapped layer name that cannot be used; the message says what to do."""


SUPPORTED = (
    "The circuit readout walks CNNs that torch.fx can trace: convolutions (modules or F.conv calls, "
    "grouped and depthwise), BatchNorm, LayerNorm over channels, Linear, pooling, element-wise "
    "activations, residual additions, concatenations, squeeze-and-excitation gates, channel shuffles "
    "and permutes - torchvision ResNets of any depth, MobileNet, EfficientNet, RegNet, DenseNet, "
    "GoogLeNet, SqueezeNet, ShuffleNet, ConvNeXt, the nbexplain zoo models and VGG-like stacks. Tap "
    "modules that run once per forward, at block or stage boundaries (for torchvision ResNets: "
    "'relu', 'layer1', ..., 'layer4')."
)


class CircuitUnsupportedError(RuntimeError):
    """The circuit readout cannot walk this model (or these taps); the message says why.

    The first line of the message names the problem (and the operation and module where
    there is one); the following lines say what is supported. ``reason`` holds the first line.
    """

    def __init__(self, reason: str, advice: bool = True):
        self.reason = reason
        super().__init__(
            f"{reason}\n{SUPPORTED} Explanations themselves still work; only the circuit "
            "readout is unavailable. Choose other layers, or wrap the unsupported part so "
            "that it is not between two tapped layers." if advice else reason
        )


class ManifestMismatch(ValueError):
    """The run folder holds an audit of another model, data or configuration."""


class RayEngineError(RuntimeError):
    """The Ray engine failed: an actor raised (its error is the message's end), or could not start."""
