"""The multi-step leaky integrate-and-fire neuron of SPEC section 3, with a hand-written BPTT backward.

Dynamics per element, for ``t = 0 .. T-1`` with ``v(-1) = 0`` (or the carried state, see below)::

    h(t) = v(t-1) + (x(t) - v(t-1)) / tau          # charge (tau = 4/3); PLIF: ... * sigmoid(w)
    s(t) = 1 if h(t) >= 1 else 0                    # fire (threshold 1)
    v(t) = h(t) * (1 - s(t))                        # hard reset to 0; the reset carries no gradient

Surrogate gradient: ``ds/dh = 1 / (1 + (pi * (h - 1))^2)`` (SpikingJelly's ``ATan`` with alpha = 2).

Invariants
----------
* ``LIF.forward(x[T, B, ...])`` returns 0/1 spikes of ``x``'s dtype and shape. The membrane is reset
  to 0 at the start of every call, by construction: there is no state to forget to reset. The only
  exception is :func:`carry_state`, a context in which a cell that steps through time keeps each
  neuron's membrane from one call to the next (cleared again on exit), and :func:`persist_state`, in which
  every call starts from the membrane the layer's previous call ended with (the authors' search, which never
  resets its neurons between two forward passes; cleared on exit).
* State math runs in float32 for half/bfloat16 inputs (float64 stays float64), so autocast changes
  spikes only through the rounding of the input itself.
* The backward pass is bit-for-bit the gradient that autograd computes for a step-by-step loop
  written with the same float operations (see ``tests/test_neuron.py``).
* Every spiking layer of a :mod:`snnbench.network` model is an instance of :class:`LIF`, so spikes can
  be collected with forward hooks. A hook sees ``[T', B, ...]`` with ``T' = T`` for multi-step calls
  and ``T' = 1`` when a backward cell steps through time.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from snnbench import kernels

TAU = 4.0 / 3.0
THRESHOLD = 1.0

_compiled: dict[str, Callable[..., Any]] = {}
_use_compile = False


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _empty_sequence(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Uninitialised ``[T, ...]`` tensor whose step slices have ``x[0]``'s memory layout (also when
    ``x`` is a step-broadcast view)."""
    step = torch.empty_like(x[0], dtype=dtype)
    return torch.empty_strided(x.shape, (step.numel(), *step.stride()), dtype=dtype, device=x.device)


def _forward_loop(x: Tensor, v: Tensor, tau: float, k: Tensor | None, save: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Run all steps. Returns spikes (state dtype), the pre-reset membranes ``h`` (empty unless
    ``save``) and the final membrane. ``h = v + (x - v) / tau`` (PLIF: ``* k``) in that float order."""
    spikes = _empty_sequence(x, v.dtype)
    hs = _empty_sequence(x, v.dtype) if save else x.new_empty(0, dtype=v.dtype)
    for t in range(x.shape[0]):
        h = torch.sub(x[t], v, out=hs[t]) if save else x[t] - v
        h = h.mul_(k) if k is not None else h.div_(tau)
        h = h.add_(v)
        fired = torch.ge(h, THRESHOLD, out=spikes[t])
        v = torch.addcmul(h, h, fired, value=-1.0) if save else h.addcmul_(h, fired, value=-1.0)  # h - h*s: exact
    return spikes, hs, v


def _backward_loop(
    grad_s: Tensor, grad_v: Tensor, hs: Tensor, x: Tensor, v0: Tensor, tau: float, k: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """BPTT through :func:`_forward_loop`. Returns grads w.r.t. ``x`` (state dtype), ``v0`` and ``k``.

    The float operations mirror autograd on the forward's expressions (``v + (x - v) / tau``,
    SpikingJelly's ``1.0 / (1 + (pi * u)^2) * grad``), so results equal autograd bit for bit.
    """
    gx = torch.empty_like(hs)
    gk = torch.zeros((), dtype=hs.dtype, device=hs.device) if k is not None else None
    for t in range(hs.shape[0] - 1, -1, -1):
        h = hs[t]
        silent = h < THRESHOLD
        gh = (h - THRESHOLD).mul_(math.pi).pow_(2).add_(1).reciprocal_().mul_(grad_s[t])
        gh = gh.addcmul_(grad_v, silent)
        if k is None:
            gxt = torch.div(gh, tau, out=gx[t])
        else:
            gxt = torch.mul(gh, k, out=gx[t])
            v_prev = hs[t - 1] * (hs[t - 1] < THRESHOLD) if t > 0 else v0
            assert gk is not None  # a tensor whenever k is
            gk = gk + (gh * (x[t] - v_prev)).sum()
        grad_v = gh.sub_(gxt)
    return gx, grad_v, gk


def _loops() -> tuple[Callable[..., Any], Callable[..., Any]]:
    if not _use_compile:
        return _forward_loop, _backward_loop
    if not _compiled:
        _compiled["fwd"] = torch.compile(_forward_loop, dynamic=True)
        _compiled["bwd"] = torch.compile(_backward_loop, dynamic=True)
    return _compiled["fwd"], _compiled["bwd"]


def use_compile(enabled: bool) -> None:
    """Run the time loops through ``torch.compile`` (process-wide; off by default, see the benchmark)."""
    global _use_compile
    _use_compile = bool(enabled)


class _LIFFunction(torch.autograd.Function):
    """``(x[T, ...], v0 | None, w | None) -> (spikes[T, ...], v_final)`` with BPTT in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor | None, w: Tensor | None, tau: float):  # type: ignore[override]
        dtype = _state_dtype(x.dtype)
        k = torch.sigmoid(w.to(dtype)) if w is not None else None
        save = any(ctx.needs_input_grad[:3])
        fused = kernels.lif_forward(x, v0, tau, save) if k is None and not _use_compile else None
        if fused is not None:  # v0 is needed in backward by PLIF only, which never runs fused
            (spikes, hs, v_final), v = fused, None
        else:
            v = torch.zeros_like(x[0], dtype=dtype) if v0 is None else v0.to(dtype)
            spikes, hs, v_final = _loops()[0](x, v, tau, k, save)
        if save:
            ctx.save_for_backward(hs, x if w is not None else None, v, k)
        ctx.tau = tau
        ctx.x_dtype, ctx.has_v0 = x.dtype, v0 is not None
        return spikes.to(x.dtype), v_final

    @staticmethod
    def backward(ctx, grad_s: Tensor, grad_v: Tensor | None):  # type: ignore[override]
        hs, x, v0, k = ctx.saved_tensors
        fused = kernels.lif_backward(grad_s, grad_v, hs, ctx.tau) if k is None and not _use_compile else None
        if fused is not None:
            (gx, gv0), gk = fused, None
        else:
            grad_v = torch.zeros_like(hs[0]) if grad_v is None else grad_v.to(hs.dtype)
            gx, gv0, gk = _loops()[1](grad_s, grad_v, hs, x, v0, ctx.tau, k)
        gw = gk * k * (1 - k) if gk is not None else None
        return gx.to(ctx.x_dtype), (gv0 if ctx.has_v0 else None), gw, None


class LIF(nn.Module):
    """Multi-step LIF layer: ``forward(x[T, B, ...]) -> spikes[T, B, ...]`` (0/1, ``x``'s dtype).

    ``learnable_tau``: PLIF (Fang et al. 2021), ``tau = 1 / sigmoid(w)`` with one scalar ``w`` per
    layer, initialised so that ``tau = 4/3``.
    """

    def __init__(self, tau: float = TAU, learnable_tau: bool = False) -> None:
        super().__init__()
        if not tau > 1.0:
            raise ValueError(f"tau: must be > 1, got {tau}")
        self.tau = float(tau)
        self.learnable_tau = learnable_tau
        self.w = nn.Parameter(torch.tensor(-math.log(tau - 1.0))) if learnable_tau else None
        self._carry = False
        self._v: Tensor | None = None
        self._persist = False
        self._last: Tensor | None = None  # the membrane after the last call, kept under persist_state
        self._memo: _Memo | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF input must be [T, B, ...], got shape {tuple(x.shape)}")
        memo = self._memo
        if memo is not None and memo.input is x:
            spikes, v = memo.output  # type: ignore[misc]
        else:
            v0 = self._v if self._carry else (self._last if self._persist else None)
            spikes, v = _LIFFunction.apply(x, v0, self.w, self.tau)
            if memo is not None:
                memo.input, memo.output = x, (spikes, v)
        if self._carry:
            self._v = v
        if self._persist:
            self._last = v
        return spikes

    def current_tau(self) -> float:
        """The time constant in use (``1 / sigmoid(w)`` for PLIF)."""
        return float(1.0 / torch.sigmoid(self.w.detach())) if self.w is not None else self.tau

    def extra_repr(self) -> str:
        return f"tau={self.current_tau():.4f}, threshold={THRESHOLD}, learnable_tau={self.learnable_tau}"


class _Memo:
    """The last input and result of a group of LIF layers that see identical inputs."""

    __slots__ = ("input", "output")

    def __init__(self) -> None:
        self.input: Tensor | None = None
        self.output: tuple[Tensor, Tensor] | None = None


@contextmanager
def share_spikes(groups: Iterable[Iterable[LIF]]) -> Iterator[None]:
    """Within this context, the LIF layers of a group that are called with the very same input tensor
    object compute it once and all return that result (hooks still fire on every layer).

    Valid only for layers whose input histories are identical (the cell's edges leaving one node)
    and whose time constants are equal and fixed; layers with a learnable tau are never shared.
    The result equals separate evaluation: each layer's state is a function of its inputs alone.
    """
    members = []
    for group in groups:
        fixed = [n for n in group if n.w is None]
        if len(fixed) > 1 and len({n.tau for n in fixed}) == 1:
            memo = _Memo()
            for n in fixed:
                n._memo = memo
            members += fixed
    try:
        yield
    finally:
        for n in members:
            n._memo = None


@contextmanager
def carry_state(neurons: Iterable[LIF]) -> Iterator[None]:
    """Within this context each neuron's membrane carries over between calls (starting at 0).

    Used by cells that step through time; the state is dropped on exit, even on error.
    """
    neurons = list(neurons)
    for n in neurons:
        n._carry, n._v = True, (n._last if n._persist else None)
    try:
        yield
    finally:
        for n in neurons:
            n._carry, n._v = False, None


@contextmanager
def persist_state(neurons: Iterable[LIF]) -> Iterator[None]:
    """Within this context every call of each neuron starts from the membrane its previous call ended with (the
    first from 0), also across forward passes; a :func:`carry_state` entered inside starts from it too. The state
    is dropped on exit, even on error. Successive calls must have the same shape (batch and neurons)."""
    neurons = list(neurons)
    for n in neurons:
        n._persist, n._last = True, None
    try:
        yield
    finally:
        for n in neurons:
            n._persist, n._last = False, None
