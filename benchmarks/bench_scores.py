"""Seconds per cell of every training-free metric, and the SAHD scorer against a release-style one.

Part 1 scores a few seeded forward cells with each metric alone (``score_cell``: build + batches +
metric) and with the table's default pair ``sahd,hd``. Part 2 times, on the same network, batch and
machine, (a) a plain forward pass, (b) :func:`snnbench.scores.score_network` (kernels accumulated on
the device, one ``[T, B, B]`` Gram per layer call) and (c) a straightforward implementation of the
same SPEC formula in the style of the authors' release: a hook per LIF call and time step that
builds the ``B x B`` kernel in float32 with two Gram products and copies it to a host numpy
accumulator, then ``np.linalg.slogdet``. It prints (c)/(b) and the ratio of the hook overheads
(c - a)/(b - a), and the score difference between (b) and (c).

    python benchmarks/bench_scores.py                         # CPU, bench skeleton, digits
    python benchmarks/bench_scores.py --device cuda --preset paper --dataset cifar10 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

from snnbench.data import load_dataset
from snnbench.network import build_network
from snnbench.scores import METRIC_ALIASES, METRICS, draw_batches, resolve_device, score_cell, score_network, spiking_layers
from snnbench.space import sample_cells
from snnbench.training import network_config_for


def release_style_sahd(model: torch.nn.Module, x: torch.Tensor) -> float:
    """SPEC section 5 computed the way the authors' release does: per call and step, a float32 kernel
    from ``x (1 - x)^T + (1 - x) x^T``, copied to a float64 numpy accumulator on the host."""
    batch = x.shape[0]
    acc: dict[str, Any] = {"K": np.zeros((batch, batch)), "calls": 0}

    def hook(_module: Any, _inp: Any, out: torch.Tensor) -> None:
        for t in range(out.shape[0]):
            codes = (out[t].reshape(batch, -1) > 0).float()
            neurons = codes.shape[1]
            full = torch.ones((batch, batch)).to(codes.device) * neurons  # as the release's .cuda()
            rate = (codes.sum(1) / neurons).unsqueeze(1)
            expected = neurons * (rate @ (1 - rate).t() + (1 - rate) @ rate.t())
            rescale = torch.div(0.5 * torch.ones((batch, batch)).to(codes.device), expected + 1e-3)
            k10 = codes @ (1 - codes.t())
            k01 = (1 - codes) @ codes.t()
            acc["K"] = acc["K"] + (full - rescale * (k01 + k10)).cpu().numpy()
            acc["calls"] += 1

    handles = [layer.register_forward_hook(hook) for layer in spiking_layers(model)]
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return float(np.linalg.slogdet(acc["K"] / acc["calls"])[1])


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` calls after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="bench", choices=("paper", "bench"))
    parser.add_argument("--dataset", default="digits", help="name or train .npz path")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="batches per score (paper: 2)")
    parser.add_argument("--cells", type=int, default=3, help="seeded forward cells to time")
    parser.add_argument("--metrics", default=",".join(m for m in METRICS if m not in METRIC_ALIASES))
    parser.add_argument("--timing-runs", type=int, default=3, help="timed runs per variant in part 2")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_dir)
    if device.type == "cuda":
        data = data.to(device)
    config = network_config_for(data, args.preset)
    cells = sample_cells(args.cells, "forward", seed=args.seed)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {name}; dataset {args.dataset}, preset {args.preset}, B={args.batch_size}, "
          f"repeats {args.repeats}, T={config.timesteps}, widths {config.c1}/{config.c2}/{config.hidden}")

    print(f"\n== seconds per cell (mean over {len(cells)} forward cells; score_cell = build + batches + metric)")
    score_cell(cells[0], data, config, ("sahd",), args.batch_size, 1, args.seed, device)  # warm-up
    for group in [(m,) for m in metrics] + [("sahd", "hd")]:
        wall, own = [], []
        try:
            for cell in cells:
                start = time.perf_counter()
                result = score_cell(cell, data, config, group, args.batch_size, args.repeats, args.seed, device)
                wall.append(time.perf_counter() - start)
                own.append(result["seconds"][group[0]])
        except torch.OutOfMemoryError:
            print(f"{'+'.join(group):>14}: out of device memory at B={args.batch_size}")
            torch.cuda.empty_cache()
            continue
        print(f"{'+'.join(group):>14}: {statistics.mean(wall):8.3f} s/cell   (metric pass {statistics.mean(own):.3f} s)")

    print("\n== SAHD: on-device scorer vs release-style host accumulation (same network, batch, machine)")
    ratios, totals = [], np.zeros(3)
    for cell in cells:
        torch.manual_seed(args.seed)
        model = build_network(cell, config).to(device).train()
        (x, _), = draw_batches(data, args.batch_size, 1, args.seed, device)

        def seeded(fn: Callable[[], Any]) -> Callable[[], Any]:
            """Every run sees the same dropout masks, so both scorers score the same spikes."""
            return lambda: (torch.manual_seed(args.seed), fn())[1]

        def forward() -> None:
            with torch.no_grad():
                model(x)

        t_fwd, _ = timed(seeded(forward), device, args.timing_runs)
        t_ours, ours = timed(seeded(lambda: score_network(model, x, ("sahd",))["sahd"]), device, args.timing_runs)
        t_base, base = timed(seeded(lambda: release_style_sahd(model, x)), device, args.timing_runs)
        ratios.append(t_base / t_ours)
        totals += (t_fwd, t_ours, t_base)
        print(f"{cell.text}: forward {t_fwd:.4f} s, ours {t_ours:.4f} s, release-style {t_base:.4f} s, "
              f"ratio {t_base / t_ours:.2f}x; score ours {ours.value:.6f} vs release-style {base:.6f} "
              f"(diff {abs(ours.value - base):.2e})")
    fwd, ours_s, base_s = totals
    overhead = f"{(base_s - fwd) / (ours_s - fwd):.2f}x" if ours_s > fwd else "n/a (below timing noise)"
    print(f"mean ratio {statistics.mean(ratios):.2f}x (target >= 5x); "
          f"hook-overhead ratio (release-style - forward) / (ours - forward), summed over cells: {overhead}")


if __name__ == "__main__":
    main()
