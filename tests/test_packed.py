"""Packs (snnbench.packed, training.train_pack) against the same networks run and trained alone (float64, CPU)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from test_network import _boosted

import snnbench.training as training
from snnbench.cli import main
from snnbench.data import Dataset, load_dataset
from snnbench.network import NetworkConfig, build_network
from snnbench.packed import PackedSNASNet
from snnbench.space import Cell
from snnbench.training import network_config_for, train_cell, train_config, train_pack

# forward and backward cells; one cell twice (two seeds); op member sets that are all networks, one contiguous run
# and scattered blocks; the union of these cells has a cycle through nodes 0, 1, 2 that forward cells step through.
CELLS = ["0303 0033 0003 0000", "0302 0030 3003 0000", "0304 0020 3000 0220", "0104 0010 3001 0000",
         "0041 2000 0304 0200", "0204 0014 0003 0000", "0302 0030 3003 0000"]


def _tiny(**kw) -> NetworkConfig:
    base = dict(c1=3, c2=4, hidden=24, num_classes=5, group=3, stem_stride=1, pool=2, timesteps=4, in_channels=2,
                image_size=8, dropout=0.5)
    return NetworkConfig(**{**base, **kw})


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


def test_union_steps_forward_cells_through_a_cycle():
    packed = PackedSNASNet([build_network(c, _tiny()) for c in CELLS])
    assert any(cyclic and {0, 1, 2} <= set(nodes) for nodes, cyclic in packed.cell1.groups)
    kinds = {Cell(c).kind for c in CELLS}
    assert kinds == {"forward", "backward"}
    members = {tuple(e.where.members) for e in packed.cell1.edges.values()}
    assert any(m != tuple(range(m[0], m[0] + len(m))) for m in members)  # scattered blocks (index_select path)
    assert any(m == tuple(range(m[0], m[0] + len(m))) and len(m) < len(CELLS) for m in members)  # a view (narrow)


@pytest.mark.parametrize("channels_last", [False, True])
def test_pack_gives_each_network_its_logits_and_gradients(channels_last):
    """Step 0 in training mode (dropout on): logits and every parameter gradient of each network, packed vs alone."""
    cfg = _tiny()
    seeds = [11 + k for k in range(len(CELLS))]
    alone, states = [], []
    for cell, seed in zip(CELLS, seeds):
        torch.manual_seed(seed)
        alone.append(_boosted(build_network(cell, cfg, channels_last=channels_last).double().train()))
        states.append(torch.get_rng_state())
    packed = PackedSNASNet(alone).train()
    x = torch.randn(6, len(CELLS) * cfg.in_channels, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    y = torch.randint(0, cfg.num_classes, (len(CELLS), 6), generator=torch.Generator().manual_seed(1))
    gens = []
    for state in states:
        g = torch.Generator()
        g.set_state(state)
        gens.append(g)
    out = packed(x, gens)
    F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(len(CELLS), -1).mean(1).sum().backward()
    grads = {name: p.grad for name, p in packed.named_parameters()}
    for k, model in enumerate(alone):
        torch.set_rng_state(states[k])  # dropout of the lone network: the global stream after its initialisation
        ref = model(x[:, k * cfg.in_channels:(k + 1) * cfg.in_channels])
        F.cross_entropy(ref, y[k]).backward()
        assert ref.abs().max() > 1e-3  # the classifier fires (fc2 weights are N(0, 0.01)): the comparison is not of zeros
        assert _rel(out[k], ref) < 1e-9
        mine, theirs = [], []
        params = dict(model.named_parameters())
        for name, blocks in packed.links.items():
            if name not in grads:
                continue
            for (net, single), part in zip(blocks, grads[name].split(grads[name].shape[0] // len(blocks))):
                if net == k:
                    mine.append(part.flatten())
                    theirs.append(params[single].grad.flatten())
        assert sum(t.numel() for t in theirs) == sum(p.numel() for p in model.parameters())  # every parameter compared
        assert _rel(torch.cat(mine), torch.cat(theirs)) < 1e-9


def test_pack_and_unpack_round_trip_every_tensor():
    models = [build_network(c, _tiny()) for c in CELLS]
    with torch.no_grad():
        for k, m in enumerate(models):
            for t in m.state_dict().values():
                if t.is_floating_point():
                    t.add_(k + 1)
    before = [{n: t.clone() for n, t in m.state_dict().items()} for m in models]
    packed = PackedSNASNet(models)
    with torch.no_grad():
        for t in models[0].state_dict().values():
            t.zero_()
    packed.unpack()
    for m, ref in zip(models, before):
        for name, t in m.state_dict().items():
            assert torch.equal(t, ref[name]), name


def test_packable_refuses_mixed_skeletons_and_plif():
    with pytest.raises(ValueError, match="one skeleton"):
        PackedSNASNet([build_network(CELLS[0], _tiny()), build_network(CELLS[0], _tiny(c1=5))])
    with pytest.raises(ValueError, match="PLIF"):
        PackedSNASNet([build_network(CELLS[0], _tiny(learnable_tau=True))])
    with pytest.raises(ValueError, match="one seed per cell"):
        train_pack(CELLS[:2], None, _tiny(), train_config("bench"), [0])  # type: ignore[arg-type]


@pytest.fixture
def float64(monkeypatch):
    """Models built in float64 and images normalised to float64, for train_cell and train_pack alike."""
    normalize = Dataset.normalize
    monkeypatch.setattr(Dataset, "normalize", lambda self, images: normalize(self, images).double())
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_train_pack_equals_train_cell(float64, monkeypatch):
    """3 steps of Adam (bench budget, augmentation, dropout) on digits: same final parameters to 1e-9 relative, same
    evaluation (accuracies, spike counts), same curves; forward and backward cells in one pack."""
    finals: list[dict[str, torch.Tensor]] = []
    spikes = training._test_spikes

    def record(model, *args):
        finals.append({n: t.detach().clone() for n, t in model.state_dict().items()})
        return spikes(model, *args)

    monkeypatch.setattr(training, "_test_spikes", record)
    data = load_dataset("digits", seed=0).subset(train=96, val=20, test=30, seed=0)
    net = network_config_for(data, "bench", timesteps=2, c1=6, c2=8, hidden=48)
    cfg = train_config("bench", epochs=1, batch_size=32)
    cells, seeds = CELLS[:3] + CELLS[5:], [4, 5, 6, 7, 5]
    alone = [train_cell(c, data, net, cfg, seed=s) for c, s in zip(cells, seeds)]
    mine = train_pack(cells, data, net, cfg, seeds)
    for a, p, fa, fp in zip(alone, mine, finals[:len(cells)], finals[len(cells):]):
        floats = [n for n, t in fa.items() if t.is_floating_point()]
        assert _rel(torch.cat([fp[n].flatten() for n in floats]), torch.cat([fa[n].flatten() for n in floats])) < 1e-9
        assert all(torch.equal(fp[n], fa[n]) for n in fa if n not in floats)  # step counters
        assert p["spikes"]["spikes_per_image"] > 0
        assert p["spikes"] == pytest.approx(a["spikes"], rel=1e-9)
        for key in ("val_acc", "test_acc", "params", "cell", "seed", "hash", "kind", "net_config", "train_config"):
            assert p[key] == a[key], key
        assert p["epochs"][0]["train_loss"] == pytest.approx(a["epochs"][0]["train_loss"], rel=1e-6)  # float32 sums
        assert p["epochs"][0]["train_acc"] == a["epochs"][0]["train_acc"]


def test_cli_train_seeds_in_packs_equal_train_pack_and_agree_with_train_cell():
    args = ["train", "0302 0030 3003 0000", "--epochs", "1", "--timesteps", "2", "--train-images", "96",
            "--test-images", "40", "--batch-size", "32", "--json"]
    result = CliRunner().invoke(main, [*args, "--seeds", "3-5", "--pack", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["seed"] for r in runs] == [3, 4, 5]
    data = load_dataset("digits", seed=3).subset(train=96, test=40, seed=3)
    net = network_config_for(data, "bench", timesteps=2)
    cfg = train_config("bench", epochs=1, batch_size=32)
    direct = train_pack(["0302 0030 3003 0000"] * 2, data, net, cfg, [3, 4])
    for got, want in zip(runs[:2], direct):  # the same computation: the same numbers
        assert got["epochs"][0]["train_loss"] == want["epochs"][0]["train_loss"] and got["test_acc"] == want["test_acc"]
    alone = train_cell("0302 0030 3003 0000", data, net, cfg, seed=5)  # a pack of one is train_cell itself
    assert runs[2]["epochs"][0]["train_loss"] == alone["epochs"][0]["train_loss"]
    assert runs[0]["epochs"][0]["train_loss"] == pytest.approx(train_cell("0302 0030 3003 0000", data, net, cfg, seed=3)
                                                               ["epochs"][0]["train_loss"], rel=1e-5)
    bad = CliRunner().invoke(main, [*args, "--seeds", "0,1", "--checkpoint", "x.pt"])
    assert bad.exit_code == 2 and bad.output.strip().endswith("--checkpoint: one seed at a time (a pack is not checkpointed)")


def test_block_sums_promote_mixed_dtypes_as_the_lone_network():
    """Terms of mixed dtypes (autocast may give an op bf16 and another float32) are added into their members'
    blocks with the promotion of the lone network's ``+``; checked against a naive per-network sum."""
    from snnbench.packed import _gather, _Members

    k, c = 3, 2
    full = torch.randn(2, 4, k * c, 5, 5)
    part = torch.randn(2, 4, 2 * c, 5, 5).to(torch.bfloat16)
    first = torch.randn(2, 4, 1 * c, 5, 5).to(torch.bfloat16)
    where_part, where_first = _Members([0, 2], k, c), _Members([1], k, c)
    got = _gather([(where_first, first), (None, full), (where_part, part)], full)
    assert got is not None and got.dtype == torch.float32
    for net in range(k):
        block = slice(net * c, (net + 1) * c)
        want = full[:, :, block].clone() if net != 1 else first.float() + full[:, :, block]
        if net in (0, 2):
            j = [0, 2].index(net)
            want = want + part[:, :, j * c:(j + 1) * c]
        assert torch.equal(got[:, :, block], want)
