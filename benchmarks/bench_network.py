"""Speed of the SNASNet implementation, measured side by side in one run (ratios, not absolute claims).

    python benchmarks/bench_network.py                      # CPU, 1 thread, a few minutes at most
    python benchmarks/bench_network.py --device cuda        # GPU (< ~60 s on an H100)
    python benchmarks/bench_network.py --no-compile         # skip torch.compile (slow to compile on CPU)

Sections (each timing is the median of ``--repeats`` runs after one warm-up):
1. scoring path: no-grad forward of the digits ``bench`` net at batch 128, T = 5, over seeded forward
   cells, plus construction time (the table builder's inner loop on CPU);
2. forward + backward of one batch: ``paper`` and ``bench`` skeletons;
3. multi-step vs step-by-step: a forward cell through its layer-by-layer path vs the step-through-time
   path; the multi-step LIF vs a naive per-step autograd LIF;
4. eager vs ``torch.compile`` (LIF time loops), channels-last vs plain layout, bf16 autocast (CUDA).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch

from snnbench import neuron
from snnbench.network import build_network, network_config
from snnbench.space import Cell, sample_cells

PUBLISHED = "0302 0030 3003 0000"
FORWARD = "0323 0043 0003 0000"  # a forward cell with four conv edges


def timer(device: torch.device, repeats: int) -> Callable[[Callable[[], object]], float]:
    def measure(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    return measure


def row(label: str, ms: float, ref: float | None = None, note: str = "") -> None:
    """Print a timing; with ``ref``, also this time divided by the reference time (< 1: faster)."""
    ratio = f"{ms / ref:6.2f} of ref" if ref else " " * 13
    print(f"  {label:60} {ms:10.2f} ms {ratio}  {note}")


def fwd_bwd(model: torch.nn.Module, x: torch.Tensor, amp: bool = False) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        out.float().logsumexp(1).sum().backward()

    return run


def naive_lif(x: torch.Tensor) -> torch.Tensor:
    """Per-step autograd LIF (the usual way of writing it) for comparison."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / neuron.TAU
        s = (h >= 1).to(x.dtype)
        sg = torch.atan(math.pi * (h - 1)) / math.pi + 0.5
        s = s + sg - sg.detach()
        out.append(s)
        v = h * (1 - s.detach())
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cells", type=int, default=20, help="forward cells for the scoring-path timing")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if not cuda:
        torch.set_num_threads(args.threads)
    measure = timer(dev, args.repeats)
    g = torch.Generator().manual_seed(0)
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if cuda else f'{torch.get_num_threads()} thread(s)'}), torch {torch.__version__}")

    # 1. scoring path -------------------------------------------------------------------------
    print("1. scoring path: digits bench, batch 128, T = 5, no grad, train-mode BN")
    cfg = network_config("digits", "bench")
    x = torch.randn(128, 1, 8, 8, generator=g).to(dev)
    build_ms, fwd_ms = [], []
    for cell in sample_cells(args.cells, "forward", seed=0):
        t0 = time.perf_counter()
        net = build_network(cell, cfg).to(dev)
        build_ms.append((time.perf_counter() - t0) * 1e3)
        with torch.no_grad():
            fwd_ms.append(measure(lambda: net(x)))
    row(f"build, mean of {args.cells} sampled forward cells", statistics.mean(build_ms))
    row(f"forward, mean of {args.cells} sampled forward cells", statistics.mean(fwd_ms), note=f"max {max(fwd_ms):.1f} ms")
    with torch.no_grad():
        net = build_network(Cell(FORWARD), cfg).to(dev)
        base = measure(lambda: net(x))
        row(f"forward {FORWARD} (channels-last, default)", base, base)
        plain = build_network(Cell(FORWARD), cfg, channels_last=False).to(dev)
        row(f"forward {FORWARD} (plain NCHW layout)", measure(lambda: plain(x)), base)

    # 2. forward + backward -------------------------------------------------------------------
    print("2. forward + backward of one batch (train mode)")
    cases = [("digits", "bench", 128), ("cifar10", "bench", 64 if cuda else 16), ("cifar100", "paper", 64 if cuda else 1),
             ("cifar10", "paper", 64 if cuda else 1)]
    for dataset, preset, batch in cases:
        c = network_config(dataset, preset)
        xb = torch.randn(batch, c.in_channels, c.image_size, c.image_size, generator=g).to(dev)
        timed = measure if preset == "bench" or cuda else timer(dev, min(args.repeats, 2))
        for matrix in (FORWARD, PUBLISHED):
            net = build_network(Cell(matrix), c).to(dev).train()
            t = timed(fwd_bwd(net, xb))
            note = ""
            if cuda:
                note = f"bf16 autocast: {measure(fwd_bwd(net, xb, amp=True)) / t:.2f} of this time"
            row(f"{dataset}/{preset} batch {batch} {matrix} ({Cell(matrix).kind})", t, note=note)
            del net

    # 3. multi-step vs step-by-step -----------------------------------------------------------
    print("3. multi-step vs step-by-step (ref = the multi-step row above each pair)")
    c = network_config("cifar10", "bench")
    xb = torch.randn(64 if cuda else 16, 3, 32, 32, generator=g).to(dev)
    net = build_network(Cell(FORWARD), c).to(dev).train()
    multi = measure(fwd_bwd(net, xb))
    row(f"cifar10/bench {FORWARD}: cells layer by layer over T", multi)
    net.cell1.step_through_time = net.cell2.step_through_time = True
    row(f"cifar10/bench {FORWARD}: cells stepping through time", measure(fwd_bwd(net, xb)), multi)
    bwd = build_network(Cell(PUBLISHED), c).to(dev).train()
    hybrid = measure(fwd_bwd(bwd, xb))
    row(f"cifar10/bench {PUBLISHED}: cycle 0-1-2 stepped, rest over T", hybrid)
    bwd.cell1.step_through_time = bwd.cell2.step_through_time = True
    row(f"cifar10/bench {PUBLISHED}: every node stepping through time", measure(fwd_bwd(bwd, xb)), hybrid)
    del bwd
    xl = (torch.randn(5, 64, 128, 16, 16, generator=g) + 0.5).to(dev).requires_grad_()
    up = torch.randn(xl.shape, generator=g).to(dev)
    lif = neuron.LIF()
    lif_ms = measure(lambda: torch.autograd.grad(lif(xl), xl, up))
    row("LIF fwd+bwd [5, 64, 128, 16, 16], multi-step BPTT function", lif_ms)
    row("LIF fwd+bwd, naive per-step autograd", measure(lambda: torch.autograd.grad(naive_lif(xl), xl, up)), lif_ms)
    with torch.no_grad():
        lif_nograd = measure(lambda: lif(xl))
        row("LIF forward only, no grad", lif_nograd)

    # 4. eager vs compiled --------------------------------------------------------------------
    if not args.no_compile:
        print("4. eager vs torch.compile of the LIF time loops (ref = the eager row in section 3)")
        neuron.use_compile(True)
        try:
            t0 = time.perf_counter()
            torch.autograd.grad(lif(xl), xl, up)
            print(f"  first compiled call (compilation): {time.perf_counter() - t0:.1f} s")
            row("LIF fwd+bwd, compiled", measure(lambda: torch.autograd.grad(lif(xl), xl, up)), lif_ms)
            with torch.no_grad():
                row("LIF forward only, no grad, compiled", measure(lambda: lif(xl)), lif_nograd)
            net.cell1.step_through_time = net.cell2.step_through_time = False
            t0 = time.perf_counter()
            fwd_bwd(net, xb)()
            print(f"  first compiled network call (more shapes): {time.perf_counter() - t0:.1f} s")
            row(f"cifar10/bench {FORWARD} fwd+bwd, compiled LIF loops", measure(fwd_bwd(net, xb)), multi)
        finally:
            neuron.use_compile(False)


if __name__ == "__main__":
    main()
