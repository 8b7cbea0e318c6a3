"""Training-free scores of spiking networks: SAHD, Hamming, van Rossum and zero-cost proxies.

Spike kernels (SPEC section 5). For every call of a LIF layer at one time step, its spikes form a
0/1 matrix ``X`` of ``B`` rows (samples) and ``N_A`` columns (neurons, everything but the batch
dimension flattened). With ``n_i`` the number of ones in row ``i``, ``r_i = n_i / N_A``,
``d_H(i, j)`` the Hamming distance and ``e_ij = N_A (r_i (1 - r_j) + (1 - r_i) r_j)``:

* ``hd``: ``K = N_A - d_H`` (:func:`hamming_kernel`).
* ``sahd``: ``K = N_A - 0.5 d_H / (e_ij + 0.001)`` (:func:`sahd_kernel`).
* ``sahd_2022a``: like ``sahd`` but with ``e_ij / N_A`` in the denominator, the formula of the authors'
  first upload (January 2022; replaced in July 2022 by the ``sahd`` formula the current release computes).
  ``sahd_release``, its former name, is still accepted and computes the same (stored protocols keep it).
* ``sahd_eq5``: the ``sahd`` kernels *summed* over calls (the supplementary's Eq. 5) instead of averaged (the
  release): ``sahd_eq5 = sahd + B ln(calls)`` in exact arithmetic; see :func:`lif_calls`.
* ``vanrossum``: ``K = N_A - d_H - 2 rho C`` with ``rho = exp(-1 / tau)`` and the cross term ``C`` of
  :func:`van_rossum_sq_distances`; summed over a layer's ``T`` steps this is ``T N_A - 2 d_vR^2``, so
  as ``tau -> 0`` it becomes ``hd``.

A network's kernel is the sum of the kernels of all calls divided by the number of calls (``sahd_eq5``:
not divided); its score is ``log |det K|`` (``torch.linalg.slogdet``). A kernel is **singular** when its smallest absolute
eigenvalue is at most ``B * eps64`` times its largest (numpy's ``matrix_rank`` tolerance); then the
score is ``-inf`` and the ``singular`` flag is set, never NaN.

Precision: ``X X^T`` is computed in float32, which is exact because every partial sum is an integer
below ``2**24`` (``n_i + n_j`` reaches ``2 N_A``: float64 is used when ``N_A >= 2**23``). On CUDA it runs in TF32, which is exact too:
TF32 rounding cannot change 0/1 inputs and the accumulation is float32.
Everything after the Gram matrix, and the accumulated kernel, is float64 on the network's device,
as are the van Rossum traces ``H`` and cross term ``X H^T``. Only the final log-determinant reaches
the host.

Zero-cost proxies (NAS-Bench-Suite-Zero definitions, gradients through the LIF surrogate):
``grad_norm``, ``snip``, ``synflow``, ``jacob_cov``, and ``params``; see ``docs/scores.md``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnbench.network import SNASNet, build_network, count_params, persist_network_state
from snnbench.names import LOSS_METRICS, METRIC_ALIASES, METRICS, SCORE_MODES, SPIKE_METRICS
from snnbench.neuron import LIF, persist_state

_SAHD_FAMILY = {"sahd": False, "sahd_eq5": False, "sahd_2022a": True, "sahd_release": True}  # name -> e / N_A
_SUMMED = ("sahd_eq5",)  # kernels summed over calls, not averaged
BATCH_METRICS: tuple[str, ...] = SPIKE_METRICS + ("jacob_cov",)  # compare a batch's images: need two or more
SAHD_EPS = 1e-3
RELEASE_METRICS: tuple[str, ...] = ("sahd",)
VAN_ROSSUM_TAU = 1.0
_EXACT_FLOAT32 = 2**24


# --------------------------------------------------------------------------- kernels of one call


def _as_steps(X: Tensor) -> Tensor:
    """``[B, N]`` or ``[T, B, N]`` 0/1 codes as float ``[T, B, N]``: float32 while every partial sum of
    ``d_H = n_i + n_j - 2 X X^T`` (up to ``2N``) is an integer float32 holds exactly (``2N < 2**24``), else float64."""
    if X.dim() == 2:
        X = X.unsqueeze(0)
    if X.dim() != 3:
        raise ValueError(f"shape: codes must be [B, N] or [T, B, N], got {tuple(X.shape)}")
    dtype = torch.float32 if 2 * X.shape[-1] < _EXACT_FLOAT32 else torch.float64
    return X.to(dtype)


def _counts(X: Tensor) -> tuple[Tensor, Tensor]:
    """Hamming distances ``d_H [T, B, B]`` (``X``'s dtype, exact integers) and ones per row ``n [T, B]``
    (float64) of codes ``X [T, B, N]``: ``d_H = n_i + n_j - 2 X X^T`` in one batched GEMM.

    On CUDA the float32 GEMM runs on TF32 tensor cores: 0/1 inputs are exact in TF32 and the
    accumulation is float32, so the result is the same exact integers.
    """
    n = X.sum(dim=2)
    fast = X.is_cuda and X.dtype == torch.float32
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = before or fast
    try:
        d_h = torch.baddbmm(n.unsqueeze(2) + n.unsqueeze(1), X, X.transpose(1, 2), alpha=-2.0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    return d_h, n.double()


def _sahd_ratio(d_h: Tensor, n: Tensor, num: int, release: bool) -> Tensor:
    """``d_H / (e + 0.001)`` (float64) with ``e = n_i + n_j - 2 n_i n_j / N`` (``e / N`` when ``release``);
    ``d_SAH`` is half of it."""
    n_i, n_j = n.unsqueeze(2), n.unsqueeze(1)
    e = torch.baddbmm(n_i + n_j, n_i, n_j, alpha=-2.0 / num)
    if release:
        e.div_(num)
    return d_h / e.add_(SAHD_EPS)


def hamming_kernel(X: Tensor) -> Tensor:
    """``N_A - d_H`` for 0/1 codes ``X [B, N_A]`` (SPEC section 5); float64 ``[B, B]``.

    ``[T, B, N_A]`` gives one kernel per step, ``[T, B, B]``.
    """
    steps = X.dim() == 3
    X = _as_steps(X)
    d_h, _ = _counts(X)
    out = X.shape[2] - d_h.double()
    return out if steps else out[0]


def sahd_kernel(X: Tensor, *, release: bool = False) -> Tensor:
    """``N_A - 0.5 d_H / (e_ij + 0.001)`` for 0/1 codes ``X [B, N_A]`` (SPEC section 5); float64.

    ``release=True`` uses ``e_ij / N_A`` (the authors' released code). ``[T, B, N_A]`` gives one
    kernel per step.
    """
    steps = X.dim() == 3
    X = _as_steps(X)
    d_h, n = _counts(X)
    out = X.shape[2] - 0.5 * _sahd_ratio(d_h, n, X.shape[2], release)
    return out if steps else out[0]


def release_sahd_kernels32(X: Tensor) -> Tensor:
    """The ``sahd`` kernel of each call of ``X [T, B, N_A]`` (0/1) as the authors' current release builds it: in
    float32, in its order of operations (``r = n / N_A``; ``e = (r (1 - r)^T + (1 - r) r^T) N_A``; ``c = 0.5 / (e +
    0.001)``; ``K = N_A - c (X (1 - X)^T + (1 - X) X^T)``); float32 ``[T, B, B]``. Every operation is elementwise
    or an exact integer GEMM (``N_A < 2**24``), so any device gives the same bits."""
    if X.dim() != 3:
        raise ValueError(f"shape: codes must be [T, B, N], got {tuple(X.shape)}")
    out = []
    for step in X.to(torch.float32):  # one call at a time, as the release's hook (and its memory) sees it
        num = step.shape[1]
        rate = (step.sum(1) / num).unsqueeze(1)
        e = (rate @ (1 - rate).t() + (1 - rate) @ rate.t()) * num
        scale = torch.div(0.5 * torch.ones_like(e), e + SAHD_EPS)
        out.append(num - scale * ((1 - step) @ step.t() + step @ (1 - step).t()))
    return torch.stack(out)


def _filtered(X: Tensor, rho: float, trace: Tensor | None) -> tuple[Tensor, Tensor]:
    """Traces before each step, ``H_prev [T, B, N]``, and the trace after the last step.

    ``H_t = rho H_{t-1} + X_t`` (the exponential filter sampled just after each step's spikes);
    ``trace`` is ``H_{-1}`` (zeros when ``None``). Float64.
    """
    X = X.double()
    prev = torch.empty_like(X)
    if trace is None:
        prev[0].zero_()
    else:
        prev[0].copy_(trace)
    for t in range(1, X.shape[0]):
        torch.mul(prev[t - 1], rho, out=prev[t]).add_(X[t - 1])  # rho * h + x, rounded as written
    return prev, rho * prev[-1] + X[-1]


def _van_rossum_cross(X: Tensor, h_prev: Tensor) -> tuple[Tensor, Tensor]:
    """``C_t(a, b) = (x_a - x_b) . (h_a - h_b)`` for steps ``X [T, B, N]``; float64 ``[T, B, B]``. Also the sum
    of the magnitudes of its four dot products (all >= 0: spikes and traces are non-negative), for error bounds."""
    p = torch.matmul(X.double(), h_prev.transpose(1, 2))
    d = torch.diagonal(p, dim1=1, dim2=2)
    diag, off = d.unsqueeze(2) + d.unsqueeze(1), p + p.transpose(1, 2)
    return diag - off, diag + off


def van_rossum_sq_distances(S: Tensor, tau: float = VAN_ROSSUM_TAU) -> Tensor:
    """Squared van Rossum distances ``[B, B]`` (float64) between the spike trains ``S [T, B, N]``.

    Spikes at step ``t`` are unit impulses at time ``t``; each neuron's train is filtered by
    ``f(u) = sum_k H(u - t_k) exp(-(u - t_k) / tau)`` and
    ``d^2(a, b) = (1 / tau) * integral_0^inf sum_neurons (f_a(u) - f_b(u))^2 du`` (van Rossum 2001).
    The integral is exact, not a sampled approximation: with ``w = x_a - x_b`` per neuron and
    ``rho = exp(-1 / tau)`` it equals ``0.5 * sum_{s,t} w_s w_t rho^|s-t|``, which the discrete filter
    ``h_t = rho h_{t-1} + w_t`` evaluates as ``0.5 * sum_t (|w_t|^2 + 2 rho w_t . h_{t-1})``.
    """
    X = _as_steps(S)
    h_prev, _ = _filtered(X, math.exp(-1.0 / tau), None)
    d_h, _ = _counts(X)
    cross, _ = _van_rossum_cross(X, h_prev)
    return 0.5 * (d_h.double() + 2.0 * math.exp(-1.0 / tau) * cross).sum(dim=0)


def van_rossum_kernel(S: Tensor, tau: float = VAN_ROSSUM_TAU) -> Tensor:
    """``N_A - 2 d_vR^2 / T`` for one layer's trains ``S [T, B, N_A]``: the mean kernel of its ``T`` calls.

    Equals the mean of :func:`hamming_kernel` over the steps when ``tau -> 0``.
    """
    if S.dim() != 3:
        raise ValueError(f"shape: spike trains must be [T, B, N], got {tuple(S.shape)}")
    return S.shape[2] - 2.0 * van_rossum_sq_distances(S, tau) / S.shape[0]


# --------------------------------------------------------------------------- accumulation over a forward pass


def spiking_layers(model: nn.Module) -> list[nn.Module]:
    """The model's LIF layers: ``model.lif_layers()`` when it has it, else every ``snnbench.neuron.LIF``."""
    lif_layers = getattr(model, "lif_layers", None)
    if callable(lif_layers):
        return [module for _, module in lif_layers()]
    return [m for m in model.modules() if isinstance(m, LIF)]


class SpikeKernels:
    """Forward hooks on spiking layers that sum the kernels of every call on the layers' device.

    Each hooked output ``[T, B, ...]`` is ``T`` calls (one per step). A layer called step by step
    (``T = 1``) keeps its van Rossum trace from one call to the next, so around several forward passes call
    :meth:`reset` between them (or use one instance per pass); a multi-step output is a whole pass and starts
    from a zero trace. Use as a context manager; :meth:`kernels` gives sum / calls.
    """

    def __init__(self, layers: Sequence[nn.Module], metrics: Iterable[str], tau: float = VAN_ROSSUM_TAU,
                 release32: bool = False):
        self.metrics = tuple(metrics)
        unknown = [m for m in self.metrics if m not in SPIKE_METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metric: spike metrics are {', '.join(SPIKE_METRICS)}; got {list(self.metrics)}")
        if release32 and set(self.metrics) - set(RELEASE_METRICS):
            raise ValueError(f"metric: the release's float32 kernels are {', '.join(RELEASE_METRICS)} only; got {list(self.metrics)}")
        self.release32 = release32  # sahd per call by release_sahd_kernels32, summed in float64; no rounding bound
        self.layers = list(layers)
        self.rho = math.exp(-1.0 / tau)
        self._handles: list[Any] = []
        self.reset()

    def reset(self) -> None:
        """Forget all sums, the call count and the van Rossum traces."""
        self.sums: dict[str, Tensor] = {}
        self.sizes: dict[str, Tensor] = {}  # sums of the terms' magnitudes, for the rounding bound
        self.calls = 0
        self._dot = 0  # longest dot product in a van Rossum cross term
        self._traces: dict[nn.Module, Tensor] = {}

    def __enter__(self) -> SpikeKernels:
        self._handles = [layer.register_forward_hook(self._hook) for layer in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, module: nn.Module, args: Any, out: Tensor) -> None:
        steps, batch = out.shape[0], out.shape[1]
        X = _as_steps(out.detach().reshape(steps, batch, -1))
        num = X.shape[2]
        if self.release32:
            kernel = release_sahd_kernels32(X).double().sum(dim=0)
            self.sums["sahd"] = kernel if "sahd" not in self.sums else self.sums["sahd"] + kernel
            self.calls += steps
            return
        d_h, n = _counts(X)
        ratios: dict[bool, Tensor] = {}
        for metric in self.metrics:
            base = float(steps * num)
            if metric == "hd":
                d_sum = d_h.sum(dim=0, dtype=torch.float64)
                kernel, size = base - d_sum, base + d_sum
            elif metric in _SAHD_FAMILY:
                old = _SAHD_FAMILY[metric]
                if old not in ratios:  # sahd and sahd_eq5 (and the two names of 2022a) share one ratio
                    ratios[old] = 0.5 * _sahd_ratio(d_h, n, num, old).sum(dim=0)
                kernel, size = base - ratios[old], base + ratios[old]
            else:
                X64 = X.double()  # once for the trace and the cross term
                carried = self._traces.get(module) if steps == 1 else None
                h_prev, self._traces[module] = _filtered(X64, self.rho, carried)
                cross, cross_size = _van_rossum_cross(X64, h_prev)
                d_sum = d_h.sum(dim=0, dtype=torch.float64)
                kernel = base - d_sum - (2.0 * self.rho) * cross.sum(dim=0)
                size = base + d_sum + (2.0 * self.rho) * cross_size.sum(dim=0)
                self._dot = max(self._dot, num)
            self.sums[metric] = kernel if metric not in self.sums else self.sums[metric] + kernel
            self.sizes[metric] = size if metric not in self.sizes else self.sizes[metric] + size
        self.calls += steps

    def kernels(self) -> dict[str, Tensor]:
        """Each metric's kernel: the sum over calls divided by the number of calls (float64 [B, B]); ``sahd_eq5``'s
        is the sum itself."""
        if self.calls == 0:
            raise ValueError("model: no spiking layer was called during the forward pass; nothing to score")
        return {metric: total if metric in _SUMMED else total / self.calls for metric, total in self.sums.items()}

    def rounding(self) -> dict[str, Tensor]:
        """Per metric, an elementwise bound on the float64 rounding error of :meth:`kernels` ([B, B]).

        Every entry is a sum over calls of terms built from exact integers (``d_H``, ``n``) by at most
        :data:`_TERM_OPS` roundings, plus, for ``vanrossum``, dot products of length ``N_A`` (``X H^T``) with traces
        ``H`` of at most two roundings a step. Summed
        in any order (another CPU's kernels) the error is at most ``gamma_k * sum |constituents|`` (Higham,
        *Accuracy and Stability of Numerical Algorithms*, 2002, eq. 3.4-4.4) with ``k`` those roundings plus the
        calls plus the dot length, and one more rounding for the division by the number of calls.
        """
        if self.release32:
            raise ValueError("rounding: the release's float32 kernels carry no float64 rounding bound")
        kernels = self.kernels()
        out = {}
        for metric, size in self.sizes.items():
            # van Rossum also: the dot products, and the trace recursion (two roundings a step) feeding them
            k = _TERM_OPS + self.calls + (self._dot + 2 * self.calls if metric == "vanrossum" else 0)
            scale = 1 if metric in _SUMMED else self.calls
            out[metric] = _gamma(k) * size / scale + _UNIT * kernels[metric].abs()
        return out


def lif_calls(cell: Any, timesteps: int) -> int:
    """LIF calls of one forward pass of ``cell``'s SNASNet (what :attr:`SpikeKernels.calls` counts): ``T`` times the
    LIF layers, i.e. one per conv edge of the pruned cell in each of the two cells plus the skeleton's three.

    Fixed by the cell's structure, so ``sahd_eq5 = sahd + B ln(lif_calls)`` (``log det(sum K) = log det(mean K) +
    B ln(calls)`` for a ``B x B`` kernel) turns any stored ``sahd`` into Eq. 5's value (:func:`eq5_from_mean`).
    """
    from snnbench.space import OPS, Cell

    m = (cell if isinstance(cell, Cell) else Cell(cell, nodes=None)).pruned.matrix
    convs = sum(1 for op in m.ravel().tolist() if OPS[op] in ("conv1x1", "conv3x3"))
    return int(timesteps) * (3 + 2 * convs)


def eq5_from_mean(score: float, batch_size: int, calls: int) -> float:
    """Eq. 5's ``log |det sum_l K_l|`` from the release's ``log |det mean_l K_l|`` (``score``) of the same kernels:
    ``score + B ln(calls)`` (``-inf`` stays ``-inf``)."""
    return score + batch_size * math.log(calls)


@dataclass(frozen=True)
class LogDet:
    """``log |det K|``; ``-inf`` with ``singular=True`` when ``K`` is numerically rank deficient. ``error``: a
    bound on the float64 rounding error of ``value`` (see :func:`logdet_error`); ``None`` where none is derived."""

    value: float
    singular: bool
    error: float | None = None


def log_abs_det(K: Tensor, rounding: Tensor | None = None) -> LogDet:
    """``log |det K|`` of a symmetric kernel via ``slogdet``; singular when ``min|eig| <= B eps max|eig|``.

    With ``rounding`` (an elementwise bound on the error already in ``K``, :meth:`SpikeKernels.rounding`) the
    result carries :func:`logdet_error`; a singular kernel's error is 0 (``-inf`` is exact)."""
    _, logabs = torch.linalg.slogdet(K)
    eig = torch.linalg.eigvalsh(K).abs()
    tol = eig.max() * K.shape[0] * torch.finfo(K.dtype).eps
    logabs_h, smallest, tol_h = torch.stack([logabs, eig.min(), tol]).tolist()  # the one host transfer
    if smallest <= tol_h or not math.isfinite(logabs_h):
        return LogDet(-math.inf, True, None if rounding is None else 0.0)
    return LogDet(logabs_h, False, None if rounding is None else logdet_error(K, rounding, eig))


def logdet_error(K: Tensor, rounding: Tensor, eig: Tensor | None = None) -> float:
    """A bound on ``|computed - exact|`` for ``log |det K|`` of the exact kernel that ``K`` approximates
    within ``|dK| <= rounding`` (elementwise), computed by LU in float64 in any summation order.

    LU with partial pivoting gives factors of ``K + E`` with ``|E| <= gamma_n |L||U|`` (Higham, thm. 9.3), so
    ``Delta = dK + E`` has ``||Delta||_F <= ||rounding||_F + gamma_n || |L||U| ||_F``. For ``M = K^-1 Delta`` with
    ``r = ||K^-1||_2 ||Delta||_F < 1``: ``|log |det(I + M)|| <= sum_i -log(1 - |mu_i|) <= ||M||_* / (1 - r)`` and
    ``||M||_* <= ||K^-1||_F ||Delta||_F`` (Hoelder). The ``n`` logarithms of ``|u_ii|`` and their sum add
    ``gamma_(n+1) sum |log |u_ii|||``. ``K``'s eigenvalues (``eig``, absolute) are reused when given; they are
    lowered by the eigensolver's own backward error before use. ``inf`` when ``r >= 1`` (nothing certified).
    """
    n = K.shape[0]
    lu, _ = torch.linalg.lu_factor(K)
    lower = torch.tril(lu, -1).abs() + torch.eye(n, dtype=K.dtype, device=K.device)
    upper = torch.triu(lu).abs()
    delta = float(torch.linalg.matrix_norm(rounding)) + _gamma(n) * float(torch.linalg.matrix_norm(lower @ upper))
    eig = torch.linalg.eigvalsh(K).abs() if eig is None else eig
    eig = eig - _gamma(n * n) * float(torch.linalg.matrix_norm(K))  # eigvalsh is backward stable (a loose p(n))
    if float(eig.min()) <= 0:
        return math.inf
    inv_2, inv_f = float(1.0 / eig.min()), float(eig.reciprocal().square().sum().sqrt())
    r = inv_2 * delta
    if r >= 1:
        return math.inf
    logs = float(torch.diagonal(lu).abs().log().abs().sum())
    return inv_f * delta / (1 - r) + _gamma(n + 1) * logs


_UNIT = torch.finfo(torch.float64).eps / 2  # float64 unit roundoff u
_TERM_OPS = 12  # roundings in one call's kernel term from exact counts (SAHD: 8; van Rossum: 4 after its dots)


def _gamma(k: int) -> float:
    """``gamma_k = k u / (1 - k u)``: the relative error bound of ``k`` float64 roundings (Higham, lemma 3.1)."""
    return k * _UNIT / (1 - k * _UNIT)


def score_network(
    model: nn.Module, x: Tensor, metrics: Iterable[str] = ("sahd",), tau: float = VAN_ROSSUM_TAU, release32: bool = False
) -> dict[str, LogDet]:
    """Spike-kernel scores of ``model`` on one batch ``x``: one forward pass, training mode, no gradients.
    ``release32``: ``sahd`` from the release's float32 per-call kernels (no rounding bound)."""
    was_training = model.training
    model.train()
    try:
        with torch.no_grad(), SpikeKernels(spiking_layers(model), metrics, tau, release32) as acc:
            model(x)
        if release32:
            return {metric: log_abs_det(kernel) for metric, kernel in acc.kernels().items()}
        rounding = acc.rounding()
        return {metric: log_abs_det(kernel, rounding[metric]) for metric, kernel in acc.kernels().items()}
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- zero-cost proxies


def _weights(model: nn.Module) -> list[Tensor]:
    """Weights of every conv and linear layer (the layers NAS-Bench-Suite-Zero's proxies sum over)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def loss_proxies(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """``grad_norm = sum_l ||dL/dW_l||_2`` and ``snip = sum |W * dL/dW|`` for cross-entropy ``L`` (training mode)."""
    model.train()
    weights = _weights(model)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    pairs = [(w.detach().double(), g.double()) for w, g in zip(weights, grads) if g is not None]
    zero = torch.zeros((), dtype=torch.float64, device=x.device)
    grad_norm = sum((g.norm() for _, g in pairs), zero)
    snip = sum(((w * g).abs().sum() for w, g in pairs), zero)
    gn, sn = torch.stack([grad_norm, snip]).tolist()
    return {"grad_norm": gn, "snip": sn}


def jacob_cov(model: nn.Module, x: Tensor, k: float = 1e-5) -> LogDet:
    """``-sum_i (log(v_i + k) + 1 / (v_i + k))`` over eigenvalues ``v`` of the correlation matrix of
    the per-sample input Jacobians of the summed output (training mode). Degenerate (a sample whose
    Jacobian is constant, so correlations are undefined): ``-inf`` with ``singular=True``."""
    model.train()
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (jac,) = torch.autograd.grad(model(inputs).sum(), inputs)
    corr = torch.corrcoef(jac.reshape(jac.shape[0], -1).double())
    v = torch.linalg.eigvalsh(torch.nan_to_num(corr, nan=0.0))
    score = -(torch.log(v + k) + 1.0 / (v + k)).sum()
    finite, value = torch.stack([torch.isfinite(corr).all().double(), score]).tolist()
    if not finite or not math.isfinite(value):
        return LogDet(-math.inf, True)
    return LogDet(value, False)


def synflow(model: nn.Module, input_shape: Sequence[int], device: torch.device | str = "cpu") -> float:
    """``sum |W * dR/dW|`` over conv/linear weights of a float64 copy with all parameters replaced by
    their absolute values, in eval mode (BN uses its running statistics, dropout off), where ``R`` is
    the sum of the output for one all-ones input of ``input_shape`` ``[C, H, W]``. Data independent."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    weights = _weights(net)
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    with torch.enable_grad():
        grads = torch.autograd.grad(net(ones).sum(), weights, allow_unused=True)
    zero = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        return float(sum(((w * g).abs().sum() for w, g in zip(weights, grads) if g is not None), zero))


# --------------------------------------------------------------------------- scoring a cell


def _checked(value: float) -> LogDet:
    """A proxy value; a non-finite one is reported as ``-inf`` with the ``singular`` flag, never NaN."""
    return LogDet(value, False) if math.isfinite(value) else LogDet(-math.inf, True)


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """The metrics as a tuple without duplicates, former names (:data:`METRIC_ALIASES`) kept as given; ``ValueError``
    for an unknown or empty list."""
    out = tuple(dict.fromkeys(metrics))
    unknown = [m for m in out if m not in METRICS]
    if unknown or not out:
        current = [m for m in METRICS if m not in METRIC_ALIASES]
        raise ValueError(f"metric: unknown {unknown or 'empty list'}; choose from {', '.join(current)}")
    return out


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, a CPU or CUDA one; ``ValueError`` when it is malformed, of another type or its
    backend is unavailable."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: {str(device)!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {str(device)!r} is not supported; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {dev}: CUDA is not available on this machine; use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device: {dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def draw_batches(
    dataset: Any, batch_size: int, repeats: int, seed: int, device: torch.device
) -> list[tuple[Tensor, Tensor]]:
    """``repeats`` batches of ``batch_size`` distinct training images, normalised, on ``device``.

    Batch ``r`` is the first ``batch_size`` entries of the ``r``-th ``randperm`` of a CPU generator
    seeded with ``seed``; only the chosen images are normalised.
    """
    images, labels = dataset.train.images, dataset.train.labels
    total = int(images.shape[0])
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch: batch size and repeats must be >= 1, got {batch_size} and {repeats}")
    if batch_size > total:
        raise ValueError(f"batch: batch size {batch_size} exceeds the {total} training images")
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(repeats):
        idx = torch.randperm(total, generator=gen)[:batch_size].to(images.device)
        x = dataset.normalize(images[idx]).to(device)
        batches.append((x, labels[idx].to(device)))
    return batches


def draw_release_batches(
    dataset: Any, batch_size: int, repeats: int, seed: int, device: torch.device
) -> list[tuple[Tensor, Tensor]]:
    """``repeats`` fresh augmented batches, as the release's new shuffled training loader per repeat gives them:
    batch ``r`` is the first ``batch_size`` entries of the ``r``-th ``randperm``, each image randomly cropped from
    its zero-padded copy and flipped (``dataset.augment``, the training augmentation), then normalised. One CPU
    generator seeded with ``seed`` draws the permutations and the augmentation (the release's are unseeded)."""
    images, labels = dataset.train.images, dataset.train.labels
    total = int(images.shape[0])
    if batch_size < 1 or repeats < 1 or batch_size > total:
        raise ValueError(f"batch: batch size must be in [1, {total}] and repeats >= 1, got {batch_size} and {repeats}")
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(repeats):
        idx = torch.randperm(total, generator=gen)[:batch_size]
        chosen = dataset.augment(images[idx.to(images.device)].cpu(), generator=gen)
        x = dataset.normalize(chosen.to(images.device)).to(device)
        batches.append((x, labels[idx.to(labels.device)].to(device)))
    return batches


def score_model(
    model: nn.Module,
    dataset: Any,
    metrics: Iterable[str] = ("sahd", "hd"),
    batch_size: int = 256,
    repeats: int = 2,
    seed: int = 0,
    device: str | torch.device = "cpu",
    tau: float = VAN_ROSSUM_TAU,
    mode: str = "clean",
) -> dict[str, Any]:
    """Score a built ``model`` on ``repeats`` seeded batches of ``dataset`` (see :func:`score_cell`).

    ``mode="release"`` reproduces the authors' current search scoring (``find_best_neuroncell``) as its code runs,
    for ``sahd``: fresh augmented batches (:func:`draw_release_batches`), each call's kernel built in float32
    (:func:`release_sahd_kernels32`) and summed in float64, the mean over calls, and the LIF membranes and dropout
    mask carried from one repeat to the next (it never resets its network between them). Its seeding where the
    release has none: weights and batches from ``seed``.

    Spike metrics share one no-grad forward pass per batch, ``grad_norm`` and ``snip`` one
    forward/backward pass; ``synflow`` is data independent and computed once. Every pass group starts
    from the state the first one found: the global RNG (dropout masks; the caller's) and the model's
    buffers (BatchNorm running statistics, which training-mode passes move) are restored before each, so
    a metric's value does not depend on which other metrics the call computes.
    """
    metrics = check_metrics(metrics)
    mode = check_mode(mode, metrics)
    pairs = [m for m in metrics if m in BATCH_METRICS]
    if pairs and batch_size < 2:
        raise ValueError(f"batch: {', '.join(pairs)} compare the images of a batch: batch size must be >= 2, got {batch_size}")
    dev = resolve_device(device)
    release = mode == "release"
    batches = (draw_release_batches if release else draw_batches)(dataset, batch_size, repeats, seed, dev)
    per_batch: dict[str, list[LogDet]] = {m: [] for m in metrics}
    seconds: dict[str, float] = {}

    rng = torch.get_rng_state(), (torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}

    def timed(names: Sequence[str], work: Any) -> None:
        if not names:
            return
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state(rng[1], dev)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        start = time.perf_counter()
        work()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elapsed = time.perf_counter() - start
        for name in names:
            seconds[name] = elapsed

    spike = [m for m in metrics if m in SPIKE_METRICS]
    loss = [m for m in metrics if m in LOSS_METRICS]

    def spikes() -> None:
        if release:  # one network state through all repeats, as the release's search never resets it
            state = (persist_network_state(model) if isinstance(model, SNASNet)
                     else persist_state(m for m in spiking_layers(model) if isinstance(m, LIF)))
            with state:
                for x, _ in batches:
                    for name, result in score_network(model, x, spike, tau, release32=True).items():
                        per_batch[name].append(result)
            return
        for x, _ in batches:
            for name, result in score_network(model, x, spike, tau).items():
                per_batch[name].append(result)

    def losses() -> None:
        for x, y in batches:
            for name, value in loss_proxies(model, x, y).items():
                if name in per_batch:
                    per_batch[name].append(_checked(value))

    def jacobian() -> None:
        per_batch["jacob_cov"] = [jacob_cov(model, x) for x, _ in batches]

    def flow() -> None:
        value = synflow(model, tuple(batches[0][0].shape[1:]), dev)
        per_batch["synflow"] = [_checked(value)]

    def params() -> None:
        per_batch["params"] = [LogDet(float(count_params(model)), False)]

    timed(spike, spikes)
    timed(loss, losses)
    timed([m for m in metrics if m == "jacob_cov"], jacobian)
    timed([m for m in metrics if m == "synflow"], flow)
    timed([m for m in metrics if m == "params"], params)
    model.zero_grad(set_to_none=True)
    return {
        "scores": {m: sum(r.value for r in per_batch[m]) / len(per_batch[m]) for m in metrics},
        "batch_scores": {m: [r.value for r in per_batch[m]] for m in metrics},
        "singular": {m: any(r.singular for r in per_batch[m]) for m in metrics},
        "errors": {m: _mean_error(per_batch[m]) for m in metrics},
        "seconds": seconds,
    }


def _mean_error(results: Sequence[LogDet]) -> float | None:
    """The rounding bound of the mean of ``results``' values: their mean bound plus the sum's and the division's
    own roundings; ``None`` when a result has no bound; 0 when the mean is ``-inf`` (a singular batch)."""
    if any(r.error is None for r in results):
        return None
    values = [r.value for r in results]
    if not all(math.isfinite(v) for v in values):
        return 0.0
    return sum(r.error for r in results) / len(results) + _gamma(len(results)) * sum(abs(v) for v in values) / len(results)  # type: ignore[misc]


def check_mode(mode: str, metrics: Sequence[str]) -> str:
    """``mode`` when it is a score mode that computes ``metrics``; else a one-line ``ValueError``."""
    if mode not in SCORE_MODES:
        raise ValueError(f"mode: expected one of {', '.join(SCORE_MODES)}, got {mode!r}")
    if mode == "release" and set(metrics) - set(RELEASE_METRICS):
        raise ValueError(f"mode: release reproduces the release's search score, {', '.join(RELEASE_METRICS)}, only; "
                         f"got {', '.join(metrics)}")
    return mode


def score_cell(
    cell: Any,
    dataset: Any,
    net_config: Any,
    metrics: Iterable[str] = ("sahd", "hd"),
    batch_size: int = 256,
    repeats: int = 2,
    seed: int = 0,
    device: str | torch.device = "cpu",
    tau: float = VAN_ROSSUM_TAU,
    mode: str = "clean",
) -> dict[str, Any]:
    """Build ``cell``'s untrained network once (weights from ``seed``) and compute ``metrics`` on it.

    Returns ``scores`` (mean over the ``repeats`` batches), ``batch_scores``, ``singular`` (any batch
    singular or degenerate), ``errors`` (per spike metric, a bound on the score's float64 rounding error: two
    machines that compute the same spikes agree within twice it; ``None`` for the other metrics), ``seconds`` per metric (metrics sharing a pass report that pass's wall
    time), ``build_seconds``, ``params`` and ``settings``. The same seed gives the same weights,
    batches, dropout masks and hence, on the same CPU, the same scores bit for bit (another CPU's vector
    kernels can move the gradient proxies in the last bits; spike kernels stay exact). The global RNG is left
    as it was. ``mode``: ``clean`` (the default) or ``release`` (see :func:`score_model`; ``errors`` is then
    ``None``).
    """
    metrics = check_metrics(metrics)
    dev = resolve_device(device)
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        start = time.perf_counter()
        model = build_network(cell, net_config).to(dev)
        build_seconds = time.perf_counter() - start
        result = score_model(model, dataset, metrics, batch_size, repeats, seed, dev, tau, mode)
    result["build_seconds"] = build_seconds
    result["params"] = int(count_params(model))
    result["settings"] = {
        "metrics": list(metrics),
        "batch_size": batch_size,
        "repeats": repeats,
        "seed": seed,
        "device": str(dev),
        "tau": tau,
        "net_config": net_config.to_dict(),
        "mode": mode,
    }
    return result
