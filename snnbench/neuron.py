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
  neuron's membrane from one call to the next (cleared again on exit).
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
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

TAU = 4.0 / 3.0
THRESHOLD = 1.0

_compiled: dict[str, Callable[..., tuple[Tensor, ...]]] = {}
_use_compile = False


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _charge(v: Tensor, x: Tensor, tau: float, k: Tensor | None) -> Tensor:
    return v + (x - v) * k if k is not None else v + (x - v) / tau


def _forward_loop(x: Tensor, v: Tensor, tau: float, k: Tensor | None, save: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Run all steps. Returns spikes (state dtype), the pre-reset membranes ``h`` (empty unless
    ``save``) and the final membrane."""
    spikes = torch.empty(x.shape, dtype=v.dtype, device=x.device)
    hs = torch.empty(x.shape if save else (0,), dtype=v.dtype, device=x.device)
    for t in range(x.shape[0]):
        h = _charge(v, x[t].to(v.dtype), tau, k)
        fired = h >= THRESHOLD
        spikes[t] = fired
        if save:
            hs[t] = h
        v = h.masked_fill(fired, 0.0)
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
        fired = h >= THRESHOLD
        gh = 1.0 / (1 + (math.pi * (h - THRESHOLD)).pow(2)) * grad_s[t].to(h.dtype)
        gh = gh + grad_v.masked_fill(fired, 0.0)
        if k is None:
            gxt = gh / tau
        else:
            gxt = gh * k
            v_prev = hs[t - 1].masked_fill(hs[t - 1] >= THRESHOLD, 0.0) if t > 0 else v0
            gk = gk + (gh * (x[t].to(h.dtype) - v_prev)).sum()
        gx[t] = gxt
        grad_v = gh - gxt
    return gx, grad_v, gk


def _loops() -> tuple[Callable[..., tuple[Tensor, ...]], Callable[..., tuple[Tensor, ...]]]:
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
        v = torch.zeros(x.shape[1:], dtype=dtype, device=x.device) if v0 is None else v0.to(dtype)
        k = torch.sigmoid(w.to(dtype)) if w is not None else None
        save = any(ctx.needs_input_grad[:3])
        fwd, _ = _loops()
        spikes, hs, v_final = fwd(x, v, tau, k, save)
        if save:
            ctx.save_for_backward(hs, x if w is not None else None, v, k)
        ctx.tau = tau
        ctx.x_dtype, ctx.has_v0 = x.dtype, v0 is not None
        return spikes.to(x.dtype), v_final

    @staticmethod
    def backward(ctx, grad_s: Tensor, grad_v: Tensor | None):  # type: ignore[override]
        hs, x, v0, k = ctx.saved_tensors
        if grad_v is None:
            grad_v = torch.zeros_like(hs[0])
        _, bwd = _loops()
        gx, gv0, gk = bwd(grad_s, grad_v.to(hs.dtype), hs, x, v0, ctx.tau, k)
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

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF input must be [T, B, ...], got shape {tuple(x.shape)}")
        spikes, v = _LIFFunction.apply(x, self._v if self._carry else None, self.w, self.tau)
        if self._carry:
            self._v = v
        return spikes

    def current_tau(self) -> float:
        """The time constant in use (``1 / sigmoid(w)`` for PLIF)."""
        return float(1.0 / torch.sigmoid(self.w.detach())) if self.w is not None else self.tau

    def extra_repr(self) -> str:
        return f"tau={self.current_tau():.4f}, threshold={THRESHOLD}, learnable_tau={self.learnable_tau}"


@contextmanager
def carry_state(neurons: Iterable[LIF]) -> Iterator[None]:
    """Within this context each neuron's membrane carries over between calls (starting at 0).

    Used by cells that step through time; the state is dropped on exit, even on error.
    """
    neurons = list(neurons)
    for n in neurons:
        n._carry, n._v = True, None
    try:
        yield
    finally:
        for n in neurons:
            n._carry, n._v = False, None
