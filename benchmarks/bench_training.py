"""Training images per second: snnbench's trainer against a conventional training loop, side by side.

Both train the same cell in the same skeleton on the same images with SGD (SPEC section 4 optimiser):

* ours: :func:`snnbench.training.train_cell` (uint8 data on the device, batched on-device crop/flip,
  multi-step LIF layers, bf16 autocast on CUDA, no host synchronisation inside an epoch);
* conventional: a ``torch.utils.data.DataLoader`` over a per-image ``Dataset`` with torchvision transforms
  (ToTensor, RandomCrop with padding, RandomHorizontalFlip, Normalize), float32, and the network run step by
  step in time with a single-step LIF written in autograd (as SpikingJelly's ``step_mode='s'`` and the
  authors' release do), reusing the very modules (weights, BatchNorm) of the snnbench network.

The step-by-step forward is checked against the snnbench forward before timing. Images/second counts
training images of the timed epochs (the first epoch of each is a warm-up and is not timed).

With ``--packs K[,K...]`` it measures instead trainings per hour of the packed trainer
(:func:`snnbench.training.train_pack`, packs of K rows in (cell, seed) order, as ``snnbench build`` forms them)
against the per-network trainer (:func:`snnbench.training.train_cell`, pack 1), side by side in one run, for each
number of worker processes in ``--processes`` (each process: one torch thread, its share of the packs). The rows are
``--cells`` cells (half forward, half backward, drawn from the space with seed 0; in hash order, so packs mix
kinds, or with ``--by-kind`` forward ones first, as a build of one ``--kind`` packs them) x ``--seeds`` seeds on the
bench protocol; ``--epochs`` / ``--images`` shorten it (say so when quoting); ``--rounds`` repeats the pack
sizes interleaved and rates each by its best round (a shared machine's load drifts). ``--profile`` adds the top ops of one
training step, alone and packed.

With ``--bound`` it measures what caps any trainer that keeps each network's arithmetic: for ``--cells`` cells (as
``--packs`` draws them), one training step (forward, backward, Adam) of one network at batch ``--batch-size`` B and at
batch 4B (the ideal amortisation of every per-op cost, which no pack can beat: a pack of 4 still runs 4 networks'
weights), and the self time of the convolution and matrix-product kernels inside the B step (profiled apart). It prints the
per-image gain of the 4B step and the step time over the kernels' time: the most any trainer can gain without
making those kernels faster.

    python benchmarks/bench_training.py                       # digits, CPU
    python benchmarks/bench_training.py --data /work/shared/data/cifar10/train.npz --images 4096 --device cuda
    python benchmarks/bench_training.py --packs 2,4,8 --processes 1,2 --epochs 1 --images 512 --profile
    python benchmarks/bench_training.py --bound --cells 16 --rounds 3
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms

from snnbench.data import Dataset, load_dataset
from snnbench.network import SNASNet, build_network
from snnbench.packed import PackedSNASNet
from snnbench.space import Cell, space
from snnbench.training import network_config_for, train_cell, train_config, train_pack


class _ATanSpike(torch.autograd.Function):
    """Heaviside(u) with the ATan surrogate ``1 / (1 + (pi u)^2)``."""

    @staticmethod
    def forward(ctx, u):  # type: ignore[override]
        ctx.save_for_backward(u)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        return grad / (1 + (math.pi * u) ** 2)


def step_forward(model: SNASNet, x: torch.Tensor) -> torch.Tensor:
    """The SNASNet forward computed one time step at a time with single-step autograd LIF neurons."""
    c = model.config
    tau = 4.0 / 3.0
    v: dict[int, torch.Tensor] = {}

    def lif(module: Any, inp: torch.Tensor) -> torch.Tensor:
        h = v.get(id(module), torch.zeros_like(inp))
        h = h + (inp - h) / tau
        s = _ATanSpike.apply(h - 1.0)
        v[id(module)] = h * (1 - s.detach())
        return s

    def bn(m: Any, inp: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(inp, m.running_mean, m.running_var, m.weight, m.bias, m.training, m.momentum, m.eps)

    def edge(e: Any, inp: torch.Tensor) -> torch.Tensor:
        if e.op == "skip":
            return inp
        if e.op == "avgpool3x3":
            return F.avg_pool2d(inp, 3, 1, 1, count_include_pad=True)
        return bn(e.bn, e.conv(lif(e.lif, inp)))

    def cell_step(cell: Any, x_t: torch.Tensor, delayed: list) -> tuple[torch.Tensor, list]:
        y: list[torch.Tensor] = []
        for j in range(cell.n):
            terms = [x_t] if j == 0 else [edge(cell.edges[f"e{i}{j}"], y[i]) for i in cell.forward_in[j]]
            if delayed[j] is not None:
                terms.append(delayed[j])
            y.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x_t))
        new = [sum(edge(cell.edges[f"e{i}{j}"], y[i]) for i in cell.backward_in[j]) if cell.backward_in[j] else None
               for j in range(cell.n)]
        return y[-1], new

    b = x.shape[0]
    static = model.stem(x)
    mask = F.dropout(torch.ones(b, model.fc1.in_features, device=x.device), c.dropout, training=model.training)
    d1: list = [None] * model.cell1.n
    d2: list = [None] * model.cell2.n
    out: Any = 0.0
    for _ in range(c.timesteps):
        y, d1 = cell_step(model.cell1, static, d1)
        y = lif(model.lif1, bn(model.bn1, y))
        y = model.pool1(bn(model.bn2, model.conv(y)))
        y, d2 = cell_step(model.cell2, y, d2)
        y = lif(model.lif2, bn(model.bn3, y))
        y = model.pool2(y).flatten(1) * mask
        y = model.fc2(lif(model.lif3, model.fc1(y)))
        out = out + y.view(b, c.num_classes, c.group).mean(-1)
    return out / c.timesteps


class _ImageSet(torch.utils.data.Dataset):
    """Per-image access to uint8 HWC images with a torchvision transform (the conventional pipeline)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def conventional(cell: str, data: Dataset, net, cfg, epochs: int, device: torch.device, workers: int) -> float:
    """Images/second of the DataLoader + torchvision + step-by-step loop over the timed epochs."""
    size = data.image_size
    ops = [transforms.ToTensor(), transforms.RandomCrop(size, padding=data.crop_padding)]
    if data.hflip:
        ops.append(transforms.RandomHorizontalFlip())
    ops.append(transforms.Normalize(data.mean, data.std))
    images = data.train.images.permute(0, 2, 3, 1).numpy()
    images = images[..., 0] if images.shape[-1] == 1 else images  # ToTensor wants HxW for one channel
    loader = torch.utils.data.DataLoader(
        _ImageSet(images, data.train.labels.numpy(), transforms.Compose(ops)), batch_size=cfg.batch_size,
        shuffle=True, num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
    )
    torch.manual_seed(0)
    model = build_network(cell, net).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    timed, seen = 0.0, 0
    for epoch in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(step_forward(model, x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the usual per-step logging sync
            if epoch:
                seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch:
            timed += time.perf_counter() - t0
    return seen / timed


def ours(cell: str, data: Dataset, net, cfg, device: torch.device) -> float:
    """Images/second of :func:`train_cell` over the timed epochs (per-epoch wall times, first epoch skipped)."""
    res = train_cell(cell, data, net, cfg, seed=0, device=device)
    timed = res["epochs"][1:]
    return len(data.train) * len(timed) / sum(r["seconds"] for r in timed)


def check_step_forward(cell: str, data: Dataset, net) -> float:
    """Max |difference| of class scores between the step-by-step and snnbench forwards (dropout off)."""
    torch.manual_seed(0)
    model = build_network(cell, net.__class__(**{**net.to_dict(), "dropout": 0.0})).train()
    x = data.normalize(data.train.images[:16])
    with torch.no_grad():
        return float((step_forward(model, x) - model(x)).abs().max())


def bench_cells(count: int, by_kind: bool = False) -> list[str]:
    """``count`` cells, half forward and half backward, drawn uniformly from the space (seed 0), in hash order
    (``by_kind``: the forward ones first, as builds of one ``--kind`` pack them)."""
    sp = space()
    rng = np.random.default_rng(0)
    chosen = []
    for backward, n in ((False, count - count // 2), (True, count // 2)):
        pool = np.flatnonzero(sp.is_backward == backward)
        chosen += [int(u) for u in rng.choice(pool, n, replace=False)]
    chosen.sort(key=lambda u: (bool(sp.is_backward[u]) and by_kind, sp.hashes[u]))
    return [sp.texts[u].decode() for u in chosen]


def _train_rows(args: tuple[str, list[tuple[str, int]], int | None, int, str, int]) -> dict[str, Any]:
    """Worker: train ``rows`` (cell text, seed) in packs of ``pack`` (1: ``train_cell``); returns the trainings done,
    the CPU seconds of this process spent on them, and which snnbench (folder, CPU loops) did them."""
    import importlib

    import snnbench

    data_name, rows, images, epochs, device, pack = args
    torch.set_num_threads(1)
    data, net, cfg = _packs_setup(data_name, images, epochs)

    def train(group: list[tuple[str, int]]) -> None:
        if len(group) == 1:
            train_cell(group[0][0], data, net, cfg, seed=group[0][1], device=device)
        else:
            train_pack([c for c, _ in group], data, net, cfg, [s for _, s in group], device)

    train(rows[:pack])  # warm-up (lazy imports, compiled loops, the allocator's pools): not counted
    cpu = time.process_time()
    for start in range(0, len(rows), pack):
        train(rows[start:start + pack])
    return {"trainings": len(rows), "cpu_seconds": time.process_time() - cpu,
            "snnbench": os.path.dirname(os.path.dirname(os.path.abspath(snnbench.__file__))),
            "loops": importlib.import_module("snnbench.kernels").describe()
            if os.path.exists(os.path.join(os.path.dirname(snnbench.__file__), "kernels.py")) else "torch (no snnbench.kernels)"}


def _run_workers(jobs: list[tuple[str, list[tuple[str, int]], int | None, int, str, int]], env: dict[str, str]) -> list[dict[str, Any]]:
    """Run each job in a fresh interpreter (this script, ``--worker``) with ``env`` added, all at once; their results.
    Fresh interpreters, not a multiprocessing pool: a spawned pool worker takes its parent's ``sys.path``, so a
    baseline's ``PYTHONPATH`` would not reach its imports."""
    import json
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
                              env={**os.environ, **env}, stdout=subprocess.PIPE, text=True) for job in jobs]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a benchmark worker failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _packs_setup(data_name: str, images: int | None, epochs: int) -> tuple[Dataset, Any, Any]:
    data = load_dataset(data_name)
    if images:
        data = data.subset(train=images)
    return data, network_config_for(data, "bench"), train_config("bench", epochs=epochs)


def packs_benchmark(a: argparse.Namespace) -> None:
    """Trainings per hour, per-network trainer against packs, for each process count (see the module docstring)."""
    cells = bench_cells(a.cells, a.by_kind)
    rows = [(c, s) for c in cells for s in range(a.seeds)]
    data, net, cfg = _packs_setup(a.data, a.images, a.epochs)
    print(f"# {len(cells)} cells ({a.cells - a.cells // 2} forward, {a.cells // 2} backward"
          f"{', forward ones first' if a.by_kind else ', in hash order'}) x {a.seeds} seeds = "
          f"{len(rows)} trainings; {data.name} ({len(data.train)} train images), bench skeleton and budget, "
          f"{cfg.epochs} epochs, device {a.device}")
    packs = [1] + [int(k) for k in a.packs.split(",") if int(k) > 1]
    # (name, pack size, environment of the worker processes): today's trainer first, as the reference of the ratios
    variants: list[tuple[str, int, dict[str, str]]] = []
    if a.baseline:
        variants.append((f"baseline per-network ({os.path.basename(os.path.abspath(a.baseline))})", 1,
                         {"PYTHONPATH": os.path.abspath(a.baseline)}))
    if a.unfused:
        variants.append(("per-network, fused loops off", 1, {"SNNBENCH_KERNELS": "0"}))
    variants += [("per-network trainer (train_cell)" if k == 1 else f"packs of {k} (train_pack)", k, {}) for k in packs]
    for procs in [int(p) for p in a.processes.split(",")]:
        walls: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        cpus: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for round_ in range(a.rounds):  # variants interleaved, so that a change of the machine's load hits all
            for name, k, env in variants:
                groups = [rows[i:i + k] for i in range(0, len(rows), k)]
                shares: list[list[tuple[str, int]]] = [[] for _ in range(procs)]
                for i, g in enumerate(groups):  # whole packs, dealt round robin
                    shares[i % procs] += g
                t0 = time.perf_counter()
                results = _run_workers([(a.data, share, a.images, a.epochs, a.device, k) for share in shares if share], env)
                walls[name].append(time.perf_counter() - t0)  # warm-ups included
                done = sum(r["trainings"] for r in results)
                cpus[name].append(sum(r["cpu_seconds"] for r in results))
                if round_ == 0:
                    print(f"#   {name}: snnbench from {results[0]['snnbench']}, CPU loops {results[0]['loops']}", flush=True)
                wall, cpu = min(walls[name]), min(cpus[name])  # the least disturbed of the rounds so far
                per_hour, per_core_hour = done * 3600 / wall, done * 3600 / cpu
                ref, ref_cpu = len(rows) * 3600 / min(walls[variants[0][0]]), len(rows) * 3600 / min(cpus[variants[0][0]])
                images = done * cfg.epochs * len(data.train) / wall  # training images per second, evaluation included
                print(f"{procs} process{'es' if procs > 1 else ''}  {name:40s} {done} trainings in {walls[name][-1]:6.1f} s "
                      f"(best of {round_ + 1}: {wall:6.1f} s, {cpu:6.1f} CPU s)  {per_hour:7.0f} trainings/h "
                      f"{per_core_hour:7.0f} per core-hour  {images:6.0f} images/s  {per_hour / ref:5.2f}x wall "
                      f"{per_core_hour / ref_cpu:5.2f}x CPU (vs {variants[0][0]}, {procs} proc)", flush=True)
    if a.profile:
        profile_step(cells[:max(packs)], a)


#: aten ops that compute nothing (views, allocations, conversions): left out of the op count of :func:`profile_step`
_VIEW_OPS = frozenset(f"aten::{name}" for name in (
    "view", "as_strided", "slice", "select", "unsqueeze", "expand", "reshape", "t", "transpose", "permute", "narrow",
    "detach", "empty", "empty_strided", "alias", "_reshape_alias", "unbind", "split", "chunk", "empty_like", "squeeze",
    "lift_fresh", "resolve_conj", "resolve_neg", "result_type", "contiguous", "flatten", "split_with_sizes", "to",
    "_to_copy", "is_nonzero", "item", "_local_scalar_dense"))


def profile_step(cells: list[str], a: argparse.Namespace) -> None:
    """Top ops (self CPU time) of one training step (forward + backward): the networks alone, then as one pack."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    data, net, _ = _packs_setup(a.data, a.images, 1)
    k = len(cells)
    models = []
    for seed, cell in enumerate(cells):
        torch.manual_seed(seed)
        models.append(build_network(cell, net).train())
    packed = PackedSNASNet(models).train()
    gens = [torch.Generator().manual_seed(s) for s in range(k)]
    x = data.normalize(data.train.images[:a.batch_size])
    y = data.train.labels[:a.batch_size]

    def alone() -> None:
        for m in models:
            F.cross_entropy(m(x), y).backward()

    def pack() -> None:
        torch.stack([F.cross_entropy(o, y) for o in packed(x.repeat(1, k, 1, 1), gens)]).sum().backward()

    for name, step in (("alone", alone), (f"pack of {k}", pack)):
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        launches = sum(e.count for e in events if e.key.startswith("aten::") and e.key not in _VIEW_OPS)
        print(f"\n## one step of {k} networks, {name}: {total / 1e3:.0f} ms self CPU time, {launches / k:.0f} "
              "computing ops per network (a GPU launches a kernel for each); top ops")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.profile))


#: the kernels that do a step's arithmetic (self CPU time; their callers' bookkeeping is not counted)
_ARITHMETIC_OPS = frozenset(("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
                             "aten::_slow_conv2d_backward", "aten::mm", "aten::addmm", "aten::bmm"))


def bound_benchmark(a: argparse.Namespace) -> None:
    """Per cell and in total: ms of one training step at batch B and per B images at batch 4B, and ms of the
    arithmetic kernels within the B step (see the module docstring). Best of ``--rounds`` rounds per timing."""
    from torch.profiler import ProfilerActivity, profile

    if a.device != "cpu":
        raise SystemExit("--bound measures one CPU thread; on a GPU, --packs measures the packs themselves")
    torch.set_num_threads(1)
    data, net, cfg = _packs_setup(a.data, None, 1)
    b = a.batch_size
    if len(data.train) < 4 * b:
        raise SystemExit(f"--bound needs 4 x {b} training images; {data.name} has {len(data.train)}")
    print(f"# one training step (forward, backward, Adam) of one network, {data.name}, bench skeleton, 1 thread: "
          f"batch {b} against {4 * b}; best of {a.rounds} rounds of 5 steps")
    print(f"{'cell':22s} {'kind':8s} {'step B':>8s} {'4B per B':>9s} {'gain':>6s} {'kernels':>8s} {'bound':>6s}")
    totals = np.zeros(3)
    for cell in bench_cells(a.cells):
        torch.manual_seed(0)
        model = build_network(cell, net).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

        def step(n: int) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(data.normalize(data.train.images[:n])), data.train.labels[:n]).backward()
            opt.step()

        times = []
        for n in (b, 4 * b):
            step(n)  # warm-up: the allocator's pools and oneDNN's primitives for this shape
            best = math.inf
            for _ in range(a.rounds):
                t0 = time.perf_counter()
                for _ in range(5):
                    step(n)
                best = min(best, (time.perf_counter() - t0) / 5)
            times.append(best)
        kernels = math.inf
        for _ in range(a.rounds):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    step(b)
            kernels = min(kernels, sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in _ARITHMETIC_OPS) / 5e6)
        row = np.array([times[0], times[1] / 4, kernels])
        totals += row
        print(f"{cell:22s} {Cell(cell).kind:8s} {row[0] * 1e3:8.1f} {row[1] * 1e3:9.1f} {row[0] / row[1]:5.2f}x "
              f"{row[2] * 1e3:8.1f} {row[0] / row[2]:5.2f}x", flush=True)
    print(f"{'all cells':31s} {totals[0] * 1e3:8.1f} {totals[1] * 1e3:9.1f} {totals[0] / totals[1]:5.2f}x "
          f"{totals[2] * 1e3:8.1f} {totals[0] / totals[2]:5.2f}x")
    print(f"# gain: per-image speed-up of batch {4 * b} over batch {b}, the ceiling of amortising per-op cost; bound: "
          "step time over its arithmetic kernels' time, the ceiling of removing everything else")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits", help="digits, cifar10, ... or a train .npz path")
    p.add_argument("--images", type=int, default=None, help="training images (a seeded subset; default 1024, packs: all)")
    p.add_argument("--cell", default="0302 0030 3003 0000")
    p.add_argument("--preset", default="bench", choices=["bench", "paper"])
    p.add_argument("--timesteps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=None, help="epochs per trainer; the first is warm-up (default 3; packs: 12)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 2 CPU, 4 CUDA)")
    p.add_argument("--packs", default=None, help="pack sizes to measure against pack 1 (e.g. 2,4,8): the packs benchmark")
    p.add_argument("--processes", default="1,2", help="packs benchmark: worker process counts")
    p.add_argument("--cells", type=int, default=16, help="packs benchmark: cells, half forward and half backward")
    p.add_argument("--seeds", type=int, default=2, help="packs benchmark: seeds per cell")
    p.add_argument("--rounds", type=int, default=1, help="packs benchmark: rounds (pack sizes interleaved; best taken)")
    p.add_argument("--by-kind", action="store_true", help="packs benchmark: forward cells first (packs of one kind)")
    p.add_argument("--profile", type=int, default=0, help="packs benchmark: print this many top ops of one step")
    p.add_argument("--profile-only", action="store_true", help="packs benchmark: only the profile (--profile N, of the "
                   "first K cells, K the largest of --packs); run it from a baseline checkout for the 'before' profile")
    p.add_argument("--baseline", default=None, help="packs benchmark: an earlier snnbench checkout whose per-network "
                   "trainer runs first, as the reference of every ratio (its workers run with PYTHONPATH=DIR)")
    p.add_argument("--unfused", action="store_true", help="packs benchmark: also the per-network trainer with the fused "
                   "CPU loops off (SNNBENCH_KERNELS=0)")
    p.add_argument("--bound", action="store_true", help="what caps any trainer: a step at batch B against 4B, and "
                   "the step's time in its arithmetic kernels (per cell of --cells; --rounds: best of)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one worker of the packs benchmark
    a = p.parse_args()
    if a.worker:
        import json

        data_name, rows, images, epochs, device, pack = json.loads(a.worker)
        print(json.dumps(_train_rows((data_name, [(c, s) for c, s in rows], images, epochs, device, pack))))
        return
    if a.bound:
        bound_benchmark(a)
        return
    if a.packs:
        a.epochs = a.epochs or 12  # the bench budget
        if a.profile_only:
            profile_step(bench_cells(a.cells, a.by_kind)[:max(int(k) for k in a.packs.split(","))], a)
            return
        packs_benchmark(a)
        return
    a.images, a.epochs = a.images or 1024, a.epochs or 3
    device = torch.device(a.device)
    data = load_dataset(a.data, val_fraction=0.0).subset(train=a.images, test=a.batch_size)
    net = network_config_for(data, a.preset, **({"timesteps": a.timesteps} if a.timesteps else {}))
    cfg = train_config("paper", epochs=a.epochs, batch_size=a.batch_size)  # SGD for both loops
    workers = a.workers if a.workers is not None else (4 if device.type == "cuda" else 2)
    print(f"# {a.cell} on {data.name} ({len(data.train)} images {data.channels}x{data.image_size}x{data.image_size}), "
          f"{a.preset} skeleton T={net.timesteps}, batch {a.batch_size}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)"))
    print(f"step-by-step forward vs snnbench forward: max |diff| = {check_step_forward(a.cell, data, net):.2e}")
    rows = [("snnbench trainer" + (" (bf16 autocast)" if device.type == "cuda" else ""), ours(a.cell, data, net, cfg, device))]
    if device.type == "cuda":
        rows.append(("snnbench trainer (float32)", ours(a.cell, data, net, train_config("paper", epochs=a.epochs, batch_size=a.batch_size, amp=False), device)))
    base = conventional(a.cell, data, net, cfg, a.epochs, device, workers)
    rows.append((f"conventional (DataLoader x{workers} workers, step-by-step, float32)", base))
    for name, ips in rows:
        print(f"{name:60s} {ips:10.1f} images/s   {ips / base:6.2f}x")


if __name__ == "__main__":
    main()
