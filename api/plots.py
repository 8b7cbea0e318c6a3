"""Figures written to files (matplotlib, Agg backend): replay curve, algorithm comparison, accuracy-vs-cost front,
kernel matrices.

Every function takes results as the JSON-ready dicts the rest of ``api`` returns, writes one image
(format from the file suffix) and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_replay_curve(curve: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Picked-cell accuracy (mean ± std over trials) against the number of sampled cells N (supp. Fig. 3)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = np.array(curve["sizes"])
    for name, m in curve["methods"].items():
        mean, std = np.array(m["mean"]), np.array(m["std"])
        style = {"oracle": ":", "random": "--"}.get(name, "-")
        ax.plot(sizes, mean, style, marker="o", ms=3, label=name)
        ax.fill_between(sizes, mean - std, mean + std, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("cells sampled (N)")
    ax.set_ylabel(f"{curve['split']} accuracy of the picked cell")
    ax.set_title(f"{curve['kind']} space, {curve['dist']} sampling, {curve['trials']} trials")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def compare_title(result: dict[str, Any]) -> str:
    """The title of :func:`plot_compare`: dataset, space, budget, runs and what the band and the end marks are."""
    bands = "shaded: the runs' interquartile range; " if banded(result) else ""
    space = f", {result['kind']} space" if result.get("kind") else ""
    return (f"{result.get('dataset') or Path(result['table']).name}{space}: budget "
            f"{result['budget']:,.6g} s, mean over {result['runs']} runs\n{bands}a curve ends (●) where its last run ends")


def banded(result: dict[str, Any]) -> bool:
    """Bands are drawn for up to 8 algorithms (more would hide the curves) whose result holds them."""
    return len(result["algorithms"]) <= 8 and all("curve_band" in r for r in result["algorithms"].values())


def plot_compare(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`compare_figure` of a :func:`api.algorithms.compare` result."""
    return _save(compare_figure(result), path)


def compare_splits(result: dict[str, Any]) -> tuple[str, str]:
    """(observed, reported) accuracy of a :func:`api.algorithms.compare` result; a result saved before the keys were
    ``observe`` and ``split`` named them ``split`` and ``report``."""
    if "observe" in result:
        return result["observe"], result["split"]
    return result["split"], result["report"]


def compare_figure(result: dict[str, Any]) -> Any:
    """Mean best accuracy so far against simulated time, one line per algorithm (a :func:`api.algorithms.compare`
    result); returns the matplotlib figure (one axes).

    Invariants: a curve stops at its ``seconds_max`` (its last point is there, with the runs' final values,
    marked), so a search that ends early does not run on flat to the budget; the shaded band is ``curve_band``
    (interquartile range over runs; left out past 8 algorithms); the reference lines are the reported (``split``)
    accuracy of the cell(s) with the best observed (``observe``) accuracy and the space's best ``split`` accuracy,
    named so; the legend sits beside the axes, never on the curves; the title names dataset, space and budget.
    An algorithm without a curve (a run that trained no cell) is named in the legend with why.
    """
    plt = _pyplot()
    entries = result["algorithms"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    times, budget, bands = np.array(result["times"]), float(result["budget"]), banded(result)
    for k, (name, r) in enumerate(entries.items()):
        style = dict(color=f"C{k % 10}", ls=("-", "--", ":")[k // 10 % 3])
        mean = np.array([np.nan if v is None else v for v in r["curve_mean"]], dtype=float)
        end = float(r.get("seconds_max", budget))
        keep = times < end  # past its last run's end a curve holds its final values: drawn up to that end only
        if not np.isfinite(mean).any():
            ax.plot([], [], label=f"{name}: no curve, {r['runs_with_result']} of {result['runs']} runs trained a cell",
                    **style)
            continue
        x, y = np.append(times[keep], end), np.append(mean[keep], mean[-1])
        label = name if end >= 0.98 * budget else f"{name} (runs end by {end:,.0f} s)"
        ax.plot(x, y, label=label, **style)
        ax.plot(x[-1:], y[-1:], "o", ms=4, color=style["color"])
        if bands:
            low, high = (np.array([np.nan if v is None else v for v in b], dtype=float) for b in r["curve_band"])
            ax.fill_between(x, np.append(low[keep], low[-1]), np.append(high[keep], high[-1]), color=style["color"],
                            alpha=0.12, lw=0)
    best, (observe, split) = result["table_best"], compare_splits(result)
    tied = f", mean of {best['tied']:,} tied" if best["tied"] > 1 else ""
    top = best[f"max_{split}"] > best[split]
    ax.axhline(best[split], color="k", lw=0.8, ls=":", label=f"{split} acc. of the best-{observe} cell{tied}"
               + ("" if top else f" (the best {split} acc. in the space)"))
    if top:
        ax.axhline(best[f"max_{split}"], color="k", lw=0.8, ls="--", label=f"best {split} acc. in the space")
    lo, hi = ax.get_ylim()  # a reference line at the edge of the axes would hide in the frame
    refs = [best[split], best[f"max_{split}"]]
    ax.set_ylim(min(lo, min(refs) - 0.03 * (hi - lo)), max(hi, max(refs) + 0.03 * (hi - lo)))
    ax.set_xlim(0, budget * 1.02)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel(f"{split} accuracy of the incumbent\n(best {observe} so far)")
    ax.set_title(compare_title(result), fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0)
    ax.grid(alpha=0.3)
    return fig


def plot_front(bench: Any, path: str | os.PathLike[str], split: str = "test") -> Path:
    """``split`` accuracy against spikes per image and against params, every trained cell, the Pareto front
    (:func:`api.pareto.front`) drawn through its cells."""
    from snnbench.api.pareto import front

    plt = _pyplot()
    acc = bench.accuracy[split]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, cost, label, scale in zip(axes, (bench.spikes_per_image, bench.params), ("spikes per image", "parameters"),
                                      ("log", "linear")):
        ok = np.isfinite(acc) & np.isfinite(cost)
        ax.scatter(cost[ok], acc[ok], s=3, alpha=0.3, color="tab:gray", label=f"{int(ok.sum()):,} trained cells")
        idx = front(acc, cost)
        ax.step(cost[idx], acc[idx], where="post", color="tab:red", marker="o", ms=3, label=f"front ({len(idx)} cells)")
        ax.set_xscale(scale)
        ax.set_xlabel(label)
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{split} accuracy")
    return _save(fig, path)


def score_label(name: str) -> str:
    """The axis label of a stored score's values."""
    return "params: parameter count" if name == "params" else f"{name} score"


def readable_ticks(ax: Any, axis: str = "x", bins: int = 5) -> None:
    """At most ``bins`` ticks on a linear ``axis``, values of 5 or more digits (or under 1e-3) as a mantissa with
    the power of ten written once beside the axis: long tick labels in a narrow panel overlap."""
    from matplotlib.ticker import MaxNLocator

    if getattr(ax, f"get_{axis}scale")() == "linear":
        getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(nbins=bins))
        ax.ticklabel_format(axis=axis, style="sci", scilimits=(-3, 4), useMathText=True)


def plot_scatter(bench: Any, scores: Sequence[str], split: str, path: str | os.PathLike[str]) -> Path:
    """Write :func:`scatter_figure`."""
    return _save(scatter_figure(bench, scores, split), path)


def scatter_figure(bench: Any, scores: Sequence[str], split: str) -> Any:
    """One panel per score: the score of every cell (x, labelled with its name) against its ``split`` accuracy
    (y), cells holding both; at most 5 ticks an axis, large values with a shared power of ten (no overlapping
    labels); the title names the dataset the accuracies were trained on."""
    from snnbench.api.algorithms import trained_on

    plt = _pyplot()
    cols = min(3, max(1, len(scores)))
    rows = -(-len(scores) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows + 0.4), squeeze=False)
    acc = bench.accuracy[split]
    for ax, name in zip(axes.ravel(), scores):
        s = bench.scores[name]
        ok = np.isfinite(s) & np.isfinite(acc)
        ax.scatter(s[ok], acc[ok], s=4, alpha=0.5)
        log = ok.any() and s[ok].min() > 0 and s[ok].max() > 10 * s[ok].min()  # spans decades: log scale
        if log:
            ax.set_xscale("log")
        ax.set_title(f"{name} ({int(ok.sum()):,} cells{', log scale' if log else ''})", fontsize=9)
        ax.set_xlabel(score_label(name), fontsize=8)
        ax.set_ylabel(f"{split} accuracy", fontsize=8)
        readable_ticks(ax)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_offset_text().set_fontsize(7)
    for ax in axes.ravel()[len(scores):]:
        ax.axis("off")
    dataset = trained_on(bench) if hasattr(bench, "metadata") else None
    fig.suptitle(f"{dataset + ': ' if dataset else ''}each score against {split} accuracy (a dot per cell)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_agreement(a: Any, b: Any, scores: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """One panel per score: its value in view ``a`` against view ``b`` on the cells both hold (matched by
    hash; singular ``-inf`` values are not drawn), titled with :func:`api.correlate.agreement`'s Kendall tau."""
    from snnbench.api.correlate import agreement, matched

    plt = _pyplot()
    ua, ub = matched(a, b)
    taus = agreement(a, b, scores)["scores"]
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3.0), squeeze=False)
    for ax, name in zip(axes[0], scores):
        x, y = a.scores[name][ua], b.scores[name][ub]
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=3, alpha=0.4)
        r = taus[name]
        tau = "–" if r["kendall_tau"] is None else f"{r['kendall_tau']:.2f}"
        ax.set_title(f"{name}: tau {tau} ({r['cells']} cells, {sum(r['singular'])} singular)", fontsize=9)
        ax.set_xlabel(a.path.stem, fontsize=8)
        ax.set_ylabel(b.path.stem, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_by_kind(bench: Any, scores: Sequence[str], path: str | os.PathLike[str], bins: int = 50) -> Path:
    """One panel per score: histograms (densities, shared bins) of its finite values over the view's forward
    cells and over its cells with a backward edge, with the counts in the legend."""
    plt = _pyplot()
    kinds = np.array(bench.kinds)
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 2.8), squeeze=False)
    for ax, name in zip(axes[0], scores):
        v = bench.scores[name]
        ok = np.isfinite(v)
        edges = np.histogram_bin_edges(v[ok], bins=bins) if ok.any() else bins
        for kind in ("forward", "backward"):
            x = v[ok & (kinds == kind)]
            if len(x):
                ax.hist(x, bins=edges, density=True, histtype="step", label=f"{kind} ({len(x):,})")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path)


def kernel_matrix(cell: Any, dataset: Any, net_config: Any, metric: str = "sahd", batch_size: int = 64,
                  seed: int = 0, device: str = "cpu") -> np.ndarray:
    """The ``[B, B]`` spike kernel of an untrained network on one training batch (as the score computes it).

    Weights and batch come from ``seed`` (as :func:`snnbench.scores.score_cell` seeds them); training
    mode, no gradients, every LIF layer at every step (``snnbench.scores.SpikeKernels``).
    """
    return kernel_matrices(cell, dataset, net_config, [metric], batch_size, seed, device)[metric]


def kernel_matrices(cell: Any, dataset: Any, net_config: Any, metrics: Sequence[str] = ("sahd", "hd"),
                    batch_size: int = 64, seed: int = 0, device: str = "cpu") -> dict[str, np.ndarray]:
    """:func:`kernel_matrix` for several metrics from one forward pass (each equal to its own call)."""
    import torch

    from snnbench.network import build_network
    from snnbench.scores import SpikeKernels, draw_batches, resolve_device, spiking_layers
    from snnbench.space import Cell

    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_network(Cell(cell), net_config).to(dev)
        (x, _), = draw_batches(dataset, batch_size, 1, seed, dev)
        model.train()
        with torch.no_grad(), SpikeKernels(spiking_layers(model), list(metrics)) as acc:
            model(x)
    return {m: k.cpu().numpy() for m, k in acc.kernels().items()}


def plot_kernels(kernels: Sequence[np.ndarray], titles: Sequence[str], path: str | os.PathLike[str],
                 columns: int = 4) -> Path:
    """Kernel matrices side by side (supplementary Fig. 2), each normalised by its diagonal mean, on one
    colour scale from the smallest normalised entry of any panel to 1 (with a colour bar), so panels compare.

    A fixed 0..1 scale would hide SPEC's SAHD kernel: its off-diagonal entries are ``N_A - 0.5 d_H / e``
    with ``d_H / e`` near 1, so they sit within about 1e-3 of the diagonal.
    """
    plt = _pyplot()
    rows = max(1, -(-len(kernels) // columns))
    cols = min(columns, max(1, len(kernels)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.6, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    normed = [np.asarray(k, dtype=np.float64) / np.mean(np.diag(k)) for k in kernels]
    low = min((float(k.min()) for k in normed), default=0.0)
    image = None
    for ax, k, title in zip(axes.ravel(), normed, titles):
        image = ax.imshow(k, cmap="viridis", vmin=min(low, 1.0 - 1e-9), vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="kernel / mean diagonal")
    return _save(fig, path)


def score_inputs(bench: Any, data_dir: str | None = None) -> tuple[Any, Any]:
    """The dataset (with its split) and network config of the view's score protocol (else its first)."""
    from snnbench.data import load_dataset
    from snnbench.network import NetworkConfig

    meta = bench.metadata
    settings = next((m["settings"] for m in meta.values() if m["type"] == "score"), next(iter(meta.values()))["settings"])
    d = settings["dataset"]
    data = load_dataset(d["name"], data_dir, val_fraction=d["val_fraction"], seed=d["split_seed"])
    return data, NetworkConfig(**settings["network"]["config"])


def kernel_figure(bench: Any, matrices: Iterable[Any], path: str | os.PathLike[str], metric: str = "sahd",
                  batch_size: int = 64, seed: int = 0, split: str = "test", data_dir: str | None = None) -> Path:
    """Supplementary Fig. 2 for cells of a table: each cell's kernel (the view's score protocol's dataset
    and network), titled with its hash and stored ``split`` accuracy."""
    data, config = score_inputs(bench, data_dir)
    kernels, titles = [], []
    for m in matrices:
        rec = bench.query(m)
        kernels.append(kernel_matrix(rec["matrix"], data, config, metric, batch_size, seed))
        acc = rec["accuracy"][split]
        titles.append(f"{rec['hash'][:8]}  {split} " + ("-" if acc is None else f"{acc:.3f}"))
    return plot_kernels(kernels, titles, path)
