"""Training-free scores: kernels vs brute force, van Rossum vs numerical integration, the on-device
accumulator vs a naive per-call reimplementation, order invariance, singular cases, determinism,
zero-cost proxies vs hand-derived values, and the ``snnbench score`` command."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import integrate
from torch import nn

from snnbench.cli import main
from snnbench.data import load_dataset
from snnbench.network import SNASNet, build_network, count_params, network_config
from snnbench.neuron import LIF
from snnbench.scores import (
    SpikeKernels,
    hamming_kernel,
    jacob_cov,
    log_abs_det,
    loss_proxies,
    sahd_kernel,
    score_cell,
    score_model,
    score_network,
    synflow,
    van_rossum_kernel,
    van_rossum_sq_distances,
)
from snnbench.space import Cell




# --------------------------------------------------------------------------- brute force references


def brute_kernels(X: np.ndarray) -> dict[str, np.ndarray]:
    """SPEC section 5 with python loops in float64: hd, sahd, and the release's sahd."""
    X = np.asarray(X, dtype=np.float64)
    B, N = X.shape
    out = {k: np.zeros((B, B)) for k in ("hd", "sahd", "sahd_release")}
    for i in range(B):
        for j in range(B):
            d = 0
            for k in range(N):
                d += int(X[i, k] != X[j, k])
            ri, rj = X[i].sum() / N, X[j].sum() / N
            e = N * (ri * (1 - rj) + (1 - ri) * rj)
            out["hd"][i, j] = N - d
            out["sahd"][i, j] = N - 0.5 * d / (e + 0.001)
            out["sahd_release"][i, j] = N - 0.5 * d / (e / N + 0.001)
    return out


def codes(rng: np.random.Generator, B: int, N: int, rate: float) -> np.ndarray:
    X = (rng.random((B, N)) < rate).astype(np.float32)
    X[0] = 0.0  # a silent row and a saturated row exercise e_ij = 0
    X[1] = 1.0
    return X


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5, 0.95])
def test_kernels_equal_brute_force(rate: float) -> None:
    rng = np.random.default_rng(int(rate * 100))
    X = codes(rng, 9, 37, rate)
    ref = brute_kernels(X)
    t = torch.from_numpy(X)
    np.testing.assert_allclose(hamming_kernel(t).numpy(), ref["hd"], rtol=0, atol=0)
    np.testing.assert_allclose(sahd_kernel(t).numpy(), ref["sahd"], rtol=1e-13, atol=1e-11)
    np.testing.assert_allclose(sahd_kernel(t, release=True).numpy(), ref["sahd_release"], rtol=1e-13, atol=1e-9)
    assert sahd_kernel(t).dtype == torch.float64


def test_hamming_is_exact_where_float32_sums_would_round() -> None:
    """N = 2^23 + 1: n_i + n_j passes 2^24, where float32 integers round; the distance stays exact (float64)."""
    n = 2**23 + 1
    X = torch.ones((2, n), dtype=torch.uint8)
    X[1, 0] = 0
    assert hamming_kernel(X)[0, 1] == n - 1  # N_A - d_H with d_H = 1


def test_kernels_per_step_and_any_dtype() -> None:
    rng = np.random.default_rng(3)
    S = (rng.random((4, 6, 20)) < 0.3).astype(np.float32)
    steps = sahd_kernel(torch.from_numpy(S))
    for t in range(4):
        np.testing.assert_allclose(steps[t].numpy(), brute_kernels(S[t])["sahd"], rtol=1e-13)
    as_bool = hamming_kernel(torch.from_numpy(S[0]).bool())
    np.testing.assert_array_equal(as_bool.numpy(), brute_kernels(S[0])["hd"])


# --------------------------------------------------------------------------- van Rossum


def integrated_van_rossum(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """``(1/tau) int_0^inf sum_n (f_a - f_b)^2`` by quadrature, piecewise between spike times."""
    T = a.shape[0]

    def trace(x: np.ndarray, u: float) -> np.ndarray:
        ts = np.arange(T)
        w = np.where(ts <= u, np.exp(-(u - ts) / tau), 0.0)
        return (x * w[:, None]).sum(axis=0)

    def f(u: float) -> float:
        return float(((trace(a, u) - trace(b, u)) ** 2).sum())

    total = 0.0
    for k in range(T - 1):  # the traces are smooth on [k, k+1)
        total += integrate.quad(f, k, k + 1 - 1e-12, epsabs=1e-13, epsrel=1e-12)[0]
    total += integrate.quad(f, T - 1, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    return total / tau


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_van_rossum_equals_numerical_integration(tau: float) -> None:
    # 3 samples, 5 steps, 2 neurons: hand-made trains (bursts, single spikes, silence)
    trains = np.zeros((5, 3, 2))
    trains[[0, 1, 2], 0, 0] = 1  # sample 0 neuron 0: burst at the start
    trains[[4], 0, 1] = 1
    trains[[2], 1, 0] = 1  # sample 1: one spike each
    trains[[0], 1, 1] = 1
    trains[[1, 3], 2, 1] = 1  # sample 2: neuron 0 silent
    d2 = van_rossum_sq_distances(torch.tensor(trains, dtype=torch.float32), tau).numpy()
    for i in range(3):
        for j in range(3):
            assert d2[i, j] == pytest.approx(integrated_van_rossum(trains[:, i], trains[:, j], tau), rel=1e-9, abs=1e-12)
    # one spike against silence: d^2 = 1/2 (van Rossum's normalisation)
    one = torch.zeros(3, 2, 1)
    one[1, 0, 0] = 1
    assert van_rossum_sq_distances(one, tau)[0, 1].item() == pytest.approx(0.5)


def test_van_rossum_kernel_limits_to_hamming() -> None:
    S = (torch.rand(5, 7, 30, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    hd_mean = hamming_kernel(S).mean(dim=0)
    torch.testing.assert_close(van_rossum_kernel(S, tau=1e-3), hd_mean, rtol=1e-12, atol=1e-10)
    assert not torch.allclose(van_rossum_kernel(S, tau=1.0), hd_mean)


# --------------------------------------------------------------------------- a tiny spiking model


class TinySNN(nn.Module):
    """conv -> LIF -> linear -> LIF -> linear over T steps; ``stepwise`` calls the first LIF one step
    at a time with carried state (like a backward cell); no BN, so samples are independent."""

    def __init__(self, T: int = 4, stepwise: bool = False) -> None:
        super().__init__()
        self.T, self.stepwise = T, stepwise
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.lif1, self.lif2 = LIF(), LIF()
        self.fc1 = nn.Linear(4 * 8 * 8, 24, bias=False)
        self.fc2 = nn.Linear(24, 10)
        with torch.no_grad():
            self.conv.weight.mul_(3.0)
            self.fc1.weight.mul_(4.0)

    def lif_layers(self) -> list[tuple[str, LIF]]:
        return [("lif1", self.lif1), ("lif2", self.lif2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        drive = torch.stack([h * (0.6 + 0.2 * t) for t in range(self.T)])
        if self.stepwise:
            from snnbench.neuron import carry_state

            with carry_state([self.lif1]):
                s = torch.cat([self.lif1(drive[t : t + 1]) for t in range(self.T)])
        else:
            s = self.lif1(drive)
        s = self.lif2(self.fc1(s.flatten(2)))
        return self.fc2(s).mean(0)


def tiny_batch(B: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def recorded_spikes(model: TinySNN | SNASNet, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor]]:
    calls: list[tuple[nn.Module, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, a, out: calls.append((mod, out.detach().clone()))) for _, m in model.lif_layers()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return calls


def naive_network_kernels(model: TinySNN | SNASNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per call, per step, the brute-force kernels; van Rossum from the whole train of each layer."""
    sums: dict[str, np.ndarray] = {}
    calls = 0
    per_layer: dict[nn.Module, list[np.ndarray]] = {}
    for module, out in recorded_spikes(model, x):
        for X in out.reshape(out.shape[0], out.shape[1], -1).numpy():
            for name, K in brute_kernels(X).items():
                sums[name] = sums.get(name, 0) + K
            per_layer.setdefault(module, []).append(X)
            calls += 1
    vr = np.zeros(())
    for trains in per_layer.values():
        S = np.stack(trains)  # [T, B, N]
        T, B, N = S.shape
        d2 = np.array([[integrated_van_rossum_closed(S[:, i], S[:, j]) for j in range(B)] for i in range(B)])
        vr = vr + (T * N - 2 * d2)
    sums["vanrossum"] = vr
    return {k: v / calls for k, v in sums.items()}


def integrated_van_rossum_closed(a: np.ndarray, b: np.ndarray, tau: float = 1.0) -> float:
    """``0.5 sum_{s,t} w_s w_t exp(-|s-t|/tau)`` per neuron (the closed form of the integral, checked above)."""
    w = a - b
    T = w.shape[0]
    E = np.exp(-np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]) / tau)
    return float(0.5 * np.einsum("sn,st,tn->", w, E, w))


@pytest.mark.parametrize("stepwise", [False, True])
def test_scorer_matches_naive_per_call_computation(stepwise: bool) -> None:
    torch.manual_seed(0)
    model = TinySNN(stepwise=stepwise)
    x = tiny_batch()
    metrics = ("sahd", "hd", "vanrossum", "sahd_release")
    with torch.no_grad(), SpikeKernels([m for _, m in model.lif_layers()], metrics) as acc:
        model(x)
    ref = naive_network_kernels(model, x)
    assert acc.calls == 2 * model.T
    for name, K in acc.kernels().items():
        np.testing.assert_allclose(K.numpy(), ref[name], rtol=1e-12, atol=1e-9)
    scores = score_network(model, x, metrics)
    for name in metrics:
        assert scores[name].value == pytest.approx(np.linalg.slogdet(ref[name])[1], rel=1e-9)
        assert not scores[name].singular


def test_stepwise_and_multistep_calls_give_the_same_scores() -> None:
    torch.manual_seed(0)
    a = TinySNN(stepwise=False)
    b = TinySNN(stepwise=True)
    b.load_state_dict(a.state_dict())
    x = tiny_batch()
    metrics = ("sahd", "hd", "vanrossum")
    sa, sb = score_network(a, x, metrics), score_network(b, x, metrics)
    for name in metrics:
        assert sa[name].value == pytest.approx(sb[name].value, rel=1e-12)


def test_two_passes_of_multistep_layers_give_twice_one_pass() -> None:
    """One SpikeKernels around two identical passes of a multi-step model: each output is a whole pass, so the
    van Rossum kernel of the two is that of one (a trace carried into the second pass changed it)."""
    from snnbench.scores import SpikeKernels, spiking_layers

    torch.manual_seed(0)
    model, x = TinySNN(stepwise=False), tiny_batch()
    model.train()
    kernels = []
    for passes in (1, 2):
        torch.manual_seed(1)
        with torch.no_grad(), SpikeKernels(spiking_layers(model), ("vanrossum", "hd")) as acc:
            for _ in range(passes):
                model(x)
        kernels.append(acc.kernels())
    for m in ("vanrossum", "hd"):
        torch.testing.assert_close(kernels[0][m], kernels[1][m], rtol=1e-12, atol=1e-9)


def test_scores_invariant_to_sample_order() -> None:
    torch.manual_seed(0)
    model = TinySNN()
    x = tiny_batch(16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(5))
    metrics = ("sahd", "hd", "vanrossum", "sahd_release")
    a, b = score_network(model, x, metrics), score_network(model, x[perm], metrics)
    for name in metrics:
        assert a[name].value == pytest.approx(b[name].value, rel=1e-10)
    rng = np.random.default_rng(0)
    X = torch.from_numpy(codes(rng, 10, 50, 0.2))
    p = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    for kernel in (sahd_kernel, hamming_kernel):
        assert log_abs_det(kernel(X)).value == pytest.approx(log_abs_det(kernel(X[p])).value, rel=1e-10)


def test_repeated_row_is_reported_singular() -> None:
    rng = np.random.default_rng(2)
    X = torch.from_numpy(codes(rng, 8, 40, 0.3))
    X[5] = X[3]
    for K in (sahd_kernel(X), sahd_kernel(X, release=True), hamming_kernel(X)):
        result = log_abs_det(K)
        assert result.singular and result.value == -math.inf
    S = (torch.rand(4, 8, 40, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    S[:, 5] = S[:, 3]
    assert log_abs_det(van_rossum_kernel(S)).singular
    # a whole network fed a duplicated image: reported, not a crash or NaN
    model = TinySNN()
    x = tiny_batch(6)
    x[4] = x[1]
    for name, result in score_network(model, x, ("sahd", "hd", "vanrossum")).items():
        assert result.singular and result.value == -math.inf, name
    assert not log_abs_det(sahd_kernel(X[:5])).singular


def test_no_spiking_layer_is_a_clear_error() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    model.lif_layers = lambda: []  # type: ignore[assignment]  # a plain model posing as an SNN
    with pytest.raises(ValueError, match="no spiking layer"):
        score_network(model, tiny_batch(4))


# --------------------------------------------------------------------------- zero-cost proxies


def grad_of(w: torch.Tensor) -> torch.Tensor:
    assert w.grad is not None, "no gradient reached this weight"
    return w.grad


def test_loss_proxies_equal_manual_gradients() -> None:
    torch.manual_seed(0)
    model = TinySNN()
    x, y = tiny_batch(8), torch.arange(8) % 10
    got = loss_proxies(model, x, y)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    weights = [m.weight for m in (model.conv, model.fc1, model.fc2)]
    grads = [grad_of(w) for w in weights]
    assert got["grad_norm"] == pytest.approx(sum(float(g.norm()) for g in grads), rel=1e-6)
    assert got["snip"] == pytest.approx(sum(float((g * w.detach()).abs().sum()) for w, g in zip(weights, grads)), rel=1e-6)
    assert got["grad_norm"] > 0  # the surrogate gradient reaches the conv below two LIF layers
    assert float(grads[0].abs().sum()) > 0


def test_synflow_of_a_linear_network_is_layers_times_output() -> None:
    # bias-free linear net: R = 1^T |W3||W2||W1| 1 and, by homogeneity, every layer contributes R
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7, bias=False), nn.Linear(7, 5, bias=False), nn.Linear(5, 3, bias=False))
    layers = [m for m in net if isinstance(m, nn.Linear)]
    W = [m.weight.detach().double().abs().numpy() for m in layers]
    R = float(np.ones(3) @ W[2] @ W[1] @ W[0] @ np.ones(12))
    assert synflow(net, (3, 2, 2)) == pytest.approx(3 * R, rel=1e-12)
    assert float(layers[0].weight.detach().min()) < 0  # the model itself is untouched


def test_jacob_cov_matches_finite_difference_reference() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    got = jacob_cov(net, x)
    f = lambda z: float(net(torch.from_numpy(z)).sum().detach())  # noqa: E731 - per-sample net
    jac = np.zeros((4, 6))
    for i in range(4):
        for k in range(6):
            e = np.zeros((1, 1, 2, 3))
            e.flat[k] = 1e-6
            xi = x[i : i + 1].numpy()
            jac[i, k] = (f(xi + e) - f(xi - e)) / 2e-6
    v = np.linalg.eigvalsh(np.corrcoef(jac))
    assert got.value == pytest.approx(-np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5)), rel=1e-4)
    linear = nn.Linear(6, 2)
    nn.init.zeros_(linear.weight)  # zero Jacobian: correlations undefined -> reported, not NaN
    result = jacob_cov(nn.Sequential(nn.Flatten(), linear).double(), x)
    assert result.singular and result.value == -math.inf
    assert not got.singular


# --------------------------------------------------------------------------- score_cell on the real network


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


CELL = Cell("0302 0030 3003 0000")  # a backward cell: exercises step-by-step LIF calls


def test_score_cell_is_seeded_and_reports_everything(digits) -> None:
    cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=3)
    metrics = ("sahd", "hd", "vanrossum", "grad_norm", "snip", "jacob_cov", "synflow", "params")
    a = score_cell(CELL, digits, cfg, metrics, batch_size=24, repeats=2, seed=3)
    b = score_cell(CELL, digits, cfg, metrics, batch_size=24, repeats=2, seed=3)
    c = score_cell(CELL, digits, cfg, ("sahd",), batch_size=24, repeats=2, seed=4)
    assert a["batch_scores"] == b["batch_scores"]  # bit for bit
    assert a["batch_scores"]["sahd"] != c["batch_scores"]["sahd"]
    assert set(a["scores"]) == set(metrics) == set(a["seconds"]) == set(a["singular"])
    assert a["params"] == count_params(build_network(CELL, cfg)) == a["scores"]["params"]
    assert len(a["batch_scores"]["sahd"]) == 2 and a["batch_scores"]["sahd"][0] != a["batch_scores"]["sahd"][1]
    assert a["scores"]["sahd"] == pytest.approx(np.mean(a["batch_scores"]["sahd"]))
    assert a["seconds"]["sahd"] == a["seconds"]["hd"]  # one shared pass
    assert a["settings"]["net_config"] == cfg.to_dict() and a["settings"]["seed"] == 3
    assert all(math.isfinite(v) for v in a["scores"].values())


def test_a_metric_does_not_depend_on_the_others_computed_with_it(digits) -> None:
    """Each metric computed with all the others equals it computed alone, bit for bit: training-mode spike passes
    move BatchNorm running statistics (read by synflow in eval mode) and draw dropout masks from the global RNG
    (shifting grad_norm's, snip's and jacob_cov's), so every pass group starts from the state the first found."""
    cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=3)  # dropout 0.5: masks matter
    metrics = ("sahd", "hd", "vanrossum", "sahd_release", "grad_norm", "snip", "jacob_cov", "synflow", "params")
    together = score_cell(CELL, digits, cfg, metrics, batch_size=16, repeats=2, seed=5)
    for m in metrics:
        alone = score_cell(CELL, digits, cfg, (m,), batch_size=16, repeats=2, seed=5)
        assert alone["batch_scores"][m] == together["batch_scores"][m], m
    reordered = score_cell(CELL, digits, cfg, ("synflow", "jacob_cov", "hd"), batch_size=16, repeats=2, seed=5)
    assert all(reordered["batch_scores"][m] == together["batch_scores"][m] for m in ("synflow", "jacob_cov", "hd"))


def test_score_cell_equals_manual_pipeline(digits) -> None:
    """Same weights (seeded build), same batch (seeded randperm), same SAHD as hooks + brute force."""
    cfg = network_config("digits", "bench", c1=4, c2=8, hidden=16, timesteps=2)
    fw = Cell("0303 0030 0003 0000")
    got = score_cell(fw, digits, cfg, ("sahd",), batch_size=10, repeats=1, seed=7)
    torch.manual_seed(7)
    model = build_network(fw, cfg)
    idx = torch.randperm(len(digits.train), generator=torch.Generator().manual_seed(7))[:10]
    x = digits.normalize(digits.train.images[idx])
    model.train()
    calls = recorded_spikes(model, x)
    K = sum(brute_kernels(X)["sahd"] for _, out in calls for X in out.reshape(out.shape[0], 10, -1).numpy())
    n = sum(out.shape[0] for _, out in calls)
    assert got["scores"]["sahd"] == pytest.approx(np.linalg.slogdet(K / n)[1], rel=1e-9)


def tiny_data(n: int = 5) -> SimpleNamespace:
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return SimpleNamespace(train=SimpleNamespace(images=images, labels=torch.arange(n) % 10), normalize=lambda b: b.float() / 64)


def test_score_model_single_proxy_metrics() -> None:
    torch.manual_seed(0)
    model = TinySNN()
    for metric in ("snip", "grad_norm", "jacob_cov", "synflow", "params"):
        result = score_model(model, tiny_data(), (metric,), batch_size=4, repeats=2)
        assert set(result["scores"]) == {metric} and math.isfinite(result["scores"][metric])
    assert result["scores"]["params"] == sum(p.numel() for p in model.parameters())


def test_score_model_rejects_bad_settings() -> None:
    data = tiny_data()
    with pytest.raises(ValueError, match="exceeds"):
        score_model(TinySNN(), data, ("sahd",), batch_size=6)
    with pytest.raises(ValueError, match="metric"):
        score_model(TinySNN(), data, ("nope",), batch_size=2)
    with pytest.raises(ValueError, match="device"):
        score_model(TinySNN(), data, ("sahd",), batch_size=2, device="bogus")
    with pytest.raises(ValueError, match="^device: 'meta' is not supported; use cpu, cuda or cuda:N$"):
        score_model(TinySNN(), data, ("sahd",), batch_size=2, device="meta")
    for metrics in (("jacob_cov",), ("params", "sahd", "hd")):  # one image has no pairs to compare
        with pytest.raises(ValueError) as err:
            score_model(TinySNN(), data, metrics, batch_size=1)
        assert str(err.value) == (f"batch: {', '.join(m for m in metrics if m != 'params')} compare the images of a "
                                  "batch: batch size must be >= 2, got 1")
    assert score_model(TinySNN(), data, ("grad_norm", "synflow"), batch_size=1, repeats=1)["scores"]["synflow"] > 0


# --------------------------------------------------------------------------- CLI


def test_cli_score_uses_the_skeleton_of_train_and_build(tmp_path) -> None:
    """An .npz set gets the skeleton `snnbench train` and `build` give it (network_config_for): for 64-pixel
    images Tiny-ImageNet's, not CIFAR-10's."""
    from snnbench.training import network_config_for

    rng = np.random.default_rng(0)
    for name, n in (("train", 40), ("test", 10)):
        np.savez(tmp_path / f"{name}.npz", images=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                 labels=np.arange(n) % 5)
    r = CliRunner().invoke(main, ["score", "0303 0033 0003 0000", "--dataset", str(tmp_path / "train.npz"), "--preset",
                                  "bench", "--batch-size", "4", "--repeats", "1", "--json"])
    assert r.exit_code == 0, r.output
    want = network_config_for(load_dataset(tmp_path / "train.npz"), "bench")
    assert json.loads(r.output)["net_config"] == want.to_dict() and want.stem_stride == 2 and want.num_classes == 5


def test_cli_score_json_and_errors() -> None:
    runner = CliRunner()
    args = ["score", "0303 0030 0003 0000", "--dataset", "digits", "--preset", "bench", "--batch-size", "16", "--repeats", "1", "--seed", "2"]
    res = runner.invoke(main, args + ["--metric", "hd", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["metric"] == "hd" and math.isfinite(out["score"]) and out["seconds"] > 0
    assert (out["batch_size"], out["repeats"], out["seed"], out["dataset"], out["preset"]) == (16, 1, 2, "digits", "bench")
    again = json.loads(runner.invoke(main, args + ["--metric", "hd", "--json"]).output)
    assert again["score"] == out["score"]
    text = runner.invoke(main, args + ["--metric", "sahd"])
    assert text.exit_code == 0 and "sahd" in text.output
    for bad in (
        ["score", "0303 0030 0003 0001", "--dataset", "digits"],  # invalid matrix (diagonal)
        ["score", "0303 0030 0003 0000", "--dataset", "digits", "--metric", "magic"],
        ["score", "0303 0030 0003 0000", "--dataset", "digits", "--batch-size", "100000"],
        ["score", "0303 0030 0003 0000", "--dataset", "digits", "--batch-size", "1", "--metric", "jacob_cov"],
        ["score", "0303 0030 0003 0000", "--dataset", "nosuchset"],
    ):
        res = runner.invoke(main, bad)
        assert res.exit_code == 2, (bad, res.output)
        assert "Traceback" not in res.output


@pytest.mark.parametrize("command", ["score", "train"])
@pytest.mark.parametrize("device, message", [
    ("gpu", "device: 'gpu' is not a torch device (e.g. cpu, cuda, cuda:1)"),
    ("cuda:7", "device: cuda:7: "),  # no CUDA here, or fewer than 8 devices
    ("meta", "device: 'meta' is not supported; use cpu, cuda or cuda:N"),
])
def test_cli_bad_device_is_a_one_line_error(command: str, device: str, message: str) -> None:
    res = CliRunner().invoke(main, [command, "0303 0030 0003 0000", "--dataset", "digits", "--device", device])
    assert res.exit_code == 2 and res.output.startswith("Error: " + message) and res.output.count("\n") == 1, res.output


# --------------------------------------------------------------------------- the rounding bound, against exact arithmetic


def _exact_log_abs_det(calls: list[np.ndarray], metric: str, tau: float = 1.0) -> float:
    """``log |det K|`` of the spike kernel of ``calls`` (one ``[T, B, N]`` 0/1 array per layer call, each a whole
    pass of its layer) in exact rational arithmetic from the spikes and the float64 constants the code uses
    (``SAHD_EPS``, ``rho``); only the final logarithm is rounded."""
    from fractions import Fraction

    eps, rho = Fraction(1e-3), Fraction(math.exp(-1.0 / tau))
    total: list[list[Fraction]] | None = None
    steps_total = 0
    for S in calls:
        T, B, N = S.shape
        trace = [[Fraction(0)] * N for _ in range(B)]
        for t in range(T):
            x = [[int(v) for v in S[t, i]] for i in range(B)]
            n = [sum(r) for r in x]
            K = [[Fraction(0)] * B for _ in range(B)]
            for i in range(B):
                for j in range(B):
                    d = sum(a != b for a, b in zip(x[i], x[j]))
                    if metric == "hd":
                        K[i][j] = Fraction(N - d)
                    elif metric == "sahd":
                        e = n[i] + n[j] - Fraction(2 * n[i] * n[j], N)
                        K[i][j] = N - Fraction(d) / (e + eps) / 2
                    else:  # vanrossum: N - d_H - 2 rho (x_i - x_j) . (h_i - h_j), traces before this step
                        cross = sum((a - b) * (ha - hb) for a, b, ha, hb in zip(x[i], x[j], trace[i], trace[j]))
                        K[i][j] = N - d - 2 * rho * cross
            trace = [[rho * h + v for h, v in zip(trace[i], x[i])] for i in range(B)]
            total = K if total is None else [[a + b for a, b in zip(ra, rb)] for ra, rb in zip(total, K)]
            steps_total += 1
    assert total is not None
    M = [[v / steps_total for v in row] for row in total]
    det = Fraction(1)
    for c in range(len(M)):  # Gaussian elimination over the rationals
        pivot = next(r for r in range(c, len(M)) if M[r][c] != 0)
        if pivot != c:
            M[c], M[pivot], det = M[pivot], M[c], -det
        det *= M[c][c]
        for r in range(c + 1, len(M)):
            f = M[r][c] / M[c][c]
            M[r] = [a - f * b for a, b in zip(M[r], M[c])]
    det = abs(det)
    return math.log(det.numerator) - math.log(det.denominator)


def _score_calls(calls: list[torch.Tensor], metric: str):
    layers = [nn.Identity() for _ in calls]
    with SpikeKernels(layers, (metric,)) as acc:
        for layer, S in zip(layers, calls):
            layer(S)
    return log_abs_det(acc.kernels()[metric], acc.rounding()[metric])


@pytest.mark.parametrize("metric", ["hd", "sahd", "vanrossum"])
def test_rounding_bound_holds_against_exact_arithmetic_and_is_tight_enough_to_see_one_spike(metric) -> None:
    """The computed score is within its bound of the exact rational value; the bound is far below what one
    flipped spike moves the score by, so a check within twice the bound still catches any change of spikes."""
    gen = torch.Generator().manual_seed(7)
    calls = [(torch.rand(3, 8, 30, generator=gen) < 0.3).float(), (torch.rand(2, 8, 12, generator=gen) < 0.5).float()]
    got = _score_calls(calls, metric)
    exact = _exact_log_abs_det([c.numpy() for c in calls], metric)
    assert not got.singular and got.error is not None and 0 < got.error < 1e-9 * abs(exact)
    assert abs(got.value - exact) <= got.error
    flipped = [c.clone() for c in calls]
    flipped[0][1, 2, 5] = 1 - flipped[0][1, 2, 5]
    moved = _score_calls(flipped, metric)
    assert abs(moved.value - got.value) > 100 * (got.error + moved.error)


def test_rounding_bound_covers_another_summation_order() -> None:
    """The same calls accumulated in the reverse order (what another CPU's reductions may do) agree within the
    sum of the two bounds, for every spike metric."""
    gen = torch.Generator().manual_seed(3)
    calls = [(torch.rand(4, 16, 200, generator=gen) < p).float() for p in (0.1, 0.3, 0.6)]
    for metric in ("hd", "sahd", "sahd_release", "vanrossum"):
        a, b = _score_calls(calls, metric), _score_calls(calls[::-1], metric)
        assert a.error is not None and b.error is not None
        assert abs(a.value - b.value) <= a.error + b.error, metric


def test_score_cell_reports_a_bound_for_spike_metrics_only() -> None:
    data = load_dataset("digits", val_fraction=0.1, seed=0)
    result = score_cell("0303 0033 0003 0000", data, network_config("digits", "bench"), ("sahd", "vanrossum", "grad_norm"),
                        batch_size=16, repeats=2, seed=0)
    for m in ("sahd", "vanrossum"):
        assert 0 < result["errors"][m] < 1e-8 * abs(result["scores"][m])
    assert result["errors"]["grad_norm"] is None
