"""Circuit readout: hand-checked edge scores, structural walks, selection, comparison, causal check."""

import copy
import json
import math

import networkx as nx
import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

from nbexplain.circuits import Circuit, CircuitConfig, CircuitUnsupportedError, read_circuit
from nbexplain.circuits.walk import trace_model, transfer_matrix

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- helpers

def record_acts(model, layers, x):
    """Activations [C, h, w] of `layers` for input x [C, H, W], computed in eval mode on a copy."""
    model = copy.deepcopy(model).eval()
    store = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: store.__setitem__(n, o[0].detach().clone())) for n in layers]
    with torch.no_grad():
        logits = model(x[None])[0]
    for h in handles:
        h.remove()
    return store, logits


def kernel_abs_sums(weight):
    """[C_out, C_in] sums of |w| over the kernel, in float64, written without the library's helpers."""
    return weight.detach().double().abs().flatten(2).sum(2)


def bn_gain(bn):
    return (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)).abs()


def randomise_batchnorm(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.1)
    return model


def block_transfer(block):
    """Independent composition for a torchvision block: main path product + shortcut."""
    convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, "conv3") else [])
    bns = [block.bn1, block.bn2] + ([block.bn3] if hasattr(block, "bn3") else [])
    t = None
    for conv, bn in zip(convs, bns):
        step = bn_gain(bn)[:, None] * kernel_abs_sums(conv.weight)
        t = step if t is None else step @ t
    if block.downsample is None:
        shortcut = torch.eye(t.shape[0], dtype=torch.float64)
    else:
        conv, bn = block.downsample
        shortcut = bn_gain(bn)[:, None] * kernel_abs_sums(conv.weight)
    return t + shortcut


class Chain(nn.Module):
    """conv -> relu1 -> conv2 -> relu2 -> global average pool -> fc, weights set by the tests."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def hand_chain():
    model = Chain()
    with torch.no_grad():
        w = torch.zeros(2, 3, 3, 3)
        # Kernel |w| sums: into channel 0 from (0, 1, 2) = 2, 1, 0.75; into channel 1 = 0.25, 3, 1.
        w[0, 0, 1, 1], w[0, 1, 0, 0], w[0, 2, 2, 2] = 2.0, -1.0, 0.75
        w[1, 0, 1, 1], w[1, 2, 1, 1] = -0.25, 1.0
        w[1, 1, 0, 0], w[1, 1, 0, 1], w[1, 1, 1, 1] = 1.0, -1.0, 1.0  # spread over the kernel: 3
        model.conv2.weight.copy_(w)
        model.fc.weight.copy_(torch.tensor([[1.0, -3.0], [0.5, 0.5], [-3.0, 1.0]]))
        model.fc.bias.zero_()
    return model.eval()


# Made-up activations: relu1 energies (L2) 5, 1, 2; relu2 means 2 and 1.
CHAIN_ACTS = {
    "relu1": torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]),
    "relu2": torch.tensor([[[2.0, 2.0], [2.0, 2.0]], [[0.0, 4.0], [0.0, 0.0]]]),
}
CHAIN_LAYERS = ["relu1", "relu2"]


def edge_scores(circuit):
    return {(e["source"], e["target"]): e["score"] for e in circuit.edges}


class StemAndStage(nn.Module):
    """ResNet-named stem (conv1, relu) and one stage (layer1) with a pooled Linear head."""

    def __init__(self, stage, width, classes):
        super().__init__()
        self.conv1, self.relu, self.layer1 = nn.Conv2d(3, width, 3), nn.ReLU(), stage
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(stage[-1].conv3.out_channels, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(self.relu(self.conv1(x)))), 1))


def tiny_resnet(num_classes=4):
    return torchvision.models.resnet.ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


RESNET_LAYERS = ["relu", "layer1", "layer2", "layer3", "layer4"]


# ----------------------------------------------------------------------------- edge scores by hand

def test_edge_scores_by_hand_raw_transfer():
    config = CircuitConfig(nodes_per_layer=3, edges_per_node=3, transfer_norm="none", class_top_k=2)
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1, config=config)
    scores = edge_scores(c)
    # |kernel sum| x L2 energy of the source channel (5, 1, 2).
    expected = {
        ("relu1:0", "relu2:0"): 2 * 5, ("relu1:1", "relu2:0"): 1 * 1, ("relu1:2", "relu2:0"): 0.75 * 2,
        ("relu1:0", "relu2:1"): 0.25 * 5, ("relu1:1", "relu2:1"): 3 * 1, ("relu1:2", "relu2:1"): 1 * 2,
    }
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, rel=1e-6)


def test_edge_scores_max_normalised_and_pruned_per_node():
    config = CircuitConfig(nodes_per_layer=3, edges_per_node=2, class_top_k=2)
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1, config=config)
    layer_edges = {k: v for k, v in edge_scores(c).items() if k[1].startswith("relu2")}
    # The largest kernel sum (3) becomes 1; each node keeps its two strongest incoming edges.
    assert layer_edges == pytest.approx({
        ("relu1:0", "relu2:0"): 2 / 3 * 5, ("relu1:2", "relu2:0"): 0.75 / 3 * 2,
        ("relu1:1", "relu2:1"): 3 / 3 * 1, ("relu1:2", "relu2:1"): 1 / 3 * 2,
    }, rel=1e-6)


def test_class_edges_target_and_top_classes_with_sign():
    config = CircuitConfig(nodes_per_layer=3, class_top_k=1, edges_per_class=1)
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=0, config=config)
    # pooled features (2, 1): logits = (2 - 3, 1 + 0.5, -6 + 1) = (-1, 1.5, -5)
    assert c.classes == (0, 1)  # the target, then the top other class by logit
    class_edges = [e for e in c.edges if e["target"].startswith("class:")]
    assert class_edges == [
        {"source": "relu2:1", "target": "class:0", "score": pytest.approx(3.0), "sign": -1},
        {"source": "relu2:0", "target": "class:1", "score": pytest.approx(1.0), "sign": 1},
    ]
    nodes = {n["id"]: n for n in c.nodes}
    z = sum(math.exp(v) for v in (-1, 1.5, -5))
    assert nodes["class:0"]["logit"] == pytest.approx(-1.0)
    assert nodes["class:1"]["prob"] == pytest.approx(math.exp(1.5) / z)
    assert nodes["class:0"]["layer_index"] == 2


def test_class_edges_without_sign_when_head_is_not_linear():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                          nn.Linear(2, 2))
    acts = {"1": torch.rand(2, 3, 3)}
    c = read_circuit(model, ["1"], acts, target=0)
    class_edges = [e for e in c.edges if e["target"].startswith("class:")]
    assert class_edges and all("sign" not in e for e in class_edges)


# ----------------------------------------------------------------------------- structural walks

def test_basic_block_hand_checked_single_channel():
    block = BasicBlock(1, 1)
    with torch.no_grad():
        block.conv1.weight.copy_(torch.tensor([[[[0.5, -0.5, 0.5], [0.5, 0.5, -0.5], [0.5, 0.5, 0.5]]]]))
        block.conv2.weight.fill_(-0.1)
        block.bn1.weight.fill_(2.0), block.bn1.running_var.fill_(3.0), block.bn1.bias.fill_(0.3)
        block.bn2.weight.fill_(-0.5), block.bn2.running_var.fill_(0.25)
    model = nn.Sequential(nn.Conv2d(1, 1, 3), block, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    t = transfer_matrix(trace_model(model, ["0", "1"]), "0", "1", 1)
    eps = 1e-5
    main = 4.5 * (2 / math.sqrt(3 + eps)) * 0.9 * (0.5 / math.sqrt(0.25 + eps))
    assert t.shape == (1, 1)
    assert float(t) == pytest.approx(main + 1.0, rel=1e-6)  # main path + identity shortcut
    unfolded = transfer_matrix(trace_model(model, ["0", "1"]), "0", "1", 1, fold_bn=False)
    assert float(unfolded) == pytest.approx(4.5 * 0.9 + 1.0, rel=1e-6)


def test_basic_block_with_downsample_walk():
    torch.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(2, 3, 1, stride=2, bias=False), nn.BatchNorm2d(3))
    block = BasicBlock(2, 3, stride=2, downsample=down)
    model = randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), block, nn.AdaptiveAvgPool2d(1),
                                              nn.Flatten(), nn.Linear(3, 2)), seed=1)
    t = transfer_matrix(trace_model(model, ["1", "2"]), "1", "2", 2)
    assert t.shape == (3, 2)
    torch.testing.assert_close(t.double(), block_transfer(block), rtol=1e-5, atol=1e-6)


def test_bottleneck_stage_walk_is_product_of_blocks():
    torch.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    stage = nn.Sequential(Bottleneck(4, 2, stride=2, downsample=down), Bottleneck(8, 2))
    model = randomise_batchnorm(StemAndStage(stage, width=4, classes=5), seed=2)
    t = transfer_matrix(trace_model(model, ["relu", "layer1"]), "relu", "layer1", 4)
    assert t.shape == (8, 4)
    expected = block_transfer(stage[1]) @ block_transfer(stage[0])
    torch.testing.assert_close(t.double(), expected, rtol=1e-5, atol=1e-6)


def test_resnet18_stage_transfer_walks_every_block_and_the_stem():
    model = randomise_batchnorm(torchvision.models.resnet18(weights=None), seed=3).eval()
    walk = trace_model(model, RESNET_LAYERS)
    stem_to_layer1 = transfer_matrix(walk, "relu", "layer1", 64)  # maxpool mixes no channels
    torch.testing.assert_close(stem_to_layer1.double(),
                               block_transfer(model.layer1[1]) @ block_transfer(model.layer1[0]),
                               rtol=1e-4, atol=1e-4)
    layer1_to_layer2 = transfer_matrix(walk, "layer1", "layer2", 64)
    torch.testing.assert_close(layer1_to_layer2.double(),
                               block_transfer(model.layer2[1]) @ block_transfer(model.layer2[0]),
                               rtol=1e-4, atol=1e-4)


def test_resnet50_bottleneck_shapes_and_full_readout():
    model = torchvision.models.resnet50(weights=None).eval()
    widths = {"relu": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
    acts = {name: torch.rand(c, 2, 2, generator=torch.Generator().manual_seed(i))
            for i, (name, c) in enumerate(widths.items())}
    c = read_circuit(model, RESNET_LAYERS, acts, target=7, config=CircuitConfig(class_top_k=2))
    # Default sizes: min(24, ceil(C / 2)) early, min(32, ...) at the last tap.
    assert {k: len(v) for k, v in c.channels.items()} == {"relu": 24, "layer1": 24, "layer2": 24,
                                                          "layer3": 24, "layer4": 32}
    index = {n["id"]: n["layer_index"] for n in c.nodes}
    assert all(index[e["target"]] == index[e["source"]] + 1 for e in c.edges)
    incoming = {}
    for e in c.edges:
        incoming.setdefault(e["target"], []).append(e)
    assert all(len(v) <= 4 for k, v in incoming.items() if not k.startswith("class:"))
    assert all(len(v) <= 3 for k, v in incoming.items() if k.startswith("class:"))


def test_vgg_like_sequential_cnn_with_flatten_head():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(5 * 4, 6), nn.ReLU(),
                          nn.Dropout(), nn.Linear(6, 3)).eval()
    from nbexplain.circuits.walk import head_transfer
    walk = trace_model(model, ["1", "4"])
    t = transfer_matrix(walk, "1", "4", 4)
    torch.testing.assert_close(t.double(), kernel_abs_sums(model[3].weight), rtol=1e-5, atol=1e-6)
    head = head_transfer(walk, "4", 5)
    # A flattened constant map feeds each hidden unit the sum of its channel's 4 weights.
    first = model[7].weight.detach().double().abs().view(6, 5, 4).sum(2)
    torch.testing.assert_close(head.double(), model[10].weight.detach().double().abs() @ first,
                               rtol=1e-5, atol=1e-6)
    x = torch.randn(3, 8, 8)
    acts, logits = record_acts(model, ["1", "4"], x)
    c = read_circuit(model, ["1", "4"], acts, target=int(logits.argmax()), inputs=x,
                     config=CircuitConfig(sizing="fixed"))
    assert c.size == 2 + 3
    sized = read_circuit(model, ["1", "4"], acts, target=int(logits.argmax()), inputs=x)
    assert sized.sizing is not None and sized.validate(repeats=0).kept_circuit
    assert sized.validate(repeats=0).sufficient_circuit  # sized by the very test validate() applies


def test_a_sufficient_circuit_keeps_the_top_class_and_recovers_half_of_what_the_channels_add():
    from nbexplain.circuits.validate import CircuitValidation

    def check(prob, predicted, random=()):
        return CircuitValidation(
            target=0, target_name=None, fill="zero", layers=("a",), kept_channels=(1,), total_channels=(4,),
            prob_clean=0.9, predicted_clean=0, prob_circuit=prob, predicted_circuit=predicted, prob_empty=0.3,
            predicted_empty=0, random_probs=tuple(p for p, _ in random), random_predicted=tuple(c for _, c in random),
            random_sets=tuple({} for _ in random), seed=0)

    assert check(0.6, 0).needed() == pytest.approx(0.6)  # 0.3 + 0.5 * (0.9 - 0.3)
    assert check(0.6, 0).sufficient_circuit and check(0.6, 0).kept_circuit
    weak = check(0.5, 0, random=[(0.5, 0), (0.7, 0), (0.8, 1)])
    assert weak.kept_circuit and not weak.sufficient_circuit  # top-1 on the biases' share is not enough
    assert weak.random_kept_rate == pytest.approx(2 / 3) and weak.random_sufficient_rate == pytest.approx(1 / 3)


def test_the_drawing_shows_the_strongest_source_of_a_node_whose_sources_it_would_leave_out():
    from nbexplain.circuit_plot import strongest

    nodes = [{"id": f"a:{i}", "kind": "channel", "layer": "a", "layer_index": 0, "energy": 1.0, "relevance": 10.0 - i}
             for i in range(4)]
    nodes += [{"id": "b:0", "kind": "channel", "layer": "b", "layer_index": 1, "energy": 1.0, "relevance": 1.0}]
    edges = [{"source": "a:3", "target": "b:0", "score": 0.5}, {"source": "a:2", "target": "b:0", "score": 0.2}]
    shown, more = strongest({"layers": ["a", "b"], "nodes": nodes, "edges": edges}, per_layer=2)
    ids = {n["id"] for n in shown["nodes"]}
    assert ids == {"a:0", "a:1", "a:3", "b:0"} and more == {"a": 1, "b": 0}
    assert shown["edges"] == [edges[0]]


# ----------------------------------------------------------------------------- node selection

def test_nodes_are_the_top_k_energetic_channels():
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1,
                     config=CircuitConfig(nodes_per_layer=2))
    assert c.channels == {"relu1": (0, 2), "relu2": (0, 1)}  # L2 energies 5, 1, 2 and 4, 4
    by_max = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1,
                          config=CircuitConfig(nodes_per_layer={"relu1": 1}, energy="max"))
    assert by_max.channels["relu1"] == (0,)  # maxima 4, 1, 1
    assert by_max.channels["relu2"] == (1,)  # automatic rule: ceil(2 / 2) = 1; maxima 2, 4
    auto = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1)
    assert {k: len(v) for k, v in auto.channels.items()} == {"relu1": 2, "relu2": 1}
    clamped = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1,
                           config=CircuitConfig(nodes_per_layer=50))
    assert {k: len(v) for k, v in clamped.channels.items()} == {"relu1": 3, "relu2": 2}


def test_nodes_come_from_acts_and_carry_both_energies():
    other = {"relu1": CHAIN_ACTS["relu1"].flip(0), "relu2": CHAIN_ACTS["relu2"] * 2}
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1, acts_other=other,
                     config=CircuitConfig(nodes_per_layer=1))
    node = next(n for n in c.nodes if n["id"] == "relu1:0")
    assert node["energy"] == node["energy_explanation"] == pytest.approx(5.0)
    assert node["energy_original"] == pytest.approx(2.0)  # channel 0 of the flipped maps
    original = read_circuit(hand_chain(), CHAIN_LAYERS, other, target=1, acts_other=CHAIN_ACTS,
                            source="original", config=CircuitConfig(nodes_per_layer=1))
    assert original.channels["relu1"] == (2,)
    node = next(n for n in original.nodes if n["id"] == "relu1:2")
    assert node["energy"] == node["energy_original"] == pytest.approx(5.0)
    assert node["energy_explanation"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------- compare

def test_compare_two_made_up_circuits():
    config = CircuitConfig(nodes_per_layer=1, edges_per_node=1, class_top_k=0, edges_per_class=1)
    explanation = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1, config=config)
    changed = {"relu1": CHAIN_ACTS["relu1"][[2, 1, 0]], "relu2": CHAIN_ACTS["relu2"]}
    original = read_circuit(hand_chain(), CHAIN_LAYERS, changed, target=1, config=config, source="original")
    assert explanation.channels["relu1"] == (0,) and original.channels["relu1"] == (2,)
    diff = explanation.compare(original)
    assert diff.nodes_gained == ("relu1:0",)
    assert diff.nodes_lost == ("relu1:2",)
    assert set(diff.nodes_kept) == {"relu2:0", "class:1"}
    assert diff.edges_gained == (("relu1:0", "relu2:0"),)
    assert diff.edges_lost == (("relu1:2", "relu2:0"),)
    assert diff.energy_change["relu1:0"] == pytest.approx(5 - 2)
    assert diff.energy_change["relu1:2"] == pytest.approx(2 - 5)
    assert diff.energy_change["relu2:0"] == pytest.approx(0.0)
    assert diff.layer_overlap == {"relu1": 0.0, "relu2": 1.0}
    assert diff.strengthened == [("relu1:0", pytest.approx(3.0))]
    text = repr(diff)
    assert "1 gained" in text and "1 lost" in text and "relu1:0 +3" in text
    json.dumps(diff.to_dict())


def test_compare_refuses_different_layers():
    a = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1)
    b = read_circuit(hand_chain(), ["relu2"], CHAIN_ACTS, target=1)
    with pytest.raises(ValueError, match="different layers"):
        a.compare(b)


# ----------------------------------------------------------------------------- validate

class Known(nn.Module):
    """Class 0 reads only channel 0 (made the most energetic); class 1 the others, plus a bias."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1, bias=False)
        self.relu = nn.ReLU()
        self.mix = nn.Conv2d(4, 4, 1, bias=False)
        self.feat = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([3.0, 1.0, 1.0, 1.0]).view(4, 1, 1, 1))
            self.mix.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
            self.fc.weight.copy_(torch.tensor([[5.0, 0, 0, 0], [0, 1.0, 1.0, 1.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 0.5]))

    def forward(self, x):
        x = self.feat(self.mix(self.relu(self.conv(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def known_circuit(x, **config):
    model = Known().eval()
    acts, _ = record_acts(model, ["relu", "feat"], x)
    return read_circuit(model, ["relu", "feat"], acts, target=0, inputs=x,
                        config=CircuitConfig(nodes_per_layer=1, **config))


def test_validate_known_answer_and_random_contrast():
    c = known_circuit(torch.ones(1, 4, 4))
    assert c.channels == {"relu": (0,), "feat": (0,)}
    v = c.validate()
    assert v.kept_clean and v.kept_circuit and not v.kept_empty
    assert v.prob_circuit == pytest.approx(1 / (1 + math.exp(0.5 - 15)))  # logits (15, 0.5)
    assert v.prob_empty == pytest.approx(1 / (1 + math.exp(0.5)))  # logits (0, 0.5)
    assert len(v.random_sets) == 20
    for chosen, kept in zip(v.random_sets, v.random_kept):
        assert {k: len(s) for k, s in chosen.items()} == {"relu": 1, "feat": 1}
        assert kept == (chosen["relu"] == (0,) and chosen["feat"] == (0,))
    assert not all(v.random_kept)  # the draws do hit other channels
    assert v.random_at_least_as_good == pytest.approx(sum(v.random_kept) / 20)
    assert "random x20" in repr(v) and "circuit only" in repr(v)
    json.dumps(v.to_dict())


def test_validate_random_sets_are_seeded():
    c = known_circuit(torch.ones(1, 4, 4))
    first, again = c.validate(repeats=8, seed=5), c.validate(repeats=8, seed=5)
    other = c.validate(repeats=8, seed=6)
    assert first.random_sets == again.random_sets and first.random_probs == again.random_probs
    assert first.random_sets != other.random_sets
    assert c.validate(repeats=0).random_kept_rate is None


def test_validate_mean_fill_uses_the_channels_spatial_mean():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                          nn.Linear(2, 2, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        model[4].weight.copy_(torch.eye(2))
    x = torch.tensor([[[0.0, 4.0], [0.0, 0.0]]])
    acts, logits = record_acts(model, ["1"], x)
    c = read_circuit(model, ["1"], acts, target=1, inputs=x, config=CircuitConfig(nodes_per_layer=1))
    assert c.channels == {"1": (1,)}
    mean = c.validate(fill="mean", repeats=0)  # channel 0 becomes its mean 1 -> logits (1, 8)
    assert mean.prob_circuit == pytest.approx(1 / (1 + math.exp(1 - 8)))
    zero = c.validate(fill="zero", repeats=0)  # logits (0, 8)
    assert zero.prob_circuit == pytest.approx(1 / (1 + math.exp(-8)))


def test_validate_needs_inputs():
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1)
    with pytest.raises(ValueError, match="inputs"):
        c.validate()


# ----------------------------------------------------------------------------- the model is left alone

def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()])


def _assert_untouched(model, snap):
    state, training, grads = snap
    now = model.state_dict()
    assert state.keys() == now.keys()
    assert all(torch.equal(state[k], now[k]) for k in state)
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def test_model_is_untouched_in_train_mode_with_mixed_flags():
    torch.manual_seed(0)
    model = tiny_resnet()
    x = torch.randn(3, 32, 32)
    acts, logits = record_acts(model, RESNET_LAYERS, x)
    model.train()
    model.layer2.eval()
    model.fc.weight.requires_grad_(False)
    snap = _snapshot(model)
    c = read_circuit(model, RESNET_LAYERS, acts, target=int(logits.argmax()), acts_other=acts, inputs=x)
    c.validate(repeats=3)
    _assert_untouched(model, snap)
    with pytest.raises(RuntimeError):  # fails inside the hooked forward: hooks and flags still restored
        c.validate(inputs=torch.randn(2, 32, 32), repeats=1)
    _assert_untouched(model, snap)


def test_readout_from_a_real_forward_is_consistent():
    torch.manual_seed(0)
    model = tiny_resnet().eval()
    x = torch.randn(3, 32, 32)
    acts, logits = record_acts(model, RESNET_LAYERS, x)
    c = read_circuit(model, RESNET_LAYERS, acts, target=int(logits.argmax()), labels=list("abcd"), inputs=x)
    target_node = next(n for n in c.nodes if n["id"] == f"class:{c.target}")
    assert target_node["logit"] == pytest.approx(float(logits[c.target]), rel=1e-4)
    assert target_node["name"] == "abcd"[c.target] == c.target_name
    assert c.validate(repeats=1).prob_clean == pytest.approx(target_node["prob"], rel=1e-4)


# ----------------------------------------------------------------------------- unsupported / bad input

class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, 2)

    def forward(self, x):
        x = self.relu(self.conv(x))
        if x.sum() > 0:  # data-dependent control flow: not traceable
            x = x * 2
        return self.fc(x.mean((2, 3)))


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 4, 3), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(4, 4, 3), nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = x * torch.sigmoid(x.mean((2, 3), keepdim=True))  # squeeze-excitation style gating
        x = self.relu2(self.conv2(x))
        return self.fc(x.mean((2, 3)))


class Mixer(nn.Module):
    """A block mixing positions with an einsum between the taps: the walk cannot read it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 4, 3), nn.ReLU()
        self.block = MixerBlock()
        self.conv2, self.relu2 = nn.Conv2d(4, 4, 1), nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.block(self.relu1(self.conv1(x)))
        return self.fc(self.relu2(self.conv2(x)).mean((2, 3)))


class MixerBlock(nn.Module):
    def forward(self, x):
        return torch.einsum("nchw,nhw->nchw", x, x.mean(1))


class Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.relu, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.relu(self.conv2(self.relu(self.conv1(x)))).mean((2, 3)))


def test_shared_activation_module_between_taps_is_walked_in_call_order():
    model = Reused()  # one ReLU module used after both convs (registered after them)
    t = transfer_matrix(trace_model(model, ["conv1", "conv2"]), "conv1", "conv2", 4)
    torch.testing.assert_close(t.double(), kernel_abs_sums(model.conv2.weight), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model, layers, message", [
    (Branchy(), ["relu"], "torch.fx could not trace"),
    (Mixer(), ["relu1", "relu2"], r"mean\(\) in module 'block' \(MixerBlock\)"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 1), nn.ReLU(),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)), ["1", "4"], "GroupNorm"),
    (Reused(), ["relu"], "runs 2 times"),
])
def test_unsupported_architectures_raise_a_clear_error(model, layers, message):
    acts = {name: torch.rand(4, 3, 3) for name in layers}
    with pytest.raises(CircuitUnsupportedError, match=message) as info:
        read_circuit(model, layers, acts, target=0)
    assert "torchvision ResNets" in str(info.value)  # says what is supported


def test_bad_arguments_are_reported():
    model = hand_chain()
    with pytest.raises(ValueError, match="No module named"):
        read_circuit(model, ["nope"], CHAIN_ACTS, target=0)
    with pytest.raises(ValueError, match="no activation for layer"):
        read_circuit(model, CHAIN_LAYERS, {"relu1": CHAIN_ACTS["relu1"]}, target=0)
    with pytest.raises(ValueError, match="out of range"):
        read_circuit(model, CHAIN_LAYERS, CHAIN_ACTS, target=3)
    with pytest.raises(TypeError, match="int class index"):
        read_circuit(model, CHAIN_LAYERS, CHAIN_ACTS, target="cat")
    with pytest.raises(ValueError, match="forward order"):
        read_circuit(model, CHAIN_LAYERS[::-1], CHAIN_ACTS, target=0)
    with pytest.raises(ValueError, match="labels"):
        read_circuit(model, CHAIN_LAYERS, CHAIN_ACTS, target=0, labels=["a"])
    wrong = dict(CHAIN_ACTS, relu1=torch.rand(5, 2, 2))
    with pytest.raises(ValueError, match="do not match this model"):
        read_circuit(model, CHAIN_LAYERS, wrong, target=0)
    with pytest.raises(TypeError, match="valid options"):
        CircuitConfig(edges_per_nod=3)
    with pytest.raises(ValueError, match="energy"):
        CircuitConfig(energy="l3")


# ----------------------------------------------------------------------------- serialisation

def test_to_dict_matches_schema_and_is_json():
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1, labels=["a", "b", "c"],
                     acts_other=CHAIN_ACTS)
    d = c.to_dict()
    assert set(d) == {"target", "target_name", "source", "layers", "nodes", "edges"}
    assert (d["target"], d["target_name"], d["source"], d["layers"]) == (1, "b", "explanation", CHAIN_LAYERS)
    ids = set()
    for node in d["nodes"]:
        ids.add(node["id"])
        if node["kind"] == "channel":
            assert set(node) == {"id", "kind", "layer", "layer_index", "channel", "energy", "energy_original",
                                 "energy_explanation"}
            assert node["id"] == f"{node['layer']}:{node['channel']}"
            assert node["layer_index"] == CHAIN_LAYERS.index(node["layer"])
        else:
            assert set(node) == {"id", "kind", "class", "name", "logit", "prob", "layer_index"}
            assert node["id"] == f"class:{node['class']}" and node["layer_index"] == 2
    for edge in d["edges"]:
        assert {"source", "target", "score"} <= set(edge) <= {"source", "target", "score", "sign"}
        assert edge["source"] in ids and edge["target"] in ids and edge["score"] > 0
    assert json.loads(c.to_json()) == d


def test_graph_has_scalar_attributes_and_exports_to_graphml(tmp_path):
    c = read_circuit(hand_chain(), CHAIN_LAYERS, CHAIN_ACTS, target=1)  # no acts_other: no None attributes
    g = c.graph
    assert isinstance(g, nx.DiGraph)
    assert g.number_of_nodes() == len(c.nodes) and g.number_of_edges() == len(c.edges)
    assert all(isinstance(v, (int, float, str, bool)) for _, attrs in g.nodes(data=True) for v in attrs.values())
    path = tmp_path / "circuit.graphml"
    nx.write_graphml(g, path)
    back = nx.read_graphml(path)
    assert set(back.nodes) == set(g.nodes)
    some = c.edges[0]
    assert back.edges[some["source"], some["target"]]["score"] == pytest.approx(some["score"])
    assert isinstance(c, Circuit) and "Circuit(source=explanation" in repr(c)
    assert c.target_name == g.nodes["class:1"]["name"] == "class 1"  # no labels given
