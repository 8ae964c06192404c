"""Structural transfer matrices between tapped layers: the walk behind circuit edges.

The model is traced once with ``torch.fx``, which gives its true data-flow graph: every
convolution (module or ``F.conv2d`` call), every residual addition, every shortcut,
squeeze-and-excitation gate, concatenation, channel shuffle and permute. One forward
pass is then *recorded* (``record``): on the explanation's input when it is known,
else from the tapped activations onwards. It gives every node's shape, the values of
gates and of normalisation inputs, and the sizes that ``view``/``reshape`` calls use.

A *transfer matrix* ``T[v, u]`` from tap A (``C_A`` channels) to tap B is computed by
pushing the identity ``[C_A, C_A]`` forward through that graph in the **absolute
linearised network**:

* convolutions (``ConvNd`` modules, ``F.conv1d/2d/3d`` with a parameter or ``get_attr``
  weight): ``|W|`` summed over the kernel, a ``[C_out, C_in]`` matrix; grouped and
  depthwise convolutions become block-diagonal;
* ``BatchNorm`` (folded, the default): ``|gamma| / sqrt(running_var + eps)``; shifts dropped;
* ``Linear`` / ``F.linear``: ``|W|`` applied to the dimension that carries the channels
  (the last one: after a flatten each channel's row is repeated once per position it
  was flattened into; in a channels-last block, the channel dimension itself);
* ``LayerNorm`` over the channel dimension (ConvNeXt): ``|gamma| / sigma``, with sigma
  the mean standard deviation over positions **on this input** (a linearisation);
* residual / skip additions: transfers of the added branches are summed;
* channel concatenation: transfers stacked, a branch that does not depend on tap A
  contributes zero rows;
* reshape, view, permute, transpose, chunk, split, slicing (channel shuffles,
  channels-last blocks): the real operation is applied to a tensor holding each
  position's channel index, which tracks where every channel goes;
* **gates** - an element-wise product of two activations that both depend on tap A,
  e.g. squeeze-and-excitation ``x * sigmoid(se(x))`` - are read as ``diag(g) @ T_x``:
  ``g`` is the gate's per-channel value on **this input** (mean ``|g|`` over positions),
  ``T_x`` the gated path's transfer, and paths through the gate's own branch are
  dropped. This is a linearisation at the explanation (the gate held at its value);
  multiplication by a constant tensor (a layer scale) is the same with fixed ``g``;
* ReLU and other element-wise activations, dropout, stochastic depth, padding,
  max/average pooling: channel-wise, passed through unchanged (ReLU gating ignored).

So ``T[v, u]`` is the sum over every path from channel ``u`` of tap A to channel ``v``
of tap B of the product of the absolute kernel sums, BatchNorm gains and gate values
along it. It says how strongly ``u`` *can* drive ``v`` per unit of activation; it
ignores ReLU gating, biases and sign cancellation.

A ``signed`` variant (``W`` and ``gamma`` with their signs) exists for heads that are
linear end to end (pooling, flatten, Linear); any non-linearity or gate on the way
makes it unavailable.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CircuitUnsupportedError
from ..core.plumbing import eval_mode, model_device_dtype

# float32 keeps ResNet-50-sized products fast; the scores rank channels, they need no more precision.
_DTYPE = torch.float32


class _NotLinear(Exception):
    """Raised inside the signed walk when a non-linear operation is met."""


_CHANNELWISE_LINEAR_MODULES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd, nn.Upsample,
)
_CHANNELWISE_NONLINEAR_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_CHANNELWISE_LINEAR_FUNCTIONS = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.pad, F.interpolate,
    torch.clone,
}
_CHANNELWISE_NONLINEAR_FUNCTIONS = {
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu,
    F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
    F.softplus, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, torch.clamp, torch.clip,
}
_CHANNELWISE_LINEAR_METHODS = {"contiguous", "clone", "float", "to", "type_as", "detach"}
_CHANNELWISE_NONLINEAR_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_max",
}
# Operations that move elements around without changing them: tracked by channel index.
_SHAPE_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "chunk", "split",
    "narrow", "unflatten", "movedim", "swapaxes", "__getitem__",
}
_SHAPE_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze,
    torch.chunk, torch.split, torch.narrow, torch.movedim, torch.swapaxes, operator.getitem,
}
_SHAPE_MODULES = (nn.Flatten, nn.Unflatten)
_ADD = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
_SUB = {operator.sub, operator.isub, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul}
_DIV = {operator.truediv, operator.itruediv, torch.div}
_MUL_METHODS = {"mul", "mul_"}
_DIV_METHODS = {"div", "div_"}
_REDUCTIONS = {"mean", "sum", "amax"}
_CONV_FUNCTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_GATE_SOURCES = {torch.sigmoid, F.sigmoid, F.hardsigmoid, "sigmoid", nn.Sigmoid, nn.Hardsigmoid}


def _needs_values(node, model) -> bool:
    """Nodes whose tensor arguments the walk reads: gates, norms, functional convs and linears."""
    if node.op == "call_module":
        return isinstance(model.get_submodule(node.target), nn.LayerNorm)
    if node.op == "call_function":
        return node.target in _MUL or node.target in _DIV or node.target in (
            F.layer_norm, F.batch_norm, F.linear) or node.target in _CONV_FUNCTIONS
    if node.op == "call_method":
        return node.target in _MUL_METHODS or node.target in _DIV_METHODS
    return False


class _TapTracer(fx.Tracer):
    """Records, for every module call (leaf or container), its output node and call count."""

    def __init__(self):
        super().__init__()
        self.outputs: dict[str, fx.Node] = {}
        self.calls: Counter = Counter()

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        name = self.path_of_module(m)
        self.calls[name] += 1
        if isinstance(out, fx.Proxy):
            self.outputs[name] = out.node
        return out


@dataclass
class ModelWalk:
    """A traced model with the graph node of each tapped layer's output.

    ``shapes`` and ``values`` are filled by ``record`` (one real forward pass).
    """

    model: nn.Module
    graph: fx.Graph
    layers: tuple[str, ...]
    tap_nodes: dict[str, fx.Node]
    order: dict[fx.Node, int]
    shapes: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    recorded: bool = False

    @property
    def output_node(self) -> fx.Node:
        return next(n for n in reversed(self.graph.nodes) if n.op == "output")


def trace_model(model: nn.Module, layers) -> ModelWalk:
    """Trace ``model`` with torch.fx (in eval mode) and locate the tapped layers; never runs the model."""
    tracer = _TapTracer()
    try:
        with eval_mode(model):
            graph = tracer.trace(model)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
        raise CircuitUnsupportedError(
            f"torch.fx could not trace {type(model).__name__} ({type(err).__name__}: {str(err).splitlines()[0]})."
        ) from err
    order = {node: i for i, node in enumerate(graph.nodes)}
    tap_nodes = {}
    for name in layers:
        calls = tracer.calls.get(name, 0)
        if calls == 0 or name not in tracer.outputs:
            raise CircuitUnsupportedError(f"Tapped layer {name!r} is not called in the traced forward pass.")
        if calls > 1:
            raise CircuitUnsupportedError(
                f"Tapped layer {name!r} runs {calls} times per forward pass, so its output is ambiguous."
            )
        tap_nodes[name] = tracer.outputs[name]
    positions = [order[tap_nodes[name]] for name in layers]
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(
            f"layers must be in forward order; the model computes them in the order "
            f"{sorted(layers, key=lambda n: order[tap_nodes[n]])}, got {list(layers)}."
        )
    return ModelWalk(model, graph, tuple(layers), tap_nodes, order)


def record(walk: ModelWalk, inputs: torch.Tensor | None = None, acts: dict | None = None) -> ModelWalk:
    """One real forward pass through the traced graph: shapes of every node, gate and norm values.

    ``inputs``: the ``[C, H, W]`` input (the explanation); the whole graph runs on it.
    Without it, the graph runs from the tapped activations ``acts`` (``{layer: [C, h, w]}``)
    onwards, each tap taking its given value; nodes that need the input are left out.
    The gate values the walk uses are those of this pass: the transfers are a
    linearisation at this input.
    """
    model = walk.model
    device, dtype = model_device_dtype(model)
    nodes = list(walk.graph.nodes)
    last_use = {}
    for i, node in enumerate(nodes):
        for parent in node.all_input_nodes:
            last_use[parent] = i
    keep = {parent for node in nodes if _needs_values(node, model) for parent in node.all_input_nodes}
    seeds = {}
    if inputs is None and acts:
        seeds = {walk.tap_nodes[k]: torch.as_tensor(v)[None].to(device=device, dtype=dtype)
                 for k, v in acts.items() if k in walk.tap_nodes}
    env, shapes, values = {}, {}, {}
    with eval_mode(model), torch.no_grad():
        for i, node in enumerate(nodes):
            if node.op == "output":
                break
            if node in seeds:
                value = seeds[node]
            elif node.op == "placeholder":
                if inputs is not None and not env:
                    value = inputs[None].to(device=device, dtype=dtype)
                elif node.args:
                    value = node.args[0]  # a default value
                else:
                    continue
            elif any(n not in env for n in node.all_input_nodes):
                continue
            else:
                try:
                    value = _run_node(model, node, env)
                except Exception as err:
                    if not seeds:
                        raise
                    raise ValueError(
                        f"The model could not run on from the given activations ({_op_name(node)}{_where(node)}: "
                        f"{type(err).__name__}): the activations do not match this model."
                    ) from err
            env[node] = value
            if isinstance(value, torch.Tensor):
                shapes[node] = tuple(value.shape)
                if node in keep or node.op == "get_attr":
                    values[node] = value.detach().clone() if node.op != "get_attr" else value.detach()
            elif isinstance(value, (tuple, list)) and value and all(isinstance(v, torch.Tensor) for v in value):
                shapes[node] = tuple(tuple(v.shape) for v in value)
            else:
                values[node] = value
            for parent in node.all_input_nodes:
                if last_use.get(parent) == i and parent not in seeds:
                    env.pop(parent, None)
    walk.shapes, walk.values, walk.recorded = shapes, values, True
    return walk


def _run_node(model, node, env):
    args = fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
    if node.op == "call_module":
        return model.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    if node.op == "get_attr":
        return _get_attr(model, node.target)
    raise CircuitUnsupportedError(f"Unexpected graph node {node.format_node()}.")


def _ensure_recorded(walk):
    """Record a pass on a made-up input when nobody recorded one (direct calls of the walk)."""
    if walk.recorded:
        return
    first = next((m for m in walk.model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first is None:
        raise CircuitUnsupportedError("The walk needs one forward pass: call record(walk, inputs) first.")
    size = (first.in_channels,) + (64,) * (first.weight.dim() - 2)
    try:
        record(walk, torch.zeros(size))
    except Exception as err:
        raise CircuitUnsupportedError(
            f"The walk needs one forward pass and a {list(size)} input did not run ({type(err).__name__}); "
            "call record(walk, inputs) with a real input."
        ) from err


def transfer_matrix(walk: ModelWalk, src: str, dst: str, n_src: int, *, fold_bn: bool = True) -> torch.Tensor:
    """``[C_dst, C_src]`` non-negative transfer from tapped layer ``src`` to ``dst`` (see module doc)."""
    return _propagate(walk, walk.tap_nodes[src], walk.tap_nodes[dst], n_src, fold_bn, signed=False,
                      what=f"layer {dst!r}", src_name=src)


def head_transfer(walk: ModelWalk, last: str, n_src: int, *, fold_bn: bool = True,
                  signed: bool = False) -> torch.Tensor | None:
    """``[num_classes, C_last]`` transfer from the last tap to the logits.

    With ``signed=True`` returns the signed linear map when everything between the tap
    and the logits is linear (e.g. global average pool + flatten + Linear), else None.
    """
    out = walk.output_node.args[0]
    if not isinstance(out, fx.Node):
        raise CircuitUnsupportedError("The model's forward must return a single logits tensor.")
    try:
        return _propagate(walk, walk.tap_nodes[last], out, n_src, fold_bn, signed=signed,
                          what="the logits", src_name=last)
    except _NotLinear:
        return None


class _Flow:
    """Transfer from the source tap to one node's output.

    ``mat`` ``[K, S]``: row ``k`` is the transfer to the node's ``k``-th channel. In the
    normal form the channels lie along dimension ``cdim`` of the real tensor; while a
    reshape has them spread over several dimensions, ``idx`` (the real tensor's shape,
    batch 1) holds the row of ``mat`` at every position and ``cdim`` is None.
    """

    __slots__ = ("mat", "cdim", "idx")

    def __init__(self, mat, cdim, idx=None):
        self.mat, self.cdim, self.idx = mat, cdim, idx


def _propagate(walk, start, end, n_src, fold_bn, signed, what, src_name):
    if walk.order[end] <= walk.order[start]:
        raise ValueError(f"{what} is computed before layer {src_name!r}.")
    _ensure_recorded(walk)
    param = next(walk.model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if start not in walk.shapes:
        raise CircuitUnsupportedError(f"Layer {src_name!r} did not run in the recorded forward pass.")
    if len(walk.shapes[start]) < 2 or walk.shapes[start][1] != n_src:
        raise ValueError(f"Layer {src_name!r} has shape {list(walk.shapes[start])} in the recorded forward pass, "
                         f"not {n_src} channels: the activations do not match this model.")
    states: dict = {start: _Flow(torch.eye(n_src, device=device, dtype=_DTYPE), 1)}
    needed = _ancestors(end)  # side branches that do not reach `end` (e.g. auxiliary heads) are skipped
    ctx = _Ctx(walk, fold_bn, signed)
    for node in list(walk.graph.nodes)[walk.order[start] + 1: walk.order[end] + 1]:
        if node in needed:
            states[node] = ctx.node(node, states)
    result = states[end]
    if result is None:
        raise CircuitUnsupportedError(f"{what} does not depend on layer {src_name!r} in the traced graph.")
    if not isinstance(result, _Flow) or result.cdim is None:
        raise CircuitUnsupportedError(f"The channels of {what} cannot be told apart after the reshapes before it.")
    shape = walk.shapes[end]
    if result.cdim != (1 if len(shape) > 1 else 0):
        raise CircuitUnsupportedError(f"{what} ends channels-last (channel dimension {result.cdim} of "
                                      f"{list(shape)}); the readout needs channels-first maps there.")
    return result.mat.cpu()


def _ancestors(node):
    seen, stack = {node}, [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _where(node) -> str:
    """' in module 'a.b' (Type)' for error messages, from the tracer's module stack."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, kind = list(stack.values())[-1]
    kind = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].strip("'>"))
    return f" in module {path!r} ({kind})"


def _op_name(node) -> str:
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f".{node.target}()"
    return str(node.target)


class _Ctx:
    def __init__(self, walk, fold_bn, signed):
        self.walk, self.model, self.fold_bn, self.signed = walk, walk.model, fold_bn, signed

    # -- helpers ---------------------------------------------------------------
    def unsupported(self, node, what):
        return CircuitUnsupportedError(f"{what}: {_op_name(node)}{_where(node)} lies between tapped layers.")

    def value(self, node, a):
        """The real value of a non-flow argument: a number, a parameter or a recorded tensor."""
        if not isinstance(a, fx.Node):
            return a
        if a.op == "get_attr":
            return _get_attr(self.model, a.target)
        if a in self.walk.values:
            return self.walk.values[a]
        raise CircuitUnsupportedError(
            f"{_op_name(node)}{_where(node)} needs the value of {a.name}, which the recorded pass did not "
            "compute: give read_circuit the input (inputs=[C, H, W])."
        )

    def shape(self, node, a):
        if a not in self.walk.shapes:
            raise CircuitUnsupportedError(
                f"{_op_name(node)}{_where(node)}: the shape of {a.name} is unknown (the recorded pass did not "
                "compute it): give read_circuit the input (inputs=[C, H, W])."
            )
        return self.walk.shapes[a]

    def flow_args(self, node, states):
        return [a for a in node.all_input_nodes if isinstance(states.get(a), (_Flow, tuple))]

    def normal(self, node, flow, cdim=None):
        if not isinstance(flow, _Flow) or flow.cdim is None:
            raise self.unsupported(node, "Channels spread over several dimensions reach an operation")
        if cdim is not None and flow.cdim != cdim:
            raise self.unsupported(node, f"Channels along dimension {flow.cdim} (not {cdim}) reach an operation")
        return flow

    def nonlinear(self, flow):
        if self.signed:
            raise _NotLinear
        return flow

    # -- dispatch --------------------------------------------------------------
    def node(self, node, states):
        if node.op in ("get_attr", "placeholder"):
            return None
        flows = self.flow_args(node, states)
        if not flows:
            return None
        if node not in self.walk.shapes:
            if node in self.walk.values:
                return None  # sizes, dims and other numbers computed from the map
            raise CircuitUnsupportedError(
                f"{_op_name(node)}{_where(node)} did not run in the recorded forward pass: give read_circuit "
                "the input (inputs=[C, H, W]).")
        first = states[flows[0]]
        if node.op == "call_module":
            return self.module(node, self.model.get_submodule(node.target), states, first)
        if node.op == "call_function":
            return self.function(node, states, first)
        if node.op == "call_method":
            return self.method(node, states, first)
        raise CircuitUnsupportedError(f"Unexpected graph node {node.format_node()}.")

    def module(self, node, module, states, t):
        name = node.target
        if isinstance(module, nn.modules.conv._ConvNd):
            if module.transposed:
                raise CircuitUnsupportedError(f"Transposed convolution {name!r} is not supported.")
            return self.conv(node, t, module.weight, module.groups)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            t = self.normal(node, t, 1)
            _check_in(t.mat, module.num_features, name)
            if not self.fold_bn:
                return t
            return _Flow(bn_channel_gain(module, self.signed).to(t.mat)[:, None] * t.mat, 1)
        if isinstance(module, nn.LayerNorm):
            return self.layer_norm(node, t, module.normalized_shape, module.weight, module.eps)
        if isinstance(module, nn.Linear):
            return self.linear(node, t, module.weight)
        if isinstance(module, _SHAPE_MODULES):
            return self.reshape(node, states)
        if isinstance(module, _CHANNELWISE_LINEAR_MODULES):
            return t
        if isinstance(module, _CHANNELWISE_NONLINEAR_MODULES):
            return self.nonlinear(t)
        raise CircuitUnsupportedError(
            f"Module {name!r} ({type(module).__name__}) lies between tapped layers and is not one the walk knows."
        )

    def function(self, node, states, t):
        fn = node.target
        if fn in _ADD or fn in _SUB:
            return self.combine(node, states, subtract=(fn in _SUB) and self.signed)
        if fn in _MUL or fn in _DIV:
            return self.product(node, states, divide=fn in _DIV)
        if fn is torch.cat or fn is torch.concat:
            return self.concat(node, states)
        if fn in _CONV_FUNCTIONS:
            weight = self.value(node, _arg(node, 1, "weight"))
            return self.conv(node, t, weight, self.value(node, _arg(node, 6, "groups", 1)))
        if fn is F.linear:
            return self.linear(node, t, self.value(node, _arg(node, 1, "weight")))
        if fn is F.layer_norm:
            weight = _arg(node, 2, "weight")
            return self.layer_norm(node, t, self.value(node, _arg(node, 1, "normalized_shape")),
                                   self.value(node, weight) if weight is not None else None,
                                   self.value(node, _arg(node, 4, "eps", 1e-5)))
        if fn is F.batch_norm:
            return self.batch_norm_fn(node, t)
        if fn in _SHAPE_FUNCTIONS:
            if isinstance(t, tuple) and fn is operator.getitem:
                return t[node.args[1]]
            return self.reshape(node, states)
        if fn in _CHANNELWISE_LINEAR_FUNCTIONS or getattr(fn, "__name__", "") == "stochastic_depth":
            return t  # stochastic depth is the identity in eval mode
        if fn in _CHANNELWISE_NONLINEAR_FUNCTIONS:
            return self.nonlinear(t)
        if fn in (torch.mean, torch.sum, torch.amax):
            return self.reduce(node, t, fn is torch.amax)
        raise self.unsupported(node, "Unsupported operation")

    def method(self, node, states, t):
        name = node.target
        if name in _ADD_METHODS:
            return self.combine(node, states, subtract=False)
        if name in _MUL_METHODS or name in _DIV_METHODS:
            return self.product(node, states, divide=name in _DIV_METHODS)
        if name in _SHAPE_METHODS:
            return self.reshape(node, states)
        if name in _CHANNELWISE_LINEAR_METHODS:
            return t
        if name in _CHANNELWISE_NONLINEAR_METHODS:
            return self.nonlinear(t)
        if name in _REDUCTIONS:
            return self.reduce(node, t, name == "amax")
        raise self.unsupported(node, "Unsupported method call")

    # -- operations -------------------------------------------------------------
    def conv(self, node, t, weight, groups):
        t = self.normal(node, t, 1)
        w = _kernel_matrix(weight, int(groups), self.signed).to(t.mat)
        _check_in(t.mat, w.shape[1], node.target if node.op == "call_module" else f"{_op_name(node)}{_where(node)}")
        return _Flow(w @ t.mat, 1)

    def linear(self, node, t, weight):
        t = self.normal(node, t)
        shape = self.shape(node, node.all_input_nodes[0])
        w = weight.detach().to(_DTYPE)
        w = w if self.signed else w.abs()
        if t.cdim != len(shape) - 1:
            raise self.unsupported(node, f"A linear layer mixes dimension {len(shape) - 1}, not the channel "
                                         f"dimension {t.cdim}")
        if t.mat.shape[0] != w.shape[1]:
            raise ValueError(f"{_op_name(node)}{_where(node)} expects {w.shape[1]} input features but the walk "
                             f"brings {t.mat.shape[0]}: the activations do not match this model.")
        return _Flow(w.to(t.mat) @ t.mat, t.cdim)

    def layer_norm(self, node, t, normalized_shape, weight, eps):
        t = self.normal(node, t)
        if self.signed:
            raise _NotLinear
        shape = self.shape(node, node.all_input_nodes[0])
        if len(tuple(normalized_shape)) != 1 or t.cdim != len(shape) - 1:
            raise self.unsupported(node, "A LayerNorm over more than the channel dimension")
        n = t.mat.shape[0]
        gain = weight.detach().to(_DTYPE).abs() if weight is not None else torch.ones(n, dtype=_DTYPE)
        x = self.walk.values.get(node.all_input_nodes[0])
        if x is not None and self.fold_bn:
            sigma = torch.sqrt(x.detach().to(_DTYPE).var(dim=-1, unbiased=False) + float(eps)).mean()
            gain = gain / sigma.cpu()
        return _Flow(gain.to(t.mat)[:, None] * t.mat, t.cdim)

    def batch_norm_fn(self, node, t):
        t = self.normal(node, t, 1)
        if not self.fold_bn:
            return t
        var, weight = _arg(node, 2, "running_var"), _arg(node, 3, "weight")
        eps = self.value(node, _arg(node, 7, "eps", 1e-5))
        n = t.mat.shape[0]
        gain = self.value(node, weight).detach().to(_DTYPE) if weight is not None else torch.ones(n, dtype=_DTYPE)
        if var is not None:
            gain = gain / torch.sqrt(self.value(node, var).detach().to(_DTYPE) + float(eps))
        gain = gain if self.signed else gain.abs()
        return _Flow(gain.to(t.mat)[:, None] * t.mat, 1)

    def combine(self, node, states, subtract):
        parts = [states[a] for a in node.args if isinstance(a, fx.Node) and states.get(a) is not None]
        parts = [self.normal(node, p) for p in parts]
        if any(p.mat.shape != parts[0].mat.shape or p.cdim != parts[0].cdim for p in parts):
            raise self.unsupported(node, "Addition of differently shaped transfers")
        total = parts[0].mat
        for p in parts[1:]:
            total = total - p.mat if subtract else total + p.mat
        return _Flow(total, parts[0].cdim)

    def product(self, node, states, divide):
        """Per-channel scaling: by a number, a constant tensor, or a gate (a linearisation)."""
        operands = list(node.args[:2])
        flows = [a for a in operands if isinstance(a, fx.Node) and states.get(a) is not None]
        out_shape = self.shape(node, node)
        if len(flows) == 2:
            if divide or self.signed:
                if self.signed:
                    raise _NotLinear
                raise self.unsupported(node, "Division of two maps that both depend on the previous tap")
            path, gate = self.pick_gate(node, flows)
            t = self.normal(node, states[path])
            g = self.value(node, gate)
        else:
            if len(flows) != 1:
                raise self.unsupported(node, "Unsupported product")
            path = flows[0]
            if divide and operands[0] is not path:
                raise self.unsupported(node, "Division by a map")
            other = operands[1] if operands[0] is path else operands[0]
            t = self.normal(node, states[path])
            g = self.value(node, other)
        if isinstance(g, (int, float)) and not isinstance(g, bool):
            s = 1.0 / float(g) if divide else float(g)
            return _Flow(t.mat * (s if self.signed else abs(s)), t.cdim)
        if not isinstance(g, torch.Tensor):
            raise self.unsupported(node, f"Product with a {type(g).__name__}")
        scale = _per_channel(g.detach().to(_DTYPE), out_shape, t.cdim, self.signed)
        if scale is None or scale.numel() != t.mat.shape[0]:
            raise self.unsupported(node, "A product that does not scale each channel")
        if divide:
            scale = 1.0 / scale
        return _Flow(scale.to(t.mat)[:, None] * t.mat, t.cdim)

    def pick_gate(self, node, flows):
        """Of two operands that both depend on the tap, which is the gate: the one broadcast over
        positions (squeeze-and-excitation), else the output of a sigmoid-like function, else the second."""
        sizes = [_numel(self.shape(node, a)) for a in flows]
        if sizes[0] != sizes[1]:
            return (flows[0], flows[1]) if sizes[0] > sizes[1] else (flows[1], flows[0])
        for i, a in enumerate(flows):
            kind = a.target if a.op != "call_module" else type(self.model.get_submodule(a.target))
            if kind in _GATE_SOURCES:
                return flows[1 - i], a
        return flows[0], flows[1]

    def concat(self, node, states):
        seq = node.args[0]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        out_shape = self.shape(node, node)
        dim = dim % len(out_shape)
        parts, ref = [], None
        for a in seq:
            if isinstance(a, fx.Node) and states.get(a) is not None:
                ref = self.normal(node, states[a])
                if ref.cdim != dim:
                    raise self.unsupported(node, "A concatenation along a dimension other than channels")
        for a in seq:
            if isinstance(a, fx.Node) and states.get(a) is not None:
                parts.append(states[a].mat)
            else:  # a branch independent of the previous tap: zero transfer
                n = self.shape(node, a)[dim] if isinstance(a, fx.Node) else a.shape[dim]
                parts.append(ref.mat.new_zeros(n, ref.mat.shape[1]))
        return _Flow(torch.cat(parts, dim=0), dim)

    def reduce(self, node, t, is_max):
        t = self.normal(node, t)
        if self.signed and is_max:
            raise _NotLinear
        shape = self.shape(node, node.all_input_nodes[0])
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        if dim is None:
            raise self.unsupported(node, "A reduction over every dimension")
        dims = {d % len(shape) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        if t.cdim in dims:
            raise self.unsupported(node, "A reduction over channels")
        cdim = t.cdim if keepdim else t.cdim - sum(d < t.cdim for d in dims)
        return _Flow(t.mat, cdim)

    def reshape(self, node, states):
        """Apply the real shape operation to a tensor of channel indices (see module doc)."""
        src = next(a for a in node.all_input_nodes if states.get(a) is not None)
        flow = states[src]
        if isinstance(flow, tuple):
            raise self.unsupported(node, "Unsupported use of a split map")
        idx = flow.idx if flow.idx is not None else _channel_index(flow, self.shape(node, src))

        def sub(a):
            return idx if a is src else self.value(node, a)

        args = fx.node.map_arg(node.args, sub)
        kwargs = fx.node.map_arg(node.kwargs, sub)
        if node.op == "call_module":
            out = self.model.get_submodule(node.target)(*args, **kwargs)
        elif node.op == "call_function":
            out = node.target(*args, **kwargs)
        else:
            out = getattr(args[0], node.target)(*args[1:], **kwargs)
        if isinstance(out, torch.Tensor):
            return _normalise(flow.mat, out, flow.cdim)
        return tuple(_normalise(flow.mat, o, flow.cdim) for o in out)


def _arg(node, i, name, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _per_channel(g, out_shape, cdim, signed):
    """Mean (absolute unless signed) of ``g`` broadcast to ``out_shape``, per index of ``cdim``."""
    try:
        full = torch.broadcast_to(g, out_shape)
    except RuntimeError:
        return None
    flat = full.movedim(cdim, 0).reshape(out_shape[cdim], -1)
    return (flat if signed else flat.abs()).mean(dim=1)


def _channel_index(flow, shape):
    view = [1] * len(shape)
    view[flow.cdim] = shape[flow.cdim]
    return torch.arange(shape[flow.cdim]).view(view).expand(shape).clone()


def _normalise(mat, idx, old_cdim):
    """Back to the normal form when one dimension alone carries the channel index, else keep ``idx``."""
    idx = idx.contiguous()
    shape = tuple(idx.shape)
    candidates = []
    for d, n in enumerate(shape):
        rows = idx.movedim(d, 0).reshape(n, -1)
        if bool((rows == rows[:, :1]).all()):
            varies = n > 1 and bool((rows[:, 0] != rows[0, 0]).any())
            candidates.append((not varies, d != old_cdim, d))
    if not candidates:
        return _Flow(mat, None, idx)
    d = min(candidates)[2]
    rows = idx.movedim(d, 0).reshape(shape[d], -1)[:, 0]
    return _Flow(mat[rows.to(mat.device)], d)


def _check_in(mat, expected, name):
    if mat.shape[0] != expected:
        raise ValueError(
            f"Module {name!r} expects {expected} input channels but the walk brings {mat.shape[0]}: the "
            "activations given for the tapped layers do not match this model."
        )


def _kernel_matrix(weight, groups, signed):
    w = weight.detach().to(_DTYPE)
    w = w if signed else w.abs()
    per_group = w.sum(dim=tuple(range(2, w.dim())))  # [C_out, C_in / groups]
    if groups == 1:
        return per_group
    c_out, in_per = per_group.shape[0], per_group.shape[1]
    out_per = c_out // groups
    full = per_group.new_zeros(c_out, in_per * groups)
    for k in range(groups):
        full[k * out_per:(k + 1) * out_per, k * in_per:(k + 1) * in_per] = per_group[k * out_per:(k + 1) * out_per]
    return full


def conv_channel_matrix(conv: nn.modules.conv._ConvNd, signed: bool = False) -> torch.Tensor:
    """``[C_out, C_in]``: ``|W|`` (or ``W``) summed over the kernel; groups become block-diagonal blocks."""
    return _kernel_matrix(conv.weight, conv.groups, signed)


def bn_channel_gain(bn: nn.modules.batchnorm._BatchNorm, signed: bool = False) -> torch.Tensor:
    """Per-channel gain of an eval-mode BatchNorm: ``gamma / sqrt(running_var + eps)`` (absolute unless signed).

    Without running statistics only ``gamma`` is used; without affine weights the gain is 1.
    """
    n = bn.num_features
    gamma = bn.weight.detach().to(_DTYPE) if bn.weight is not None else torch.ones(n, dtype=_DTYPE)
    if bn.running_var is not None:
        gamma = gamma / torch.sqrt(bn.running_var.detach().to(gamma.device, _DTYPE) + bn.eps)
    return gamma if signed else gamma.abs()


def evaluate_head(walk: ModelWalk, last: str, act: torch.Tensor) -> torch.Tensor | None:
    """Logits computed from the last tap's activation [1, C, h, w] by running the graph after it.

    Returns None when the graph after the tap needs anything else (e.g. the input image).
    The caller is responsible for eval mode and no_grad.
    """
    start = walk.tap_nodes[last]
    env = {start: act}
    model = walk.model
    for node in list(walk.graph.nodes)[walk.order[start] + 1:]:
        if node.op == "output":
            out = node.args[0]
            return env.get(out) if isinstance(out, fx.Node) else None
        if any(n not in env for n in node.all_input_nodes):
            continue
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "call_module":
            env[node] = model.get_submodule(node.target)(*args, **kwargs)
        elif node.op == "call_function":
            env[node] = node.target(*args, **kwargs)
        elif node.op == "call_method":
            env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
        elif node.op == "get_attr":
            env[node] = _get_attr(model, node.target)
    return None


def _get_attr(model, dotted):
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj
