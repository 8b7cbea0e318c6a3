"""Naive reference pieces shared by the tests (written from the SPEC, independently of ``snnbench``)."""

from __future__ import annotations

import math

import torch


class ATanSpike(torch.autograd.Function):
    """Heaviside forward; SPEC surrogate ``1 / (1 + (pi u)^2)`` backward."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return 1.0 / (1 + (math.pi * u).pow(2)) * grad  # the order snnbench.neuron uses: bit-equal gradients
