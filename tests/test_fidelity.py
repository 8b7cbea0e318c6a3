"""Fidelity to the paper and the authors' release (issue 34): the 2022a formula's names, Eq. 5's summed kernel,
the release training preset, and the shipped protocols' ids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from snnbench.data import load_dataset
from snnbench.network import build_network, network_config
from snnbench.scores import check_metrics, eq5_from_mean, lif_calls, score_cell, score_network, spiking_layers
from snnbench.space import Cell

FORWARD = Cell("0302 0023 0003 0000")
BACKWARD = Cell("0302 0030 3003 0000")  # an edge 2 -> 0: LIF layers stepped call by call
CELLS = [FORWARD, BACKWARD, Cell("0114 0020 0003 0000"), Cell("0004 0000 0000 0000")]


def eq5_reference(calls: list[np.ndarray]) -> float:
    """The supplementary's Eq. 5 in float64 numpy, independent of ``snnbench.scores``: per call, ``K_ij = N_A - 0.5
    d_H(i, j) / (N_A (r_i (1 - r_j) + (1 - r_i) r_j) + 0.001)`` from explicit pairwise distances; the network's
    kernel is the *sum* over calls; the score is ``log |det K|``."""
    total = np.zeros(())
    for num, term in map(_sahd_term, calls):
        total = total + (num - term)
    return float(np.linalg.slogdet(total)[1])


def _sahd_term(X: np.ndarray) -> tuple[int, np.ndarray]:
    """``(N_A, 0.5 d_H / (e + 0.001))`` of one call's 0/1 codes ``X [B, N_A]``, from explicit pairwise distances."""
    X = X.astype(np.float64)
    num = X.shape[1]
    d_h = np.abs(X[:, None, :] - X[None, :, :]).sum(axis=2)
    r = X.mean(axis=1)
    e = num * (r[:, None] * (1 - r[None, :]) + (1 - r[:, None]) * r[None, :])
    return num, 0.5 * d_h / (e + 0.001)


def _calls(model: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """Every LIF call's spikes ``[B, N_A]`` of one training-mode forward pass (a ``[T, B, ...]`` output is T calls)."""
    out: list[np.ndarray] = []

    def hook(_m: torch.nn.Module, _a: object, y: torch.Tensor) -> None:
        out.extend(y.detach().reshape(y.shape[0], y.shape[1], -1).numpy())

    handles = [m.register_forward_hook(hook) for m in spiking_layers(model)]
    with torch.no_grad():
        model.train()
        model(x)
    for h in handles:
        h.remove()
    return out


@pytest.mark.parametrize("cell", [FORWARD, BACKWARD])
def test_sahd_eq5_equals_a_float64_implementation_of_eq5(cell: Cell) -> None:
    cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=3)
    torch.manual_seed(0)
    model = build_network(cell, cfg)
    x = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    calls = _calls(model, x)
    torch.manual_seed(2)  # the same dropout masks
    got = score_network(model, x, ("sahd_eq5", "sahd"))
    assert got["sahd_eq5"].value == pytest.approx(eq5_reference(calls), rel=1e-11)
    assert not got["sahd_eq5"].singular
    # Eq. 5 and the release's mean differ by B ln(calls), calls fixed by the cell's structure
    assert len(calls) == lif_calls(cell, cfg.timesteps)
    assert got["sahd_eq5"].value == pytest.approx(eq5_from_mean(got["sahd"].value, 10, len(calls)), rel=1e-11)
    assert got["sahd_eq5"].value - got["sahd"].value > 9 * math.log(len(calls))  # not the mean


@pytest.mark.parametrize("cell", CELLS)
def test_lif_calls_counts_what_the_scorer_sees(cell: Cell) -> None:
    from snnbench.scores import SpikeKernels

    for timesteps in (1, 4):
        cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=timesteps)
        torch.manual_seed(0)
        model = build_network(cell, cfg).train()
        with torch.no_grad(), SpikeKernels(spiking_layers(model), ("hd",)) as acc:
            model(torch.randn(3, 1, 8, 8))
        assert acc.calls == lif_calls(cell, timesteps) == lif_calls(cell.to_list(), timesteps)


def test_the_2022a_formula_under_both_names() -> None:
    digits = load_dataset("digits")
    cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=3)
    a = score_cell(BACKWARD, digits, cfg, ("sahd_2022a", "sahd_release", "sahd"), batch_size=12, repeats=1, seed=3)
    assert a["batch_scores"]["sahd_2022a"] == a["batch_scores"]["sahd_release"]
    assert a["scores"]["sahd_2022a"] != a["scores"]["sahd"]
    assert check_metrics(["sahd_release"]) == ("sahd_release",)  # kept as given: a protocol's id holds it


# --------------------------------------------------------------------------- the release training preset


def test_release_preset_builds_the_optimiser_the_release_call_builds() -> None:
    """search_snn.py calls ``torch.optim.SGD(params, lr, momentum, weight_decay)`` with weight_decay = 5e-4: the
    positional 5e-4 lands in ``dampening``. The preset's optimiser must equal that call's, step for step."""
    from snnbench.training import _optimizer, train_config

    cfg = train_config("release")
    assert (cfg.batch_size, cfg.amp, cfg.weight_decay, cfg.dampening) == (32, False, 0.0, 5e-4)
    paper = train_config("paper")
    assert (paper.weight_decay, paper.dampening) == (5e-4, 0.0)
    net = [torch.nn.Linear(3, 2, bias=False) for _ in range(2)]
    net[1].load_state_dict(net[0].state_dict())
    ours = _optimizer(net[0], cfg)
    theirs = torch.optim.SGD(net[1].parameters(), 0.1, 0.9, 5e-4)  # the release's call, as written
    drop = lambda g: {k: v for k, v in g.items() if k != "params"}  # noqa: E731
    assert drop(ours.param_groups[0]) == drop(theirs.param_groups[0])
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for model, opt in zip(net, (ours, theirs)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(net[0].weight, net[1].weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="dampening"):
        train_config("release", optimizer="adam")
    from snnbench.training import network_config_for

    digits = load_dataset("digits")
    assert network_config_for(digits, "release") == network_config_for(digits, "paper")  # the paper's skeleton


def test_a_config_without_dampening_serialises_as_before() -> None:
    from snnbench.training import TrainConfig, train_config

    before = {"amp", "augment", "batch_size", "epochs", "eval_batch_size", "lr", "lr_min_factor", "momentum", "nesterov",
              "optimizer", "test_epochs", "weight_decay"}  # the fields of every stored train protocol
    for preset in ("paper", "bench"):
        assert set(train_config(preset).to_dict()) == before
    assert train_config("release").to_dict()["dampening"] == 5e-4
    assert TrainConfig(**train_config("release").to_dict()) == train_config("release")


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_shipped_protocol_ids_are_recomputed_by_the_current_code(dataset: str) -> None:
    """Every shipped protocol's id follows from its stored settings rebuilt by today's config classes and metric
    check; the digits protocols' recorded rebuild commands make exactly those protocols (no new one)."""
    from snnbench.builders.cli import request_of
    from snnbench.network import NetworkConfig
    from snnbench.table import SHIPPED, open_table, protocol_id
    from snnbench.training import TrainConfig

    table = open_table(SHIPPED[dataset])
    for pid, p in table.protocols.items():
        s = dict(p.settings)
        s["network"] = {**s["network"], "config": NetworkConfig(**s["network"]["config"]).to_dict()}
        if p.type == "train":
            s["train"] = TrainConfig(**s["train"]).to_dict()
        else:
            s["score"] = {**s["score"], "metrics": list(check_metrics(s["score"]["metrics"]))}
        assert protocol_id(p.type, s) == pid
        if dataset != "digits":
            continue  # the CIFAR-10 commands name files this machine may lack
        for command in p.commands:
            stages = request_of(command).stages()
            assert pid in {protocol_id(st.type, st.settings) for st in stages}
            assert command in {st.command for st in stages}  # spelled as recorded, character for character
            assert all(protocol_id(st.type, st.settings) in table.protocols for st in stages)


def test_old_tables_read_the_renamed_column() -> None:
    """The shipped digits table stores ``scores/sahd_release``; a view reads it as ``sahd_2022a``, values unchanged
    (each seed's row, and their mean), and the file and its protocol are untouched."""
    from snnbench.api.benchmark import Benchmark
    from snnbench.table import SHIPPED, open_table

    raw = open_table(SHIPPED["digits"]).protocols["92e287f185ba"]
    assert "scores/sahd_release" in raw.columns and "sahd_release" in raw.settings["score"]["metrics"]
    bench = Benchmark(SHIPPED["digits"], score="92e287f185ba")
    assert "sahd_2022a" in bench.scores and "sahd_release" not in bench.scores
    u = bench.index_of_hash(raw.hash[0].decode())
    rows = raw.hash == raw.hash[0]
    stored = raw.columns["scores/sahd_release"][rows]
    seeds, by_seed = bench.scores_by_seed("sahd_2022a")
    assert by_seed[u, [seeds.index(int(x)) for x in raw.seed[rows]]].tolist() == stored.tolist()
    assert bench.scores["sahd_2022a"][u] == pytest.approx(float(np.mean(stored)), rel=1e-14)
    assert bench.record(u)["scores"]["sahd_2022a"] == bench.scores["sahd_2022a"][u]
    assert bench.protocol_ids[0] == "92e287f185ba"
    with pytest.raises(ValueError, match="'sahd_release' is now 'sahd_2022a'"):
        bench.check_scores(["sahd_release"])


# --------------------------------------------------------------------------- score noise in the replay


@pytest.fixture(scope="module")
def seeded_table(tmp_path_factory: pytest.TempPathFactory):
    """A tiny real table whose 8 cells are scored with 4 seeds each (and trained as the API tests' table)."""
    from api_tables import TINY_BUILD
    from click.testing import CliRunner

    from snnbench.cli import main

    path = tmp_path_factory.mktemp("seeds") / "seeds.h5"
    result = CliRunner().invoke(main, ["build", str(path), *TINY_BUILD, "--score-seeds", "0-3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path


def test_scores_by_seed_are_the_stored_rows(seeded_table) -> None:
    from snnbench.api.benchmark import Benchmark
    from snnbench.table import open_table

    bench = Benchmark(seeded_table)
    raw = next(p for p in open_table(seeded_table).protocols.values() if p.type == "score")
    seeds, by_seed = bench.scores_by_seed("sahd")
    assert seeds == [0, 1, 2, 3]
    for h, s, v in zip(raw.hash.tolist(), raw.seed.tolist(), raw.columns["scores/sahd"].tolist()):
        assert by_seed[bench.index_of_hash(h.decode()), seeds.index(s)] == v
    np.testing.assert_allclose(by_seed.mean(axis=1), bench.scores["sahd"], rtol=1e-12)
    assert (np.ptp(by_seed, axis=1) > 0).all()  # the seeds really differ: there is noise to model


def test_replay_draws_one_seeds_score_per_draw(seeded_table) -> None:
    """Against a brute-force loop over the stored rows: each draw sees the score of seed ``floor(u * count)`` of its
    cell (the same seed for every score), ``u`` from the stream ``(seed, N, 1)``; ``mean_score`` picks by the mean."""
    from snnbench.api.benchmark import Benchmark
    from snnbench.api.replay import draw, make_pool, replay, replay_picks
    from snnbench.table import open_table

    bench = Benchmark(seeded_table)
    raw = next(p for p in open_table(seeded_table).protocols.values() if p.type == "score")
    rows: dict[int, list[tuple[int, float, float]]] = {}
    for h, s, a, b in zip(raw.hash.tolist(), raw.seed.tolist(), raw.columns["scores/sahd"].tolist(),
                          raw.columns["scores/hd"].tolist()):
        rows.setdefault(bench.index_of_hash(h.decode()), []).append((s, a, b))
    acc = bench.accuracy["test"]
    samples, trials = 4, 400
    out = replay(bench, samples, trials, ("sahd", "hd"), seed=5)
    assert out["score_draw"] == "seed" and out["score_seeds"] == 4
    draws = draw(make_pool(bench, ("sahd", "hd"), "test"), samples, trials, np.random.default_rng([5, samples]))
    u = np.random.default_rng([5, samples, 1]).random(draws.shape)
    naive: dict[str, list[float]] = {"sahd": [], "hd": []}
    used = set()
    for t, trial in enumerate(draws.tolist()):
        seen = []
        for j, cell in enumerate(trial):
            options = sorted(rows[cell])
            seen.append(options[int(u[t, j] * len(options))])
            used.add(seen[-1][0])
        for k, m in ((1, "sahd"), (2, "hd")):
            best = 0
            for j in range(1, samples):
                if seen[j][k] > seen[best][k]:
                    best = j
            naive[m].append(acc[trial[best]])
    assert used == {0, 1, 2, 3}
    _, per_trial, most = replay_picks(bench, samples, trials, ("sahd", "hd"), seed=5)
    assert most == 4 and np.array_equal(per_trial["random"], acc[draws[:, 0]])
    for m, values in naive.items():
        assert out["methods"][m]["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12)
        assert np.array_equal(per_trial[m], np.array(values))  # trial by trial, the same draws for every method
    mean = replay(bench, samples, trials, ("sahd", "hd"), seed=5, mean_score=True)
    assert mean["score_draw"] == "mean"
    best_by_mean = [max(trial, key=lambda c: (bench.scores["sahd"][c], -trial.index(c))) for trial in draws.tolist()]
    assert mean["methods"]["sahd"]["mean"] == pytest.approx(float(np.mean(acc[best_by_mean])), rel=1e-12)
    assert mean["methods"]["random"] == out["methods"]["random"] and mean["methods"]["oracle"] == out["methods"]["oracle"]


def test_cli_query_says_which_scoring_seeds_its_scores_are(seeded_table) -> None:
    """With several scoring seeds, the text record says its scores are their mean; ``--seed`` shows one seed's stored row."""
    from click.testing import CliRunner

    from snnbench.cli import main
    from snnbench.space import space, to_text
    from snnbench.table import open_table

    raw = next(p for p in open_table(seeded_table).protocols.values() if p.type == "score")
    h, value = raw.hash[raw.seed == 2][0].decode(), raw.columns["scores/sahd"][raw.seed == 2][0]
    text = to_text(space().matrices[space().hashes.index(h)])
    out = CliRunner().invoke(main, ["query", text, "--table", str(seeded_table)]).output
    assert "scores         mean over seeds [0, 1, 2, 3] (--seed S: one seed's)" in out
    one = CliRunner().invoke(main, ["query", text, "--table", str(seeded_table), "--seed", "2"]).output
    assert "scores of      seed 2" in one and "mean over seeds" not in one
    line = next(x for x in one.splitlines() if x.strip().startswith("score sahd"))
    assert float(line.split()[2]) == pytest.approx(value, abs=5e-5)  # printed to 4 decimals


def test_cli_replay_mean_score_flag(seeded_table) -> None:
    import json

    from click.testing import CliRunner

    from snnbench.cli import main

    runs = {}
    for flag in ([], ["--mean-score"]):
        result = CliRunner().invoke(main, ["replay", "--table", str(seeded_table), "-n", "4", "--trials", "200",
                                           "--score", "sahd", "--json", *flag])
        assert result.exit_code == 0, result.output
        runs[bool(flag)] = json.loads(result.output)
    assert runs[False]["score_draw"] == "seed" and runs[True]["score_draw"] == "mean"
    text = CliRunner().invoke(main, ["replay", "--table", str(seeded_table), "-n", "4", "--trials", "20"]).output
    assert "up to 4 seeds a cell; each draw sees one seed's score" in text


# --------------------------------------------------------------------------- the release score mode

U32 = 2.0**-24  # float32 unit roundoff
RELEASE_CELLS = [FORWARD, BACKWARD, Cell("0114 0020 0003 0000"), Cell("0303 0030 2002 0200")]


def _sahd_mean64(calls: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The release's kernel in float64 (SPEC section 5 per call, mean over calls) and an elementwise bound on what
    building each call's kernel in float32 can move it: ``K = N - c D`` takes at most 10 float32 roundings, each
    within ``u32`` of ``N + |c D|``."""
    total, size = np.zeros(()), np.zeros(())
    for num, term in map(_sahd_term, calls):
        total, size = total + (num - term), size + (num + term)
    return total / len(calls), 10 * U32 * size / len(calls)


def _logdet_within(K: np.ndarray, E: np.ndarray) -> float:
    """A bound on ``|log|det(K + D)| - log|det K||`` over ``|D| <= E``: ``||K^-1||_F ||E||_F / (1 - ||K^-1||_2 ||E||_F)``."""
    eig = np.abs(np.linalg.eigvalsh(K))
    delta = float(np.linalg.norm(E))
    r = delta / eig.min()
    assert r < 1
    return float(np.sqrt((eig**-2).sum())) * delta / (1 - r)


@pytest.mark.parametrize("cell", RELEASE_CELLS)
def test_release_mode_equals_a_float64_reference_of_the_release_procedure(cell: Cell) -> None:
    """The reference runs the release's procedure itself (one network, never reset, both repeats on fresh augmented
    batches), records every LIF call and builds the kernels in float64: the release mode agrees within what float32
    kernels can move. It also differs from the clean mode exactly where the procedures differ."""
    from snnbench.network import persist_network_state
    from snnbench.scores import draw_batches, draw_release_batches

    digits = load_dataset("digits")
    cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=3)
    B, seed = 16, 7
    got = score_cell(cell, digits, cfg, ("sahd",), batch_size=B, repeats=2, seed=seed, mode="release")
    clean = score_cell(cell, digits, cfg, ("sahd",), batch_size=B, repeats=2, seed=seed)
    assert got["settings"]["mode"] == "release" and got["errors"]["sahd"] is None
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_network(cell, cfg)
        batches = draw_release_batches(digits, B, 2, seed, torch.device("cpu"))
        fresh = {k: v.clone() for k, v in model.state_dict().items()}
        ref, per_pass = [], []
        with persist_network_state(model):
            for x, _ in batches:
                calls = _calls(model, x)
                K, E = _sahd_mean64(calls)
                ref.append((float(np.linalg.slogdet(K)[1]), _logdet_within(K, E)))
                per_pass.append(calls)
    for value, (want, bound) in zip(got["batch_scores"]["sahd"], ref):
        assert abs(value - want) <= bound, (value, want, bound)
        assert bound < 0.05 * abs(want) + 1
    # where the procedures differ: augmented batches, not the clean ones ...
    plain = draw_batches(digits, B, 2, seed, torch.device("cpu"))
    assert not torch.equal(batches[0][0], plain[0][0])
    assert got["batch_scores"]["sahd"] != clean["batch_scores"]["sahd"]
    # ... and the second repeat starts from the first one's membranes and dropout mask: a reset network differs
    model.load_state_dict(fresh)
    torch.manual_seed(123)
    reset_calls = _calls(model, batches[1][0])
    assert any(not np.array_equal(a, b) for a, b in zip(per_pass[1], reset_calls))


def test_persist_state_continues_each_neuron_from_its_last_membrane() -> None:
    """Two calls under persist_state equal one naive LIF loop over both calls' steps (the state carried across)."""
    from snnbench.neuron import LIF, TAU, persist_state

    lif = LIF()
    x = torch.rand(6, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    with persist_state([lif]):
        got = torch.cat([lif(x[:3]), lif(x[3:])])
    v = torch.zeros(3, 5, dtype=torch.float64)
    want = []
    for t in range(6):
        h = v + (x[t] - v) / TAU
        s = (h >= 1.0).double()
        v = h * (1 - s)
        want.append(s)
    torch.testing.assert_close(got, torch.stack(want), rtol=0, atol=0)
    assert not torch.equal(lif(x[3:]), got[3:])  # outside the context every call starts from 0 again


def test_release_mode_refuses_what_the_release_does_not_compute() -> None:
    digits = load_dataset("digits")
    cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=2)
    with pytest.raises(ValueError, match="release reproduces the release's search score, sahd, only"):
        score_cell(FORWARD, digits, cfg, ("sahd", "hd"), batch_size=8, repeats=1, mode="release")
    with pytest.raises(ValueError, match="mode: expected one of clean, release"):
        score_cell(FORWARD, digits, cfg, ("sahd",), batch_size=8, repeats=1, mode="paper")


def test_a_release_mode_build_records_its_mode_and_the_release_scores(tmp_path) -> None:
    from click.testing import CliRunner

    from snnbench.seeds import cell_seed
    from snnbench.cli import main
    from snnbench.network import NetworkConfig
    from snnbench.table import open_table

    path = tmp_path / "release.h5"
    args = ["build", str(path), "--net", "c1=2", "--net", "c2=4", "--net", "hidden=8", "--net", "timesteps=2",
            "--scores", "sahd", "--score-batch", "8", "--score-repeats", "2", "--cells", "sample:2:1", "--train-epochs", "0",
            "--quiet", "--workers", "0"]
    for mode in ("release", "clean"):
        result = CliRunner().invoke(main, [*args, "--score-mode", mode], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    protocols = {p.settings["score"].get("mode", "clean"): p for p in open_table(path).protocols.values()}
    assert set(protocols) == {"release", "clean"}
    release, clean = protocols["release"], protocols["clean"]
    assert "--score-mode release" in release.commands[0] and "--score-mode" not in clean.commands[0]
    digits = load_dataset("digits", val_fraction=0.1, seed=0)
    config = NetworkConfig(**release.settings["network"]["config"])
    for h, s, value in zip(release.hash.tolist(), release.seed.tolist(), release.columns["scores/sahd"].tolist()):
        cell = next(c for c in (open_table(path).cells["matrix"][i] for i in range(2))
                    if Cell(c).hash == h.decode())
        want = score_cell(Cell(cell), digits, config, ("sahd",), 8, 2, cell_seed(h.decode(), s), mode="release")
        assert value == want["scores"]["sahd"]
    assert not np.array_equal(release.columns["scores/sahd"], clean.columns["scores/sahd"])
    bad = CliRunner().invoke(main, [*args, "--scores", "sahd,hd", "--score-mode", "release"])
    assert bad.exit_code == 2 and "release reproduces the release's search score" in bad.output


def test_results_fidelity_section_against_naive_statistics(seeded_table) -> None:
    """docs/results/regenerate.py's fidelity section on a built table: Eq. 5's tau is scipy's on ``sahd + B ln(calls)``
    from the stored rows, and the noise block reads the several-seed protocol."""
    import importlib.util
    import sys
    from pathlib import Path

    from scipy import stats

    from snnbench.api.benchmark import Benchmark
    from snnbench.table import open_table

    regen = sys.modules.get("regenerate")  # one module object per process: its workers pickle functions by name
    if regen is None:
        spec = importlib.util.spec_from_file_location("regenerate", Path(__file__).resolve().parents[1] / "docs/results/regenerate.py")
        assert spec is not None and spec.loader is not None
        regen = importlib.util.module_from_spec(spec)
        sys.modules["regenerate"] = regen
        spec.loader.exec_module(regen)
    blocks = regen.fidelity_section(seeded_table, seeded_table, resamples=50)
    bench = Benchmark(seeded_table)
    batch = 8  # the table's score batch (api_tables.TINY_BUILD)
    acc = bench.accuracy["test"]
    eq5 = [v + batch * math.log(lif_calls(Cell(m), 2)) for v, m in zip(bench.scores["sahd"], bench.matrices)]
    row = next(r.split("|") for r in blocks["fidelity-eq5"] if r.startswith("| forward"))
    assert float(row[2].split()[0]) == round(stats.kendalltau(bench.scores["sahd"], acc).statistic, 3)
    assert float(row[3].split()[0]) == round(stats.kendalltau(eq5, acc).statistic, 3)
    noise = blocks["fidelity-noise"]
    assert noise[0].startswith("8 trained forward cells, each scored with 4 seeds (0, 1, 2, 3)")
    # the per-score row against scipy on the stored rows, laid out by hand (cell -> seed -> value)
    raw = next(p for p in open_table(seeded_table).protocols.values() if p.type == "score")
    values: dict[str, dict[int, float]] = {}
    for h, s, v in zip(raw.hash.tolist(), raw.seed.tolist(), raw.columns["scores/sahd"].tolist()):
        values.setdefault(h.decode(), {})[s] = v
    cells = sorted(values)
    a = [acc[bench.index_of_hash(h)] for h in cells]
    X = np.array([[values[h][s] for s in range(4)] for h in cells])
    row = next(r.split("|") for r in noise if r.startswith("| sahd |"))
    pairs = [stats.kendalltau(X[:, i], X[:, j]).statistic for i in range(4) for j in range(i + 1, 4)]
    assert row[3].strip() == f"{min(pairs):.3f} to {max(pairs):.3f}"
    assert row[4].split()[0] == f"{stats.kendalltau(X[:, 0], a).statistic:.3f}"
    assert row[5].split()[0] == f"{stats.kendalltau(X.mean(axis=1), a).statistic:.3f}"
    for pick in ("one seed per draw", "mean over seeds", "difference"):
        assert any(r.startswith(f"| sahd | {pick} |") for r in noise)
