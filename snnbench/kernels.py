"""Fused CPU loops (numba) for the LIF neuron's time loops: one pass over memory per time step instead of one
per tensor operation.

Invariants
----------
* Each kernel performs, element by element, the very float operations of the torch loops in
  :mod:`snnbench.neuron` in the same order and precision (float32 stays float32: every constant enters
  as a value of the array's dtype), so spikes, membranes and gradients are bit for bit those of the torch
  loops (``tests/test_kernels.py``).
* Used only where the result is known to be identical: CPU tensors of float32 or float64 whose time steps
  all have one dense memory layout (channels-last included), a fixed time constant. Anything else (CUDA,
  PLIF, odd strides) returns ``None`` and the caller runs its torch loop.
* Optional: without numba, or after ``use(False)`` (the baseline of ``benchmarks/bench_training.py``),
  every call returns ``None``. Compiled code is cached on disk where numba can write its cache.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

numba: Any
try:  # optional: the torch loops are the fallback
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent (e.g. the GPU machine)
    numba = None

_enabled = numba is not None and os.environ.get("SNNBENCH_KERNELS", "1") != "0"


def available() -> bool:
    """True when the fused loops are installed and switched on."""
    return _enabled


def describe() -> str:
    """The loops in use, for a build's environment record: ``"fused (numba X.Y)"`` or ``"torch"``."""
    return f"fused (numba {numba.__version__})" if _enabled else "torch"


def use(enabled: bool) -> bool:
    """Switch the fused loops on or off (process-wide); returns the previous setting. On needs numba."""
    global _enabled
    previous = _enabled
    _enabled = bool(enabled) and numba is not None
    return previous


@functools.lru_cache(maxsize=1024)
def _dense(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Whether a tensor of this shape and stride covers one dense block of memory (any order of dimensions)."""
    expected = 1
    for size, step in sorted(zip(shape, stride), key=lambda d: d[1]):
        if size != 1 and step != expected:
            return False
        expected *= size
    return True


def _rows(t: Tensor, steps: int) -> np.ndarray | None:
    """``t[T', ...]`` as a numpy ``[T', N]`` array over the same memory (``T' = 1`` for a step broadcast over time),
    each step one dense block; ``None`` if a step is not dense or ``T'`` is neither 1 nor ``steps``."""
    shape, stride = tuple(t.shape), t.stride()
    n = math.prod(shape[1:])
    if not _dense(shape[1:], stride[1:]):
        return None
    rows = 1 if shape[0] == 1 or stride[0] == 0 else shape[0]
    if rows not in (1, steps) or rows > 1 and stride[0] != n:
        return None
    return t.detach().as_strided((rows, n), (n, 1)).numpy()


def _same_layout(*tensors: Tensor) -> bool:
    first = tensors[0]
    return all(t.shape[1:] == first.shape[1:] and t.stride()[1:] == first.stride()[1:] for t in tensors[1:])


def _fits(*tensors: Tensor) -> bool:
    return _enabled and all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)

    # One step per call of a row kernel: 1-D rows let LLVM vectorise the loop (a 2-D loop nest was 2x slower).

    @_jit
    def _lif_forward_row(x: Any, v: Any, spikes: Any, hs: Any, save: bool, tau: Any, one: Any, zero: Any) -> None:  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            vi = v[i]
            h = (x[i] - vi) / tau + vi  # x - v, / tau, + v: the torch loop's order
            if save:
                hs[i] = h
            fired = one if h >= one else zero
            spikes[i] = fired
            v[i] = h + (-h) * fired  # addcmul(h, h, fired, value=-1)

    @_jit
    def _lif_forward(x: Any, v: Any, spikes: Any, hs: Any, save: bool, tau: Any, one: Any, zero: Any) -> None:  # pragma: no cover - compiled
        for t in range(spikes.shape[0]):
            _lif_forward_row(x[0 if x.shape[0] == 1 else t], v, spikes[t], hs[t] if save else hs[0], save, tau, one, zero)

    @_jit
    def _lif_backward_row(grad_s: Any, grad_v: Any, hs: Any, gx: Any, tau: Any, one: Any, zero: Any, pi: Any) -> None:  # pragma: no cover - compiled
        for i in range(hs.shape[0]):
            h = hs[i]
            u = (h - one) * pi
            gh = one / (u * u + one) * grad_s[i]  # SpikingJelly's ATan surrogate times the incoming gradient
            gh = gh + grad_v[i] * (one if h < one else zero)
            g = gh / tau
            gx[i] = g
            grad_v[i] = gh - g

    @_jit
    def _lif_backward(grad_s: Any, grad_v: Any, hs: Any, gx: Any, tau: Any, one: Any, zero: Any, pi: Any) -> None:  # pragma: no cover - compiled
        for t in range(hs.shape[0] - 1, -1, -1):
            _lif_backward_row(grad_s[t], grad_v, hs[t], gx[t], tau, one, zero, pi)


    @_jit
    def _bn_forward(x: Any, weight: Any, bias: Any, eps: float, y: Any, mean: Any, invstd: Any, var: Any) -> None:  # pragma: no cover - compiled
        steps, m, c = x.shape
        acc = np.zeros(c, dtype=np.float64)
        for t in range(steps):
            acc[:] = 0.0
            for i in range(m):
                for k in range(c):
                    acc[k] += x[t, i, k]
            for k in range(c):
                mean[t, k] = acc[k] / m
            acc[:] = 0.0
            for i in range(m):  # two-pass variance
                for k in range(c):
                    d = x[t, i, k] - mean[t, k]
                    acc[k] += d * d
            for k in range(c):
                var[t, k] = acc[k] / m
                invstd[t, k] = 1.0 / np.sqrt(var[t, k] + eps)
            scale = (weight * invstd[t]).astype(x.dtype)  # x * scale + shift, as the native CPU kernel
            shift = (bias - mean[t] * weight * invstd[t]).astype(x.dtype)
            for i in range(m):
                for k in range(c):
                    y[t, i, k] = x[t, i, k] * scale[k] + shift[k]

    @_jit
    def _bn_backward(grad: Any, x: Any, weight: Any, mean: Any, invstd: Any, gx: Any, gw: Any, gb: Any) -> None:  # pragma: no cover - compiled
        steps, m, c = x.shape
        sum_g = np.zeros(c, dtype=np.float64)
        dot = np.zeros(c, dtype=np.float64)
        for t in range(steps):
            sum_g[:] = 0.0
            dot[:] = 0.0
            for i in range(m):
                for k in range(c):
                    g = grad[t, i, k]
                    sum_g[k] += g
                    dot[k] += g * (x[t, i, k] - mean[t, k])
            for k in range(c):
                gw[k] += dot[k] * invstd[t, k]
                gb[k] += sum_g[k]
            # native formula: (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x - mean))) * invstd * weight
            proj = (dot / m * invstd[t] * invstd[t]).astype(x.dtype)
            mean_g = (sum_g / m).astype(x.dtype)
            scale = (invstd[t] * weight).astype(x.dtype)
            mu = mean[t].astype(x.dtype)
            for i in range(m):
                for k in range(c):
                    gx[t, i, k] = (grad[t, i, k] - mean_g[k] - (x[t, i, k] - mu[k]) * proj[k]) * scale[k]


def _constants(dtype: torch.dtype, *values: float) -> list[Any]:
    np_type = np.float64 if dtype == torch.float64 else np.float32
    return [np_type(v) for v in values]


def lif_forward(x: Tensor, v0: Tensor | None, tau: float, save: bool) -> tuple[Tensor, Tensor, Tensor] | None:
    """The fused form of ``neuron._forward_loop`` for a fixed ``tau`` and a float32/float64 ``x``, from the membrane
    ``v0`` (``None``: zeros; not modified): spikes, the pre-reset membranes (an empty tensor unless ``save``) and the
    final membrane, in ``x``'s dtype and step layout; or ``None`` where it does not apply."""
    if not _fits(x) or v0 is not None and (v0.dtype != x.dtype or v0.device != x.device):
        return None
    from snnbench.neuron import _empty_sequence  # the layout the torch loop gives its outputs

    spikes = _empty_sequence(x, x.dtype)
    hs = _empty_sequence(x, x.dtype) if save else spikes[:1]  # unused rows when not saving
    v = torch.zeros_like(spikes[0]) if v0 is None else torch.empty_like(spikes[0]).copy_(v0)
    if not _same_layout(x, spikes, v.unsqueeze(0)):
        return None
    x_rows, s_rows, h_rows, v_rows = (_rows(x, x.shape[0]), _rows(spikes, x.shape[0]), _rows(hs, x.shape[0]),
                                      _rows(v.unsqueeze(0), 1))
    if x_rows is None or s_rows is None or h_rows is None or v_rows is None:
        return None
    _lif_forward(x_rows, v_rows[0], s_rows, h_rows, save, *_constants(x.dtype, tau, 1.0, 0.0))
    return spikes, (hs if save else x.new_empty(0)), v


def lif_backward(grad_s: Tensor, grad_v: Tensor | None, hs: Tensor, tau: float) -> tuple[Tensor, Tensor] | None:
    """The fused form of ``neuron._backward_loop`` for a fixed ``tau``: (grad of ``x``, grad of the initial
    membrane) from the spikes' and the final membrane's gradients (``None``: zeros), or ``None`` where it does not
    apply. The arguments are not modified."""
    if not _fits(grad_s, hs) or grad_s.dtype != hs.dtype:
        return None
    if not _same_layout(hs, grad_s):
        grad_s = torch.empty_like(hs).copy_(grad_s)  # one layout for every operand
    gv = torch.zeros_like(hs[0]) if grad_v is None else torch.empty_like(hs[0]).copy_(grad_v)
    gx = torch.empty_like(hs)
    if not _same_layout(hs, gx, gv.unsqueeze(0)):
        return None
    g_rows, v_rows, h_rows, x_rows = _rows(grad_s, hs.shape[0]), _rows(gv.unsqueeze(0), 1), _rows(hs, hs.shape[0]), _rows(gx, hs.shape[0])
    if g_rows is None or v_rows is None or h_rows is None or x_rows is None or g_rows.shape[0] != hs.shape[0]:
        return None
    _lif_backward(g_rows, v_rows[0], h_rows, x_rows, *_constants(hs.dtype, tau, 1.0, 0.0, math.pi))
    return gx, gv


def _channel_rows(t: Tensor) -> np.ndarray | None:
    """``t[T, B, C, H, W]`` stored channels-last per step (``[T][B][H][W][C]`` in memory) as a numpy
    ``[T, B * H * W, C]`` array over the same memory; ``None`` for any other layout."""
    if t.dim() != 5:
        return None
    steps, b, c, h, w = t.shape
    if t.stride() != (b * h * w * c, h * w * c, 1, w * c, c):
        return None
    return t.detach().as_strided((steps, b * h * w, c), (b * h * w * c, c, 1)).numpy()


def bn_applies(x: Tensor, weight: Tensor, bias: Tensor) -> bool:
    """Whether :func:`bn_forward` runs on these arguments: several steps (for one, the native kernel is faster)."""
    return (_fits(x, weight, bias) and x.dtype == weight.dtype == bias.dtype and x.dim() == 5 and x.shape[0] > 1
            and x.shape[1] * x.shape[3] * x.shape[4] > 1 and _channel_rows(x) is not None)


def bn_forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training-mode batch norm of every step of a channels-last ``x[T, B, C, H, W]`` with that step's statistics
    (where :func:`bn_applies`): ``(y, mean[T, C], invstd[T, C], var[T, C])`` (statistics in float64, biased variance).
    Equal to the native kernel step by step up to float rounding."""
    y = torch.empty_like(x)
    xr, yr = _channel_rows(x), _channel_rows(y)
    if xr is None or yr is None:
        raise ValueError("bn_forward: x must be channels-last per step (see bn_applies)")
    stats = torch.empty((3, x.shape[0], x.shape[2]), dtype=torch.float64)
    mean, invstd, var = stats.unbind(0)
    _bn_forward(xr, weight.detach().double().numpy(), bias.detach().double().numpy(), float(eps), yr, mean.numpy(),
                invstd.numpy(), var.numpy())
    return y, mean, invstd, var


def bn_backward(grad: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients ``(x, weight, bias)`` of :func:`bn_forward` (``grad`` in any layout)."""
    if grad.stride() != x.stride() or grad.dtype != x.dtype:
        grad = torch.empty_like(x).copy_(grad)
    gx = torch.empty_like(x)
    gr, xr, gxr = _channel_rows(grad), _channel_rows(x), _channel_rows(gx)
    assert gr is not None and xr is not None and gxr is not None  # x's layout, checked by bn_applies
    gw = np.zeros(x.shape[2], dtype=np.float64)
    gb = np.zeros(x.shape[2], dtype=np.float64)
    _bn_backward(gr, xr, weight.detach().double().numpy(), mean.numpy(), invstd.numpy(), gxr, gw, gb)
    return gx, torch.from_numpy(gw).to(weight.dtype), torch.from_numpy(gb).to(weight.dtype)
