"""Circuit walk through the structures of modern CNNs: gates, concatenations, channel shuffles,
functional and depthwise convolutions, channels-last blocks; then real families end to end."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm

from nbexplain.circuits import CircuitUnsupportedError, read_circuit
from nbexplain.circuits.walk import head_transfer, record, trace_model, transfer_matrix


@pytest.fixture(autouse=True)
def one_thread():
    """Small forwards are much faster on one thread when the CPUs are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def set_weights(conv, w):
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(w, dtype=torch.float32).view_as(conv.weight))
        if conv.bias is not None:
            conv.bias.zero_()


def acts_of(model, layers, x):
    acts = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: acts.__setitem__(n, o[0].detach())) for n in layers]
    with torch.no_grad():
        logits = model(x[None])
    for h in handles:
        h.remove()
    return acts, logits[0]


# ----------------------------------------------------------------------------- gate

class GateNet(nn.Module):
    """tap a -> squeeze-excitation gate -> 1x1 conv -> tap b."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 1, bias=False)
        self.se = nn.Conv2d(2, 2, 1)
        self.b = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2)
        set_weights(self.a, [[1.0], [-2.0]])
        set_weights(self.se, [[0.5, 0.0], [0.0, -1.0]])
        set_weights(self.b, [[1.0, 2.0], [-3.0, 0.5]])

    def forward(self, x):
        x = self.a(x)
        x = x * torch.sigmoid(self.se(F.adaptive_avg_pool2d(x, 1)))
        return self.fc(self.b(x).mean((2, 3)))


def test_gate_is_the_inputs_gate_values_times_the_gated_path():
    model = GateNet().eval()
    x = torch.full((1, 3, 3), 2.0)
    walk = record(trace_model(model, ["a", "b"]), x)
    t = transfer_matrix(walk, "a", "b", 2)
    # tap a on this input: channel 0 is 2, channel 1 is -4 everywhere; gate = sigmoid(se(mean)).
    g = torch.sigmoid(torch.tensor([0.5 * 2.0, -1.0 * -4.0]))
    expected = torch.tensor([[1.0, 2.0], [3.0, 0.5]]) @ torch.diag(g)
    torch.testing.assert_close(t, expected)
    # A different input gives different gate values: the transfer is a linearisation at the input.
    t2 = transfer_matrix(record(trace_model(model, ["a", "b"]), -x), "a", "b", 2)
    g2 = torch.sigmoid(torch.tensor([0.5 * -2.0, -1.0 * 4.0]))
    torch.testing.assert_close(t2, torch.tensor([[1.0, 2.0], [3.0, 0.5]]) @ torch.diag(g2))


def test_gated_head_has_no_signed_transfer_and_constant_scale_is_per_channel():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 1, bias=False)
            self.scale = nn.Parameter(torch.tensor([2.0, -0.5]).view(2, 1, 1))
            self.fc = nn.Linear(2, 1, bias=False)
            set_weights(self.a, [[1.0], [1.0]])
            with torch.no_grad():
                self.fc.weight.copy_(torch.tensor([[1.0, 4.0]]))

        def forward(self, x):
            return self.fc((self.scale * self.a(x)).mean((2, 3)))

    walk = record(trace_model(Scaled().eval(), ["a"]), torch.ones(1, 2, 2))
    torch.testing.assert_close(head_transfer(walk, "a", 2), torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(head_transfer(walk, "a", 2, signed=True), torch.tensor([[2.0, -2.0]]))
    gated = record(trace_model(GateNet().eval(), ["a"]), torch.ones(1, 2, 2))
    assert head_transfer(gated, "a", 2, signed=True) is None


# ----------------------------------------------------------------------------- concatenation

class CatNet(nn.Module):
    """tap a; a side branch computed from the image alone; concatenated, then tap out."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 1, bias=False)
        self.main = nn.Conv2d(2, 1, 1, bias=False)
        self.side = nn.Conv2d(1, 3, 1, bias=False)
        self.out = nn.Identity()
        self.fc = nn.Linear(4, 2)
        set_weights(self.main, [[2.0, -3.0]])

    def forward(self, x):
        y = torch.cat([self.main(self.a(x)), self.side(x)], dim=1)
        return self.fc(self.out(y).mean((2, 3)))


def test_concatenation_with_a_branch_independent_of_the_tap():
    model = CatNet().eval()
    walk = record(trace_model(model, ["a", "out"]), torch.randn(1, 4, 4))
    t = transfer_matrix(walk, "a", "out", 2)
    expected = torch.tensor([[2.0, 3.0], [0, 0], [0, 0], [0, 0]])
    torch.testing.assert_close(t, expected)


# ----------------------------------------------------------------------------- shuffle

def channel_shuffle(x, groups):
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 6, 1, bias=False)
        self.branch = nn.Conv2d(3, 3, 1, bias=False)
        self.out = nn.Identity()
        self.fc = nn.Linear(6, 2)
        set_weights(self.branch, torch.arange(1.0, 10.0).view(3, 3).tolist())

    def forward(self, x):
        x = self.a(x)
        x1, x2 = x.chunk(2, dim=1)
        y = channel_shuffle(torch.cat((x1, self.branch(x2)), dim=1), 3)
        return self.fc(self.out(y).mean((2, 3)))


def test_channel_shuffle_and_split_are_tracked():
    model = ShuffleNet().eval()
    walk = record(trace_model(model, ["a", "out"]), torch.randn(1, 3, 3))
    t = transfer_matrix(walk, "a", "out", 6)
    before = torch.zeros(6, 6)
    before[:3, :3] = torch.eye(3)  # x1 passes through
    before[3:, 3:] = torch.arange(1.0, 10.0).view(3, 3)  # branch on x2
    # shuffle with 3 groups of 2: output channel j takes input channel (j % 3) * 2 + j // 3
    perm = [(j % 3) * 2 + j // 3 for j in range(6)]
    torch.testing.assert_close(t, before[perm])


# ----------------------------------------------------------------------------- functional, depthwise

class StaticPadConv(nn.Conv2d):
    """Like EfficientNet-Lite's Conv2dStaticSamePadding: a padding module and an F.conv2d call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad = nn.ZeroPad2d(1)

    def forward(self, x):
        return F.conv2d(self.pad(x), self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def test_functional_depthwise_and_grouped_convolutions():
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), StaticPadConv(4, 4, 3, groups=4),
                          StaticPadConv(4, 2, 1, groups=2),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)).eval()
    walk = record(trace_model(model, ["1", "4"]), torch.randn(1, 5, 5))
    t = transfer_matrix(walk, "1", "4", 4)
    dw = torch.diag(model[2].weight.detach().abs().sum((1, 2, 3)))
    grouped = torch.zeros(2, 4)
    w = model[3].weight.detach().abs().sum((2, 3))  # [2, 2]
    grouped[0, :2], grouped[1, 2:] = w[0], w[1]
    torch.testing.assert_close(t, grouped @ dw)


# ----------------------------------------------------------------------------- channels-last block

class ChannelsLast(nn.Module):
    """ConvNeXt-style: depthwise conv, permute, LayerNorm, Linear, permute back, layer scale, residual."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 3, 1)
        self.dw = nn.Conv2d(3, 3, 1, groups=3, bias=False)
        self.norm = nn.LayerNorm(3)
        self.lin = nn.Linear(3, 3, bias=False)
        self.gamma = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1))
        self.out = nn.Identity()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = self.a(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.lin(self.norm(y)).permute(0, 3, 1, 2)
        return self.fc(self.out(x + self.gamma * y).mean((2, 3)))


def test_channels_last_block_with_layer_norm():
    torch.manual_seed(0)
    model = ChannelsLast().eval()
    x = torch.randn(1, 4, 4)
    walk = record(trace_model(model, ["a", "out"]), x)
    t = transfer_matrix(walk, "a", "out", 3)
    with torch.no_grad():
        h = model.dw(model.a(x[None])).permute(0, 2, 3, 1)
        sigma = torch.sqrt(h.var(-1, unbiased=False) + model.norm.eps).mean()
    dw = torch.diag(model.dw.weight.detach().abs().flatten())
    ln = torch.diag(model.norm.weight.detach().abs() / sigma)
    scale = torch.diag(model.gamma.detach().abs().flatten())
    expected = torch.eye(3) + scale @ model.lin.weight.detach().abs() @ ln @ dw
    torch.testing.assert_close(t, expected)


def test_unsupported_operation_names_itself_and_its_module():
    class Attention(nn.Module):
        def forward(self, x):
            n, c, h, w = x.shape
            q = x.flatten(2)
            return (q @ q.transpose(1, 2)).softmax(-1).view(n, c, c, 1)[..., :1].expand(n, c, c, 1)[:, :, :1]

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), Attention(), nn.Conv2d(4, 2, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.randn(3, 4, 4)
    acts, logits = acts_of(model, ["1", "4"], x)
    with pytest.raises(CircuitUnsupportedError, match=r"in module '2' \(Attention\)") as info:
        read_circuit(model, ["1", "4"], acts, target=0, inputs=x)
    assert "\n" not in info.value.reason


# ----------------------------------------------------------------------------- real models

def test_efficientnet_lite0_pretrained_reads_a_decision_sized_circuit():
    from nbexplain.zoo import load_model

    model = load_model("efficientnet_lite0").model  # the examples extra is part of the test set-up
    layers = ["_blocks.0", "_blocks.2", "_blocks.4", "_blocks.10", "_bn1"]
    torch.manual_seed(0)
    x = torch.randn(3, 96, 96) * 0.5
    acts, logits = acts_of(model, layers, x)
    c = read_circuit(model, layers, acts, target=int(logits.argmax()), inputs=x)
    assert c.sizing is not None and c.sizing.kept
    v = c.validate(repeats=5)
    assert v.kept_circuit
    assert sum(v.kept_channels) == c.size and c.size <= sum(v.total_channels)
    assert c.to_dict()["sizing"]["share"] == pytest.approx(c.size / sum(v.total_channels))


FAMILIES = {
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10),
                           ["features.1", "features.3", "features.8", "features.12"]),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), ["features.1", "features.3", "features.8"]),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=10),
                       ["stem", "trunk_output.block1", "trunk_output.block4"]),
    "densenet121": (lambda: tvm.densenet121(num_classes=10),
                    ["features.relu0", "features.transition1", "features.norm5"]),
    "googlenet": (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=False),
                  ["conv1", "inception3b", "inception5b"]),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), ["maxpool", "stage2", "conv5"]),
    "convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=10), ["features.0", "features.1", "features.3"]),
    "squeezenet1_0": (lambda: tvm.squeezenet1_0(num_classes=10), ["features.2", "features.6", "features.12"]),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_torchvision_family_reads_a_circuit(name):
    build, layers = FAMILIES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(3, 64, 64)
    acts, logits = acts_of(model, layers, x)
    c = read_circuit(model, layers, acts, target=int(logits.argmax()), inputs=x)
    assert c.size > 0 and set(c.channels) == set(layers)
    assert c.validate(repeats=0).kept_circuit
    totals = c.sizing.totals
    assert all(1 <= len(c.channels[n]) <= totals[n] for n in layers)
    assert math.isclose(c.sizing.share, c.size / sum(totals.values()))


def test_static_plot_shows_the_top_channels_and_counts_the_rest():
    from matplotlib.figure import Figure

    from nbexplain.circuit_plot import draw_circuit

    nodes = [{"id": f"a:{i}", "kind": "channel", "layer": "a", "layer_index": 0, "channel": i, "energy": float(i)}
             for i in range(300)]
    nodes.append({"id": "class:0", "kind": "class", "class": 0, "name": "zero", "prob": 0.9, "layer_index": 1})
    edges = [{"source": f"a:{i}", "target": "class:0", "score": float(i)} for i in range(300)]
    ax = Figure().subplots()
    draw_circuit({"layers": ["a"], "target": 0, "nodes": nodes, "edges": edges}, ax)
    texts = [t.get_text() for t in ax.texts]
    assert "+ 284 more" in texts
    assert len(ax.collections) == 16 + 1 and len(ax.lines) == 16  # 16 channels, the class, their edges


def test_a_fixed_budget_is_still_available():
    from nbexplain.circuits import CircuitConfig

    model = ShuffleNet().eval()
    x = torch.randn(1, 3, 3)
    acts, logits = acts_of(model, ["a", "out"], x)
    fixed = read_circuit(model, ["a", "out"], acts, target=int(logits.argmax()), inputs=x,
                         config=CircuitConfig(nodes_per_layer=2))
    assert fixed.sizing is None and [len(v) for v in fixed.channels.values()] == [2, 2]
    assert "sizing" not in fixed.to_dict()
    sized = read_circuit(model, ["a", "out"], acts, target=int(logits.argmax()), inputs=x)
    assert sized.sizing is not None and all("relevance" in n for n in sized.nodes if n["kind"] == "channel")
    with pytest.raises(ValueError, match="sizing"):
        CircuitConfig(sizing="smallest")
