"""The LIF neuron against a hand-computed trace, a naive step-by-step autograd loop and SpikingJelly."""

from __future__ import annotations

import pytest
import torch

from naive import ATanSpike
from snnbench.neuron import LIF, carry_state


def naive_lif(x: torch.Tensor, tau: float | torch.Tensor = 4 / 3, v: torch.Tensor | None = None):
    """SPEC section 3 LIF, one step at a time, differentiated by autograd. ``tau`` may be a tensor
    ``k = 1/tau`` multiplier when given as a tensor (PLIF)."""
    v = torch.zeros_like(x[0]) if v is None else v
    out = []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) * tau if isinstance(tau, torch.Tensor) else v + (x[t] - v) / tau
        s = ATanSpike.apply(h - 1.0)
        out.append(s)
        v = h * (1.0 - s.detach())
    return torch.stack(out), v


def _inputs(dtype=torch.float32, shape=(7, 16, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 1.5 + 0.8).requires_grad_()
    up = torch.randn(shape, generator=g, dtype=dtype)
    return x, up


def test_hand_computed_trace():
    # h0 = 0.75 * 1.2 = 0.9 (no spike); h1 = 0.9 + (0.5 - 0.9) * 0.75 = 0.6; h2 = 0.6 + 0.8 * 0.75 = 1.2 (spike);
    # h3 = 0 + 1.4 * 0.75 = 1.05 (spike right after the reset to 0)
    x = torch.tensor([1.2, 0.5, 1.4, 1.4], dtype=torch.float64).view(4, 1)
    assert LIF()(x).view(-1).tolist() == [0.0, 0.0, 1.0, 1.0]
    # constant input 1 approaches the threshold from below (v = 1 - 4^-t) and does not fire while
    # 1 - 4^-t is representable (in float32 v rounds up to exactly 1 after ~12 steps and fires)
    assert LIF()(torch.ones(10, 1, dtype=torch.float64)).sum().item() == 0
    # exactly at threshold fires (v >= 1)
    assert LIF()(torch.full((1, 1), 4 / 3 * 1.0, dtype=torch.float64)).item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_naive_autograd_bit_for_bit(dtype):
    x, up = _inputs(dtype)
    s_ref, _ = naive_lif(x)
    (g_ref,) = torch.autograd.grad(s_ref, x, up)
    s = LIF()(x)
    (g,) = torch.autograd.grad(s, x, up)
    assert s.dtype == dtype and s.shape == x.shape
    assert 0 < s.sum() < s.numel()
    assert torch.equal(s, s_ref)
    assert torch.equal(g, g_ref)  # max abs diff 0: same float operations, same order


def test_matches_spikingjelly():
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    for dtype in (torch.float32, torch.float64):
        x, up = _inputs(dtype, shape=(8, 32, 4, 4), seed=1)
        ref = sj_neuron.LIFNode(tau=4 / 3, surrogate_function=sj_surrogate.ATan(), detach_reset=True, step_mode="m")
        s_ref = ref(x)
        (g_ref,) = torch.autograd.grad(s_ref, x, up)
        s = LIF()(x)
        (g,) = torch.autograd.grad(s, x, up)
        assert torch.equal(s, s_ref)
        assert torch.equal(g, g_ref), f"max abs diff {(g - g_ref).abs().max().item()}"


def test_state_is_reset_every_call_and_batch_independent():
    x, _ = _inputs(shape=(6, 10, 8))
    lif = LIF()
    a = lif(x.detach())
    b = lif(x.detach())
    assert torch.equal(a, b)
    # each sample evolves on its own: running half the batch gives the same spikes for that half
    assert torch.equal(lif(x.detach()[:, :5]), a[:, :5])


def test_carried_state_equals_one_multi_step_call():
    x, up = _inputs(torch.float64, shape=(6, 8, 5))
    s_ref = LIF()(x)
    (g_ref,) = torch.autograd.grad(s_ref, x, up)
    lif = LIF()
    with carry_state([lif]):
        s = torch.cat([lif(x[t : t + 1]) for t in range(x.shape[0])])
    assert lif._v is None and not lif._carry  # dropped on exit
    (g,) = torch.autograd.grad(s, x, up)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-15)


def test_gradient_flows_into_initial_state():
    x, up = _inputs(torch.float64, shape=(5, 6, 4))
    v0 = (torch.rand(6, 4, dtype=torch.float64) * 0.9).requires_grad_()
    s_ref, _ = naive_lif(x, v=v0)
    g_ref = torch.autograd.grad(s_ref, (x, v0), up)
    from snnbench.neuron import _LIFFunction

    s, _ = _LIFFunction.apply(x, v0, None, 4 / 3)
    g = torch.autograd.grad(s, (x, v0), up)
    assert torch.equal(s, s_ref)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_plif_learnable_tau():
    lif = LIF(learnable_tau=True)
    assert lif.current_tau() == pytest.approx(4 / 3, abs=1e-6)  # float32 parameter
    x, up = _inputs(torch.float64, shape=(6, 12, 7), seed=3)
    lif = lif.double()
    s = lif(x)
    gx, gw = torch.autograd.grad(s, (x, lif.w), up)
    w = lif.w.detach().clone().requires_grad_()
    s_ref, _ = naive_lif(x, tau=torch.sigmoid(w))
    gx_ref, gw_ref = torch.autograd.grad(s_ref, (x, w), up)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-12, atol=1e-12)
    assert gw.abs() > 0
    # against SpikingJelly's PLIF (same init tau): same spikes and gradients up to float rounding
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    ref = sj_neuron.ParametricLIFNode(init_tau=4 / 3, surrogate_function=sj_surrogate.ATan(), detach_reset=True, step_mode="m").double()
    s_sj = ref(x)
    gx_sj, gw_sj = torch.autograd.grad(s_sj, (x, ref.w), up)
    assert torch.equal(s, s_sj)
    torch.testing.assert_close(gx, gx_sj, rtol=0, atol=1e-14)
    torch.testing.assert_close(gw, gw_sj.reshape(gw.shape), rtol=1e-12, atol=1e-12)


def test_low_precision_input_uses_float32_state():
    x, _ = _inputs(shape=(6, 20, 9), seed=4)
    xb = x.detach().bfloat16()
    s = LIF()(xb)
    assert s.dtype == torch.bfloat16
    # a bfloat16 state would round v + (x - v) / tau at every step; float32 state equals the float32 run
    assert torch.equal(s.float(), LIF()(xb.float()))
    xr = xb.float().requires_grad_()
    xb = xb.clone().requires_grad_()
    up = torch.randn(x.shape).bfloat16()
    (g,) = torch.autograd.grad(LIF()(xb), xb, up)
    (g_ref,) = torch.autograd.grad(LIF()(xr), xr, up.float())
    assert g.dtype == torch.bfloat16 and torch.equal(g, g_ref.bfloat16())


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        LIF()(torch.zeros(5))
    with pytest.raises(ValueError):
        LIF(tau=1.0)
