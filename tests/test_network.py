"""SNASNet cells and skeletons against hand-derived parameter counts and a naive step-by-step evaluation
of SPEC sections 2-3 written here (plain functional ops, one time step at a time)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from naive import ATanSpike
from snnbench.network import (
    NetworkConfig,
    SNASCell,
    build_network,
    count_params,
    network_config,
    spike_stats,
)
from snnbench.neuron import LIF
from snnbench.space import Cell, sample_cells

TAU = 4 / 3
PUBLISHED = "0302 0030 3003 0000"  # the authors' CIFAR-100 backward cell
ALL_BACKWARD = "0303 0020 3003 0200"  # conv edges everywhere, two of them backward (2->0, 3->1)



# --------------------------------------------------------------------------- hand-derived parameter counts


def hand_params(edges: list[int], cfg: NetworkConfig) -> int:
    """SPEC section 3, layer by layer. ``edges``: op codes of the cell's edges after pruning, listed by hand."""

    def cell(c: int) -> int:  # conv3x3: 9 C^2 weights + BN (2 C); conv1x1: C^2 + 2 C; skip/pool/zero: 0
        return sum({3: 9 * c * c + 2 * c, 2: c * c + 2 * c}.get(op, 0) for op in edges)

    side = (cfg.image_size - 1) // cfg.stem_stride + 1  # 3x3 conv, padding 1, stride s
    features = cfg.c2 * (side // 2 // cfg.pool) ** 2
    return (
        cfg.in_channels * cfg.c1 * 9 + 2 * cfg.c1  # stem conv + BN
        + cell(cfg.c1)  # cell 1
        + 2 * cfg.c1  # BN after cell 1
        + 9 * cfg.c1 * cfg.c2 + 2 * cfg.c2  # 3x3 conv C1 -> C2 + BN
        + cell(cfg.c2)  # cell 2
        + 2 * cfg.c2  # BN after cell 2
        + features * cfg.hidden  # linear to H, no bias
        + cfg.hidden * cfg.num_classes * cfg.group + cfg.num_classes * cfg.group  # linear to K*g with bias
    )


@pytest.mark.parametrize(
    "matrix, edges, dataset, overrides, expected",
    [
        # published cell, CIFAR-100: 0->1 conv3x3, 0->3 conv1x1, 1->2 conv3x3, 2->0 conv3x3, 2->3 conv3x3
        (PUBLISHED, [3, 2, 3, 3, 3], "cifar100", {}, 20_624_500),
        (PUBLISHED, [3, 2, 3, 3, 3], "cifar100", {"pool": 4}, 8_041_588),
        (PUBLISHED, [3, 2, 3, 3, 3], "cifar100", {"pool": 8}, 4_895_860),
        ("0302 0030 0003 0000", [3, 2, 3, 3], "cifar100", {}, None),  # the same cell without its backward edge
        ("0333 0033 0003 0000", [3] * 6, "cifar10", {}, None),
        ("0303 0000 0000 0000", [3], "tinyimagenet", {}, None),  # node 1 is dead: its edge costs nothing
        ("0141 0002 0004 0000", [1, 4, 1, 2, 4], "cifar10", {"pool": 4}, None),
        ("0001 0000 0000 0000", [1], "digits", {}, None),
    ],
)
def test_paper_parameter_counts_by_hand(matrix, edges, dataset, overrides, expected):
    cfg = network_config(dataset, "paper", **overrides)
    with torch.device("meta"):  # parameter shapes only: the paper nets are large
        model = build_network(Cell(matrix), cfg, channels_last=False)
    count = count_params(model)
    assert count == hand_params(edges, cfg)
    if expected is not None:
        assert count == expected


def test_paper_configs_match_spec_table():
    table = {  # SPEC section 3: C1, C2, H, K, g, s, p, input side, channels
        "cifar10": (256, 512, 1024, 10, 10, 1, 2, 32, 3),
        "cifar100": (128, 256, 1024, 100, 5, 1, 2, 32, 3),
        "tinyimagenet": (128, 256, 4096, 200, 5, 2, 2, 64, 3),
    }
    for dataset, row in table.items():
        c = network_config(dataset, "paper")
        assert (c.c1, c.c2, c.hidden, c.num_classes, c.group, c.stem_stride, c.pool, c.image_size, c.in_channels) == row
        assert c.timesteps == 5 and c.dropout == 0.5 and not c.learnable_tau
    d = network_config("digits", "bench")
    assert (d.in_channels, d.image_size, d.num_classes) == (1, 8, 10)


def test_config_overrides_and_errors():
    c = network_config("cifar10", "bench", pool=4, timesteps=3, c1=5)
    assert (c.pool, c.timesteps, c.c1) == (4, 3, 5)
    assert NetworkConfig(**c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown field"):
        network_config("cifar10", "paper", widht=3)
    with pytest.raises(ValueError, match="dataset"):
        network_config("mnist", "paper")
    with pytest.raises(ValueError, match="preset"):
        network_config("cifar10", "huge")
    with pytest.raises(ValueError, match="too small"):
        network_config("digits", "paper", pool=8)
    with pytest.raises(ValueError, match="c1 must be an integer >= 1, got 0"):
        network_config("digits", "paper", c1=0)
    with pytest.raises(ValueError, match="dropout must be a finite number, got 'abc'"):
        network_config("digits", "paper", dropout="abc")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        network_config("digits", "paper", dropout=1)
    with pytest.raises(ValueError, match="dropout must be a finite number, got np.complex128"):
        network_config("digits", "paper", dropout=np.complex128(0.5))
    with pytest.raises(ValueError, match="learnable_tau must be true or false, got 'yes'"):
        network_config("digits", "paper", learnable_tau="yes")


@pytest.mark.parametrize("field, limit", [("c1", 65536), ("c2", 65536), ("hidden", 65536), ("num_classes", 100_000),
                                          ("group", 1024), ("timesteps", 1024), ("in_channels", 65536)])
def test_config_integer_fields_have_an_upper_bound(field: str, limit: int) -> None:
    """At the bound a config is made and its network's shapes are built; above it (even past int64), one line."""
    with torch.device("meta"):
        build_network(Cell(PUBLISHED), network_config("cifar10", "bench", **{field: limit}), channels_last=False)
    for value in (limit + 1, 10**23):
        with pytest.raises(ValueError) as err:
            network_config("cifar10", "bench", **{field: value})
        assert str(err.value) == f"network config: {field} must be at most {limit:,}, got {value}"


def test_initialisation_follows_spec():
    torch.manual_seed(0)
    model = build_network(Cell(PUBLISHED), network_config("cifar10", "bench", c1=16, c2=32, hidden=512))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 + 2 * 5
    for m in convs:
        fan_in = m.weight[0].numel()
        bound = math.sqrt(2 / (1 + 2**2)) * math.sqrt(3 / fan_in)  # kaiming_uniform, a = 2
        w = m.weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert model.fc1.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert model.fc2.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.all(model.fc2.bias == 0) and model.fc1.bias is None


def test_zero_edges_and_dead_nodes_cost_nothing():
    only_io = build_network(Cell("0003 0000 0000 0000"), network_config("digits", "bench"))
    dead = build_network(Cell("0303 0000 0000 0000"), network_config("digits", "bench"))  # node 1 pruned
    assert list(dead.cell1.edges) == list(only_io.cell1.edges) == ["e03"]
    assert count_params(dead) == count_params(only_io)
    skip = build_network(Cell("0001 0000 0000 0000"), network_config("digits", "bench"))
    assert sum(p.numel() for p in skip.cell1.parameters()) == 0
    assert [name for name, _ in skip.lif_layers()] == ["lif1", "lif2", "lif3"]


# --------------------------------------------------------------------------- naive SPEC evaluation


class NaiveLIF:
    def __init__(self):
        self.v = 0.0
        self.spikes = 0.0

    def step(self, x):
        h = self.v + (x - self.v) / TAU
        s = ATanSpike.apply(h - 1.0)
        self.v = h * (1 - s.detach())
        self.spikes += float(s.detach().sum())
        return s


def naive_bn(x, bn):
    return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)


class NaiveCell:
    """SPEC section 2, one step at a time, with the weights of a SNASCell's edges."""

    def __init__(self, module: SNASCell):
        self.m = module.cell.pruned.matrix
        self.edges = module.edges
        self.lifs = {name: NaiveLIF() for name in module.edges}
        self.prev = [None] * 4

    def op(self, i, j, x):
        edge, name = self.edges[f"e{i}{j}"], f"e{i}{j}"
        if edge.op == "skip":
            return x
        if edge.op == "avgpool3x3":
            return F.avg_pool2d(x, 3, 1, 1)
        k = edge.conv.kernel_size[0]
        return naive_bn(F.conv2d(self.lifs[name].step(x), edge.conv.weight, padding=k // 2), edge.bn)

    def step(self, x):
        m, y = self.m, [None] * 4
        for j in range(4):
            terms = [x] if j == 0 else []
            terms += [self.op(i, j, y[i]) for i in range(j) if m[i, j]]
            # backward edges carry y_i(t-1); nothing has arrived at t = 0
            terms += [self.op(i, j, self.prev[i]) for i in range(j + 1, 4) if m[i, j] and self.prev[i] is not None]
            has_input = j == 0 or m[:, j].any()
            y[j] = sum(terms[1:], terms[0]) if terms else (torch.zeros_like(x) if has_input else None)
        self.prev = y
        return y[3]


def naive_network(model, x):
    """The SPEC section 3 skeleton, one step at a time (training-mode BN, dropout off)."""
    c = model.config
    static = naive_bn(F.conv2d(x, model.stem[0].weight, stride=c.stem_stride, padding=1), model.stem[1])
    cell1, cell2 = NaiveCell(model.cell1), NaiveCell(model.cell2)
    lif1, lif2, lif3 = NaiveLIF(), NaiveLIF(), NaiveLIF()
    acc = 0.0
    for _ in range(c.timesteps):
        y = lif1.step(naive_bn(cell1.step(static), model.bn1))
        y = F.avg_pool2d(naive_bn(F.conv2d(y, model.conv.weight, padding=1), model.bn2), 2)
        y = lif2.step(naive_bn(cell2.step(y), model.bn3))
        y = F.avg_pool2d(y, c.pool).flatten(1)
        y = F.linear(lif3.step(F.linear(y, model.fc1.weight)), model.fc2.weight, model.fc2.bias)
        acc = acc + y.view(-1, c.num_classes, c.group).mean(-1)
    spikes = {f"{name}.edges.{e}.lif": lif.spikes for name, cell in (("cell1", cell1), ("cell2", cell2)) for e, lif in cell.lifs.items()}
    spikes.update(lif1=lif1.spikes, lif2=lif2.spikes, lif3=lif3.spikes)
    return acc / c.timesteps, spikes


def _tiny(**kw):
    base = dict(c1=3, c2=4, hidden=24, num_classes=5, group=3, stem_stride=1, pool=2, timesteps=4, in_channels=2, image_size=8, dropout=0.0)
    base.update(kw)
    return NetworkConfig(**base)


def _input(b=6, c=2, side=8, seed=0):
    return torch.randn(b, c, side, side, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


CELLS = [
    PUBLISHED,  # backward
    ALL_BACKWARD,  # backward, backward conv edges into node 0 and node 1
    "0111 0011 0001 0000",  # forward, skips only
    "0423 0034 0002 0000",  # forward, every op
    "0303 0000 0000 0000",  # forward, dead node
    "0033 0002 0103 0000",  # backward without a cycle: node 1 is fed only by 2 -> 1 (0 at t = 0)
    "0302 0030 0001 0400",  # backward: the cycle 1 -> 2 -> 3 -> 1 stepped, node 0 layer by layer
]


def _boosted(model):
    """Scale BN weights up so that most layers fire (an untrained net with BN weight 1 is quiet)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.5)
                m.bias.fill_(0.3)
        model.fc1.weight.mul_(60)
    return model


@pytest.mark.parametrize("matrix", CELLS)
@pytest.mark.parametrize("grad", [False, True])
def test_network_equals_naive_step_by_step(matrix, grad):
    torch.manual_seed(1)
    model = _boosted(build_network(Cell(matrix), _tiny(), channels_last=False).double().train())
    x = _input()
    ref, ref_spikes = naive_network(model, x)
    with torch.set_grad_enabled(grad):
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert sum(ref_spikes.values()) > 0
    stats = spike_stats(model, x)
    for row in stats["layers"]:
        spikes = row["spikes_per_image"] * x.shape[0]
        edge = row["name"].split(".")[-2] if "." in row["name"] else ""
        if edge and edge[1] > edge[2]:  # backward edges also run at the last step
            assert spikes >= ref_spikes[row["name"]]
        else:
            assert spikes == ref_spikes[row["name"]], row["name"]


@pytest.mark.parametrize("matrix", [PUBLISHED, "0423 0034 0002 0000"])
def test_gradients_equal_naive_step_by_step(matrix):
    torch.manual_seed(2)
    model = _boosted(build_network(Cell(matrix), _tiny(), channels_last=False).double().train())
    x = _input(seed=3)
    weights = [p for p in model.parameters()]
    ref, _ = naive_network(model, x)
    g_ref = torch.autograd.grad(ref.square().sum(), weights, allow_unused=True)
    g = torch.autograd.grad(model(x).square().sum(), weights, allow_unused=True)
    for (name, _), a, b in zip(model.named_parameters(), g, g_ref):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("matrix", CELLS)
def test_evaluation_plan_equals_stepping_every_node(matrix):
    """Layer-by-layer nodes, stepped cycles and shifted backward edges equal stepping all nodes."""
    torch.manual_seed(3)
    model = _boosted(build_network(Cell(matrix), _tiny(), channels_last=False).double().train())
    x = torch.randn(4, 6, 3, 8, 8, dtype=torch.float64) * 2
    a = model.cell1(x)
    model.cell1.step_through_time = True
    assert model.cell1.recurrent
    b = model.cell1(x)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_evaluation_plan_components():
    plan = lambda m: SNASCell(Cell(m), 2).groups  # noqa: E731
    assert plan("0423 0034 0002 0000") == [([0], False), ([1], False), ([2], False), ([3], False)]
    assert plan(PUBLISHED) == [([0, 1, 2], True), ([3], False)]
    assert plan("0033 0002 0103 0000") == [([0], False), ([2], False), ([1], False), ([3], False)]
    assert plan("0303 0000 0000 0000") == [([0], False), ([3], False)]  # dead node 1 left out
    assert plan(ALL_BACKWARD) == [([0, 1, 2, 3], True)]
    assert plan("0302 0030 0001 0400") == [([0], False), ([1, 2, 3], True)]


@pytest.mark.parametrize("matrix", [ALL_BACKWARD, PUBLISHED, "0423 0034 0002 0000"])
def test_every_parametric_edge_gets_gradient(matrix):
    torch.manual_seed(0)
    model = _boosted(build_network(Cell(matrix), _tiny(dropout=0.5, learnable_tau=True)).train())
    model(_input(seed=5).float() * 3).logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    edges = {name for name, _ in model.named_parameters() if ".edges." in name and name.endswith("conv.weight")}
    conv_edges = int(((Cell(matrix).pruned.matrix == 2) | (Cell(matrix).pruned.matrix == 3)).sum())
    assert len(edges) == 2 * conv_edges


def test_same_seed_same_outputs():
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_network(Cell(PUBLISHED), network_config("digits", "bench")).train()
        out = model(_input(8, 1).float())  # dropout active: the mask is seeded too
        out.sum().backward()
        outs.append((out.detach(), model.fc1.weight.grad.clone()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_dropout_mask_is_shared_over_time_steps():
    torch.manual_seed(8)
    model = _boosted(build_network(Cell("0001 0000 0000 0000"), _tiny(dropout=0.5), channels_last=False).double().train())
    seen = {}
    model.fc1.register_forward_hook(lambda m, inp, out: seen.update(fc1_in=inp[0]))
    model.pool2.register_forward_hook(lambda m, inp, out: seen.update(pooled=out))
    model(_input())
    pooled = seen["pooled"].reshape(seen["fc1_in"].shape)
    ratio = torch.where(pooled > 0, seen["fc1_in"] / pooled, torch.nan)
    assert set(ratio[~ratio.isnan()].unique().tolist()) == {0.0, 2.0}
    # a feature that is kept at one step is kept at every step where it is non-zero
    kept = (ratio == 2).any(0)
    dropped = (ratio == 0).any(0)
    assert kept.any() and dropped.any() and not (kept & dropped).any()


def test_lif_layers_hooks_and_neuron_counts():
    model = build_network(Cell(PUBLISHED), network_config("digits", "bench"))
    names = [n for n, _ in model.lif_layers()]
    assert names == [f"cell1.edges.{e}.lif" for e in ("e01", "e12", "e03", "e23", "e20")] + ["lif1"] + [
        f"cell2.edges.{e}.lif" for e in ("e01", "e12", "e03", "e23", "e20")
    ] + ["lif2", "lif3"]
    assert all(isinstance(m, LIF) for _, m in model.lif_layers())
    stats = spike_stats(model, _input(16, 1).float())
    neurons = model.lif_neurons()
    assert [r["name"] for r in stats["layers"]] == names
    for row in stats["layers"]:
        assert row["neurons"] == neurons[row["name"]]
        assert row["steps"] == 5  # backward edges also run at the last step
        assert 0 <= row["rate"] <= 1
    assert stats["spikes_per_image"] == pytest.approx(sum(r["spikes_per_image"] for r in stats["layers"]))


def test_channels_last_and_plain_layout_agree():
    torch.manual_seed(9)
    a = _boosted(build_network(Cell("0423 0034 0002 0000"), _tiny(), channels_last=True).double())
    b = _boosted(build_network(Cell("0423 0034 0002 0000"), _tiny(), channels_last=False).double())
    b.load_state_dict(a.state_dict())
    x = _input()
    torch.testing.assert_close(a(x), b(x), rtol=1e-12, atol=1e-12)


def test_eval_mode_uses_running_statistics():
    torch.manual_seed(10)
    model = build_network(Cell(PUBLISHED), _tiny(), channels_last=False).double()
    x = _input()
    model.train()
    model(x)
    bn = model.cell1.edges["e01"].bn
    assert int(bn.num_batches_tracked) == 4  # one update per time step
    model.eval()
    a, b = model(x), model(x[:3])
    torch.testing.assert_close(a[:3], b)  # no batch statistics in eval mode


def test_time_batchnorm_no_grad_path_equals_per_step_native():
    from snnbench.network import TimeBatchNorm2d

    x = torch.randn(4, 10, 3, 5, 5, dtype=torch.float64) * 3 + 1
    fast, ref = TimeBatchNorm2d(3).double(), TimeBatchNorm2d(3).double()
    with torch.no_grad():
        fast.weight.uniform_(0.5, 1.5), fast.bias.uniform_(-1, 1)
        ref.load_state_dict(fast.state_dict())
        out = fast(x)  # vectorised statistics
    expected = torch.stack([F.batch_norm(x[t], ref.running_mean, ref.running_var, ref.weight, ref.bias, True, 0.1, ref.eps)
                            for t in range(4)])  # native kernel, one step at a time, running stats in step order
    torch.testing.assert_close(out, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.running_mean, ref.running_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fast.running_var, ref.running_var, rtol=1e-12, atol=1e-14)
    assert int(fast.num_batches_tracked) == 4


def test_time_batchnorm_no_grad_path_keeps_a_cumulative_average_without_momentum():
    """momentum=None: running statistics are the cumulative average over steps, in the no-grad path as in the
    gradient path (the native kernel); the no-grad path used to leave them untouched."""
    from snnbench.network import TimeBatchNorm2d

    x = torch.randn(3, 6, 2, 4, 4, dtype=torch.float64) + 2
    fast, ref = TimeBatchNorm2d(2, momentum=None).double(), TimeBatchNorm2d(2, momentum=None).double()
    with torch.no_grad():
        fast(x)
    ref(x.clone().requires_grad_())
    torch.testing.assert_close(fast.running_mean, ref.running_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fast.running_var, ref.running_var, rtol=1e-12, atol=1e-14)
    want = torch.stack([x[t].mean((0, 2, 3)) for t in range(3)]).mean(0)  # equal counts per step: the plain mean
    torch.testing.assert_close(fast.running_mean, want, rtol=1e-12, atol=1e-14)
    assert int(fast.num_batches_tracked) == int(ref.num_batches_tracked) == 3


def test_bf16_autocast_keeps_spike_semantics():
    torch.manual_seed(11)
    model = _boosted(build_network(Cell(PUBLISHED), network_config("digits", "bench"))).train()
    x = _input(16, 1).float()
    seen = []
    for _, lif in model.lif_layers():
        lif.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert torch.isfinite(out).all()
    assert all(set(o.unique().tolist()) <= {0.0, 1.0} for o in seen)
    assert any(o.dtype == torch.bfloat16 for o in seen)


def test_digits_bench_runs_every_cell_kind_sampled():
    cfg = network_config("digits", "bench", timesteps=2)
    x = _input(4, 1).float()
    for cell in sample_cells(6, "backward", seed=0):
        model = build_network(cell, cfg)
        out = model(x)
        assert out.shape == (4, 10) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- CLI


def _cli(*args):
    from click.testing import CliRunner

    from snnbench.cli import main

    return CliRunner().invoke(main, ["model", "summary", *args])


def test_cli_summary_json_paper_cifar100():
    import json

    result = _cli(*PUBLISHED.split(), "--dataset", "cifar100", "--preset", "paper", "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output)
    assert rec["params"] == 20_624_500 == sum(r["params"] for r in rec["layers"])
    assert rec["lif_layers"] == 13 == sum(r["type"] == "LIF" for r in rec["layers"])
    # per step and image: 5 edge LIFs + lif1 at 128x32x32, 5 + lif2 at 256x16x16, lif3 with 1024
    assert rec["neurons"] == 6 * 128 * 32 * 32 + 6 * 256 * 16 * 16 + 1024
    assert rec["kind"] == "backward" and rec["config"]["c1"] == 128


def test_cli_summary_overrides_spikes_and_text():
    import json

    result = _cli(PUBLISHED, "--dataset", "digits", "--preset", "bench", "--set", "timesteps=3", "--spikes", "--batch", "4", "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output)
    assert rec["config"]["timesteps"] == 3
    assert len(rec["spikes"]["layers"]) == rec["lif_layers"]
    assert all(r["steps"] == 3 for r in rec["spikes"]["layers"])
    text = _cli(PUBLISHED, "--dataset", "cifar10", "--set", "pool=4")
    assert text.exit_code == 0 and "params" in text.output and "lif3" in text.output


@pytest.mark.parametrize(
    "args",
    [
        ["0302 0030 3003"],  # not 4x4
        ["0302 0030 3003 0001"],  # M[3][3] on the diagonal
        [PUBLISHED, "--dataset", "mnist"],
        [PUBLISHED, "--set", "pool=x"],
        [PUBLISHED, "--set", "colour=3"],
        [PUBLISHED, "--dataset", "digits", "--set", "pool=8"],  # 8x8 input cannot be pooled that far
        [PUBLISHED, "--set", "c1=99999999999999999999999"],  # past int64: refused, not a TypeError in torch
        [PUBLISHED, "--set", "image_size=99999999999"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args):
    result = _cli(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "Error" in result.output


# --------------------------------------------------------------------------- CUDA (run where a GPU is present)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("matrix", [PUBLISHED, "0423 0034 0002 0000"])
def test_cuda_equals_cpu(matrix):
    torch.manual_seed(12)
    cpu = _boosted(build_network(Cell(matrix), _tiny(), channels_last=False).double().train())
    gpu = _boosted(build_network(Cell(matrix), _tiny()).double().train()).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = _input()
    a = cpu(x)
    b = gpu(x.cuda())
    torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-12)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-8, atol=1e-10, msg=name)


@needs_cuda
@pytest.mark.parametrize("grad", [True, False])
def test_cuda_bf16_autocast_spikes_are_float32_lif_of_rounded_inputs(grad):
    """Under autocast every LIF layer fires exactly as a float32 LIF fed the same (bf16) input."""
    torch.manual_seed(13)
    model = _boosted(build_network(Cell(PUBLISHED), network_config("cifar10", "bench", c1=8, c2=16, hidden=64))).cuda().train()
    calls: dict[str, list] = {}
    for name, lif in model.lif_layers():
        lif.register_forward_hook(lambda m, i, o, name=name: calls.setdefault(name, []).append((i[0].detach(), o.detach())))
    x = torch.randn(16, 3, 32, 32, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.set_grad_enabled(grad):
        out = model(x)
    if grad:
        out.float().sum().backward()
    assert torch.isfinite(out).all()
    assert any(i.dtype == torch.bfloat16 for seq in calls.values() for i, _ in seq)
    for name, seq in calls.items():  # a backward cell's layers are called once per step: join the steps
        inp, spikes = torch.cat([i for i, _ in seq]), torch.cat([o for _, o in seq])
        assert spikes.dtype == inp.dtype, name
        assert torch.equal(spikes.float(), LIF()(inp.float())), name
    assert sum(float(o.sum()) for seq in calls.values() for _, o in seq) > 0
