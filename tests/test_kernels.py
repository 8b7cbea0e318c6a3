"""The fused CPU loops (snnbench.kernels) against the torch loops and native kernels they replace, and the layout
pooling layer of the network (AvgPool2d) against the plain torch calls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from snnbench import kernels, neuron
from snnbench.network import AvgPool2d, TimeBatchNorm2d, build_network, network_config
from snnbench.space import Cell

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


@pytest.fixture
def unfused():
    """Run the block with the fused loops off (restored afterwards)."""
    previous = kernels.use(False)
    yield
    kernels.use(previous)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    t, b = x.shape[:2]
    return x.reshape(t * b, *x.shape[2:]).contiguous(memory_format=torch.channels_last).view(x.shape)


def _layouts(dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 9, 4, 5, 3, generator=g, dtype=dtype) * 1.5 + 0.8
    step = torch.randn(9, 4, 5, 3, generator=g, dtype=dtype) * 1.5 + 0.8
    return {
        "contiguous": x,
        "channels-last": _channels_last(x),
        "broadcast step": step.contiguous(memory_format=torch.channels_last).unsqueeze(0).expand(6, *step.shape),
        "one step": x[:1],
        "flat": x.reshape(6, 9, 60),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels-last", "broadcast step", "one step", "flat"])
@pytest.mark.parametrize("carried", [False, True])
def test_lif_loops_equal_the_torch_loops_bit_for_bit(dtype, layout, carried):
    x = _layouts(dtype)[layout]
    v0 = (torch.rand_like(x[0]) * 0.9).contiguous() if carried else None
    for save in (False, True):
        fused = kernels.lif_forward(x, v0, 4 / 3, save)
        assert fused is not None  # these layouts run fused
        spikes, hs, v = neuron._forward_loop(x, torch.zeros_like(x[0]) if v0 is None else v0, 4 / 3, None, save)
        assert 0 < spikes.sum() < spikes.numel()
        assert torch.equal(fused[0], spikes) and torch.equal(fused[2], v)
        assert fused[0].stride() == spikes.stride()  # the torch loop's output layout
        if save:
            assert torch.equal(fused[1], hs)
    g = torch.Generator().manual_seed(1)
    grad_s = torch.randn(hs.shape, generator=g, dtype=dtype)
    for grad_v in (None, torch.randn(hs[0].shape, generator=g, dtype=dtype)):
        for grad in (grad_s, grad_s.contiguous()):  # a gradient in another layout than the membranes
            gx, gv = kernels.lif_backward(grad, grad_v, hs, 4 / 3)  # type: ignore[misc]
            ref_gx, ref_gv, _ = neuron._backward_loop(grad, torch.zeros_like(hs[0]) if grad_v is None else grad_v, hs,
                                                      x, torch.zeros_like(x[0]), 4 / 3, None)
            assert torch.equal(gx, ref_gx) and torch.equal(gv, ref_gv)


def test_lif_layer_gives_the_same_spikes_and_gradients_fused_or_not():
    x = _channels_last(torch.randn(5, 8, 3, 4, 4, dtype=torch.float64) * 1.5 + 0.8).requires_grad_()
    up = torch.randn_like(x)
    results = []
    for enabled in (True, False):
        previous = kernels.use(enabled)
        try:
            s = neuron.LIF()(x)
            results.append((s, torch.autograd.grad(s, x, up)[0]))
        finally:
            kernels.use(previous)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_lif_loops_decline_what_they_do_not_cover(unfused):
    x = torch.randn(4, 3, 5)
    assert kernels.lif_forward(x, None, 4 / 3, True) is None  # switched off
    kernels.use(True)
    assert kernels.lif_forward(x.bfloat16(), None, 4 / 3, True) is None  # only float32 / float64
    assert kernels.lif_forward(x[:, :, ::2], None, 4 / 3, True) is None  # a step that is not dense
    assert kernels.lif_forward(torch.randn(4, 6, 5)[::2], None, 4 / 3, True) is None  # steps not evenly stored
    assert kernels.lif_forward(x, torch.zeros(3, 5, dtype=torch.float64), 4 / 3, True) is None  # another state dtype


def _bn_pair(channels: int, dtype: torch.dtype, momentum: float | None = 0.1):
    fused, ref = TimeBatchNorm2d(channels, momentum=momentum).to(dtype), TimeBatchNorm2d(channels, momentum=momentum).to(dtype)
    with torch.no_grad():
        fused.weight.uniform_(0.5, 1.5), fused.bias.uniform_(-1, 1)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_time_batchnorm_fused_equals_the_native_kernel_step_by_step(momentum, dtype, tol):
    """Float64: equal up to rounding; float32: the fused statistics (float64 sums) differ from the native ones by
    float32 rounding only."""
    x = _channels_last(torch.randn(4, 10, 3, 5, 5, dtype=dtype) * 3 + 1).requires_grad_()
    fused, ref = _bn_pair(3, dtype, momentum)
    assert kernels.bn_applies(x, fused.weight, fused.bias)
    up = torch.randn_like(x)
    y = fused(x)
    grads = torch.autograd.grad(y, [x, fused.weight, fused.bias], up)
    steps = [F.batch_norm(x[t], ref.running_mean, ref.running_var, ref.weight, ref.bias, True,
                          ref.momentum if momentum is not None else 1.0 / (t + 1), ref.eps) for t in range(4)]
    expected = torch.stack(steps)  # the native kernel, one step at a time, running statistics in step order
    ref_grads = torch.autograd.grad(expected, [x, ref.weight, ref.bias], up)
    torch.testing.assert_close(y, expected, rtol=tol / 10, atol=tol / 10)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    torch.testing.assert_close(fused.running_mean, ref.running_mean, rtol=tol / 10, atol=tol / 1000)
    torch.testing.assert_close(fused.running_var, ref.running_var, rtol=tol / 10, atol=tol / 1000)
    assert int(fused.num_batches_tracked) == 4
    assert y.stride() == x.stride()


def test_time_batchnorm_runs_fused_only_on_channels_last_sequences():
    bn = TimeBatchNorm2d(3)
    x = torch.randn(4, 10, 3, 5, 5, requires_grad=True)
    assert kernels.bn_applies(_channels_last(x.detach()), bn.weight, bn.bias)
    assert not kernels.bn_applies(x, bn.weight, bn.bias)  # contiguous: the native kernel per step
    assert not kernels.bn_applies(_channels_last(x.detach())[:1], bn.weight, bn.bias)  # one step: native is faster
    fused, ref = _bn_pair(3, torch.float32)
    with torch.no_grad():
        assert torch.equal(fused(x), ref(x))  # same path either way without gradients


@pytest.mark.parametrize("k", [1, 2])
def test_avg_pool_equals_the_native_pool_with_a_gradient_in_any_layout(k):
    x = torch.randn(6, 3, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    pool = AvgPool2d(k)
    y, want = pool(x), F.avg_pool2d(x, k, k)
    assert torch.equal(y, want)
    if k == 1:
        assert y is x
        return
    for up in (torch.randn(want.shape), torch.randn(want.shape).contiguous(memory_format=torch.channels_last)):
        (g,) = torch.autograd.grad(y, x, up, retain_graph=True)
        (ref,) = torch.autograd.grad(want, x, up, retain_graph=True)
        assert torch.equal(g, ref)


@pytest.mark.parametrize("cell", ["0302 0030 3003 0000", "0303 0033 0003 0000"])
def test_a_training_step_is_the_same_with_the_fused_loops_on_or_off(cell):
    """Float64 bench network: loss and every gradient agree (batch-norm statistics differ by rounding only)."""
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    results = []
    for enabled in (True, False):
        previous = kernels.use(enabled)
        try:
            torch.manual_seed(3)
            model = build_network(Cell(cell), network_config("digits", "bench")).double().train()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
        finally:
            kernels.use(previous)
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
