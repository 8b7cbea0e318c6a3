"""SNASNet: the cells of SPEC section 2 inside the skeleton of SPEC section 3.

Layout: every tensor between layers is time-major ``[T, B, C, H, W]``; convolutions, pools and linear
layers run on the merged ``[T * B, ...]`` view, LIF layers on the whole sequence at once.

Invariants
----------
* A cell is built from its *pruned* matrix: dead nodes and zero edges create no module and cost
  nothing. Every non-zero edge has its own module (own weights, own LIF state).
* Forward cells run edge by edge over all T steps at once. Backward cells step through time: at
  step ``t`` a backward edge ``i -> j`` feeds node ``j`` with ``B_ij(y_i(t-1))``; at ``t = 0`` it
  feeds exactly 0 (the edge has not run yet). As in the authors' release, backward edges also run at
  the last step (their output is unused; their spikes and BN statistics count like the release's).
* BatchNorm inside the time loop normalises each step with that step's batch statistics
  (:class:`TimeBatchNorm2d`), exactly like the release's per-step loop; in eval mode it uses the
  running statistics.
* Dropout draws one mask per sample and applies it at every step. The output is the mean over T of
  the K class scores, each the average of a group of ``g`` consecutive outputs of the last linear.
* Same seed, same device -> same parameters and outputs (same CPU: bit for bit).
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnbench import fields, kernels
from snnbench.names import DATASETS, NETWORK_PRESETS
from snnbench.neuron import LIF, carry_state, persist_state, share_spikes
from snnbench.space import OPS, Cell, edge_name, edge_nodes

# Upper bounds of NetworkConfig's integer fields (all are >= 1): far above any real network, low enough that the
# layer sizes they give stay within torch's integer range.
LIMITS: dict[str, int] = dict(c1=65536, c2=65536, hidden=65536, num_classes=100_000, group=1024, stem_stride=4096,
                              pool=4096, timesteps=1024, in_channels=65536, image_size=4096)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that fixes the skeleton around a cell (see ``docs/network.md``). Fields are checked on
    construction and held as plain ``int`` / ``float`` / ``bool``: equal settings serialise (and hash) equally."""

    c1: int
    c2: int
    hidden: int
    num_classes: int
    group: int
    stem_stride: int
    pool: int
    timesteps: int = 5
    in_channels: int = 3
    image_size: int = 32
    learnable_tau: bool = False
    dropout: float = 0.5

    def __post_init__(self) -> None:
        for name, high in LIMITS.items():
            object.__setattr__(self, name, fields.integer("network", name, getattr(self, name), high=high))
        object.__setattr__(self, "dropout", fields.real("network", "dropout", self.dropout))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"network config: dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "learnable_tau", fields.boolean("network", "learnable_tau", self.learnable_tau))
        if self.final_size < 1:
            raise ValueError(
                f"network config: image_size {self.image_size} is too small for stem stride {self.stem_stride}, "
                f"a 2x2 pool and a {self.pool}x{self.pool} pool"
            )

    @property
    def stem_size(self) -> int:
        """Side of the stem output (cell 1's resolution)."""
        return (self.image_size - 1) // self.stem_stride + 1

    @property
    def cell2_size(self) -> int:
        return self.stem_size // 2

    @property
    def final_size(self) -> int:
        """Side of the map after the ``p x p`` pool (flattened into the classifier)."""
        return self.cell2_size // self.pool

    @property
    def features(self) -> int:
        return self.c2 * self.final_size**2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PAPER: dict[str, dict[str, int]] = {
    "cifar10": dict(c1=256, c2=512, hidden=1024, num_classes=10, group=10, stem_stride=1, pool=2, in_channels=3, image_size=32),
    "cifar100": dict(c1=128, c2=256, hidden=1024, num_classes=100, group=5, stem_stride=1, pool=2, in_channels=3, image_size=32),
    "tinyimagenet": dict(c1=128, c2=256, hidden=4096, num_classes=200, group=5, stem_stride=2, pool=2, in_channels=3, image_size=64),
    "digits": dict(c1=128, c2=256, hidden=1024, num_classes=10, group=10, stem_stride=1, pool=2, in_channels=1, image_size=8),
}
# bench: narrow skeletons for table building. On the 8x8 `digits` images the paper's final 2x2 pool
# (of a 2x2 map) starves the classifier; pool 1 with 16/32 wide cells learns (docs/data.md, "Measured").
_BENCH: dict[str, dict[str, int]] = {
    "cifar10": dict(c1=32, c2=64, hidden=256),
    "cifar100": dict(c1=32, c2=64, hidden=256),
    "tinyimagenet": dict(c1=32, c2=64, hidden=512),
    "digits": dict(c1=16, c2=32, hidden=256, pool=1),
}


def network_config(dataset: str, preset: str = "paper", **overrides: Any) -> NetworkConfig:
    """The skeleton of ``preset`` ("paper": SPEC section 3; "bench": narrow, for table building) for
    ``dataset``, with any field overridden (e.g. ``pool=4`` for the supplementary's AP4)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    if preset not in NETWORK_PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(NETWORK_PRESETS)}, got {preset!r}")
    fields: dict[str, Any] = dict(_PAPER[dataset])
    if preset == "bench":
        fields.update(_BENCH[dataset])
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(NetworkConfig)})
    if unknown:
        raise ValueError(f"network config: unknown field(s) {', '.join(unknown)}")
    fields.update(overrides)
    return NetworkConfig(**fields)


# --------------------------------------------------------------------------- layers


class _TimeBatchNormFunction(torch.autograd.Function):
    """``(x[T, B, C, H, W], weight, bias, eps) -> (y, mean[T, C], var[T, C])``: :func:`snnbench.kernels.bn_forward`
    and its backward (statistics carry no gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float):  # type: ignore[override]
        y, mean, invstd, var = kernels.bn_forward(x, weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None):  # type: ignore[override]
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = kernels.bn_backward(grad, x, weight, mean, invstd)
        return gx, gw, gb, None


class TimeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over ``[T, B, C, H, W]``: in training mode each step uses its own batch statistics
    (and updates the running statistics once per step, in step order); in eval mode, running stats.

    Without autograd the training-mode statistics of all steps come from one vectorised two-pass
    computation (faster; equal to the per-step native kernel up to float rounding).
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if not self.training:
            return _merged(super().forward, x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            if kernels.bn_applies(x, self.weight, self.bias):
                y, mean, var = _TimeBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
                self._update_running(mean.detach(), var.detach(), x.shape[1] * x.shape[3] * x.shape[4])
                return y
            steps = [super(TimeBatchNorm2d, self).forward(step) for step in x.unbind(0)]  # unbind: no full-size zero fill per step in backward
            return torch.cat(steps).view(x.shape) if len(steps) > 1 else steps[0].unsqueeze(0)
        return self._train_no_grad(x)

    def _update_running(self, mean: Tensor, var: Tensor, n: int) -> None:
        """Running statistics updated once per step, in step order, from each step's mean and biased variance
        (``[T, C]``), as the native module does."""
        if not self.track_running_stats:
            return
        unbiased = var * (n / max(n - 1, 1))
        rm, rv, nb = cast(Tensor, self.running_mean), cast(Tensor, self.running_var), cast(Tensor, self.num_batches_tracked)
        with torch.no_grad():
            for step in range(mean.shape[0]):
                nb.add_(1)  # momentum None: the cumulative average, 1 / (batches seen), as the native module
                weight = self.momentum if self.momentum is not None else 1.0 / float(nb)
                rm.lerp_(mean[step].to(rm.dtype), weight)
                rv.lerp_(unbiased[step].to(rv.dtype), weight)

    @torch.no_grad()
    def _train_no_grad(self, x: Tensor) -> Tensor:
        t, b, c, h, w = x.shape
        flat = x.permute(0, 1, 3, 4, 2).reshape(t, b * h * w, c)  # a view when x is channels-last
        if flat.dtype in (torch.float16, torch.bfloat16):  # statistics in float32, as the native kernel
            flat = flat.float()
        mean = flat.mean(1, keepdim=True)
        var = (flat - mean).square_().mean(1, keepdim=True)  # two-pass variance
        scale = self.weight * torch.rsqrt(var + self.eps)
        out = torch.addcmul(self.bias - mean * scale, flat, scale)  # x * scale + shift, as the native CPU kernel
        self._update_running(mean[:, 0], var[:, 0], b * h * w)
        return out.to(x.dtype).view(t, b, h, w, c).permute(0, 1, 4, 2, 3)


def _merged(module: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Apply a per-image module to ``[T, B, ...]`` through the merged ``[T * B, ...]`` batch."""
    y = module(x.reshape(-1, *x.shape[2:]))
    return y.view(*x.shape[:2], *y.shape[1:])


class _AvgPoolFunction(torch.autograd.Function):
    """``F.avg_pool2d(x, k, k)`` whose backward hands the native kernel the gradient in ``x``'s memory layout: a
    gradient in another layout (the classifier's reshape gives one) sends the channels-last CPU kernel down a
    path about 6x slower. Same numbers as the plain call, gradient included."""

    @staticmethod
    def forward(ctx, x: Tensor, k: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.k = k
        return F.avg_pool2d(x, k, k)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        k = ctx.k
        return torch.ops.aten.avg_pool2d_backward(grad.contiguous(memory_format=layout), x, [k, k], [k, k], [0, 0], False, True, None), None


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d(k, k)`` (no padding) with a backward that keeps the input's memory layout; ``k = 1`` returns
    its input (the identity, without a copy)."""

    def __init__(self, k: int) -> None:
        super().__init__(k, k)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        k = cast(int, self.kernel_size)
        return x if k == 1 else _AvgPoolFunction.apply(x, k)


class Edge(nn.Module):
    """One cell edge: ``skip``, ``conv1x1``/``conv3x3`` (LIF -> conv, no bias -> BN) or ``avgpool3x3``."""

    def __init__(self, op: str, channels: int, learnable_tau: bool = False) -> None:
        super().__init__()
        self.op = op
        if op in ("conv1x1", "conv3x3"):
            k = 1 if op == "conv1x1" else 3
            self.lif = LIF(learnable_tau=learnable_tau)
            self.conv = nn.Conv2d(channels, channels, k, padding=k // 2, bias=False)
            self.bn = TimeBatchNorm2d(channels)
        elif op not in ("avgpool3x3", "skip"):
            raise ValueError(f"op: {op!r} is not an edge operation")

    def forward(self, x: Tensor) -> Tensor:
        if self.op == "skip":
            return x
        if self.op == "avgpool3x3":  # zero-padded 3x3 mean, zeros counted: a depthwise sum (faster on CPU) / 9
            return _merged(lambda v: F.conv2d(v, v.new_ones(v.shape[1], 1, 3, 3), padding=1, groups=v.shape[1]).div_(9.0), x)
        return self.bn(_merged(self.conv, self.lif(x)))

    def extra_repr(self) -> str:
        return self.op


def _sum(terms: list[Tensor]) -> Tensor:
    out = terms[0] + terms[1] if len(terms) > 1 else terms[0]
    for term in terms[2:]:
        out = out + term
    return out


def components(m: np.ndarray, alive: list[bool]) -> list[tuple[list[int], bool]]:
    """The alive nodes of the graph of ``m``'s non-zero edges grouped into strongly connected components, in
    topological order; each with a flag saying whether it holds a cycle."""
    n = m.shape[0]
    reach = (m != 0) | np.eye(n, dtype=bool)
    for k in range(n):  # transitive closure (Floyd-Warshall)
        reach = reach | (reach[:, k : k + 1] & reach[k : k + 1, :])
    groups: list[tuple[list[int], bool]] = []
    done: set[int] = set()
    for j in range(n):
        if alive[j] and j not in done:
            comp = [k for k in range(n) if alive[k] and reach[j, k] and reach[k, j]]
            done.update(comp)
            groups.append((comp, len(comp) > 1))
    # topological order: if A feeds B, every node reaching A also reaches B, and A's nodes do too
    groups.sort(key=lambda g: sum(bool(reach[k, g[0][0]]) for k in range(n) if alive[k]))
    return groups


class SNASCell(nn.Module):
    """A cell (SPEC section 2) of width ``channels`` over ``[T, B, C, H, W]``, built from ``cell.pruned``.

    Edge modules are named ``e{i}{j}`` and registered in evaluation order: forward edges by target
    node then source node, then backward edges by target then source.

    Evaluation plan: the alive nodes are split into the strongly connected components of the graph
    of all edges (a cycle needs a backward edge), visited in topological order. A node outside any
    cycle is computed for all T steps at once from the finished sequences of its sources (a backward
    edge's output is shifted one step later). The nodes of a cycle step through time together, with
    each in-cycle edge's LIF state carried from step to step; edges entering or leaving the cycle
    still run over all steps at once. A forward cell is therefore evaluated layer by layer.
    ``step_through_time = True`` steps every alive node instead (same numbers; for tests and benchmarks).
    """

    def __init__(self, cell: Cell | object, channels: int, learnable_tau: bool = False) -> None:
        super().__init__()
        self.cell = Cell(cell, nodes=None) if not isinstance(cell, Cell) else cell
        m = self.cell.pruned.matrix
        self.n = m.shape[0]
        self.forward_in = [[i for i in range(j) if m[i, j]] for j in range(self.n)]
        self.backward_in = [[i for i in range(j + 1, self.n) if m[i, j]] for j in range(self.n)]
        self.edges = nn.ModuleDict()
        for j in range(self.n):
            for i in self.forward_in[j]:
                self.edges[edge_name(i, j)] = Edge(OPS[m[i, j]], channels, learnable_tau)
        for j in range(self.n):
            for i in self.backward_in[j]:
                self.edges[edge_name(i, j)] = Edge(OPS[m[i, j]], channels, learnable_tau)
        self.alive = [bool(a) for a in self.cell.pruned.alive]
        out_lifs: list[list[LIF]] = [[] for _ in range(self.n)]
        for name, edge in self.edges.items():
            lif = getattr(edge, "lif", None)
            if isinstance(lif, LIF):
                out_lifs[edge_nodes(name)[0]].append(lif)
        self.sibling_lifs = out_lifs
        self.groups = components(m, self.alive)
        self.step_through_time = False

    @property
    def recurrent(self) -> bool:
        """True when some nodes step through time (a cycle, or ``step_through_time``)."""
        return self.step_through_time or any(cyclic for _, cyclic in self.groups)

    def forward(self, x: Tensor) -> Tensor:
        groups = [([k for k in range(self.n) if self.alive[k]], True)] if self.step_through_time else self.groups
        seq: list[Tensor | None] = [None] * self.n
        with share_spikes(self.sibling_lifs):
            for nodes, cyclic in groups:
                if cyclic:
                    self._step_group(nodes, x, seq)
                else:
                    j = nodes[0]
                    seq[j] = _sum(self._inputs(j, x, seq, set()))  # alive: has an input
        return seq[-1]  # type: ignore[return-value]

    def _inputs(self, j: int, x: Tensor, seq: list[Tensor | None], inside: set[int]) -> list[Tensor]:
        """Whole-sequence contributions into node ``j`` from finished nodes outside ``inside``."""
        terms = [x] if j == 0 else []
        terms += [self.edges[edge_name(i, j)](seq[i]) for i in self.forward_in[j] if i not in inside]
        for i in self.backward_in[j]:
            if i not in inside:
                out = self.edges[edge_name(i, j)](seq[i])
                terms.append(torch.cat([torch.zeros_like(out[:1]), out[:-1]]))  # y_i(t-1); 0 at t = 0
        return terms

    def _step_group(self, nodes: list[int], x: Tensor, seq: list[Tensor | None]) -> None:
        """Step the nodes of one cycle through time (in index order within a step)."""
        inside = set(nodes)
        external = {j: self._inputs(j, x, seq, inside) for j in nodes}
        ext = {j: _sum(terms) if terms else None for j, terms in external.items()}
        lifs = [m for name, edge in self.edges.items() if inside.issuperset(edge_nodes(name))
                for m in edge.modules() if isinstance(m, LIF)]
        delayed: dict[int, Tensor | None] = {j: None for j in nodes}
        steps: dict[int, list[Tensor]] = {j: [] for j in nodes}
        with carry_state(lifs):
            for t in range(x.shape[0]):
                y: dict[int, Tensor] = {}
                for j in nodes:
                    terms = [self.edges[edge_name(i, j)](y[i]) for i in self.forward_in[j] if i in inside]
                    if ext[j] is not None:
                        terms.insert(0, ext[j][t : t + 1])  # type: ignore[index]
                    if delayed[j] is not None:
                        terms.append(delayed[j])  # type: ignore[arg-type]
                    y[j] = _sum(terms) if terms else torch.zeros_like(x[t : t + 1])  # only backward inputs, t = 0
                    steps[j].append(y[j])
                # backward edges inside the cycle run at every step, the last included (as in the release)
                delayed = {j: _sum(back) if (back := [self.edges[edge_name(i, j)](y[i]) for i in self.backward_in[j] if i in inside]) else None
                           for j in nodes}
        for j in nodes:
            seq[j] = torch.cat(steps[j])


class SNASNet(nn.Module):
    """The SNASNet skeleton of SPEC section 3 around two copies of one cell (own weights each).

    ``forward(x[B, C, H, W]) -> class scores [B, K]`` (mean over T steps).
    """

    def __init__(self, cell: Cell | object, config: NetworkConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.cell = Cell(cell) if not isinstance(cell, Cell) else cell
        self.stem = nn.Sequential(nn.Conv2d(c.in_channels, c.c1, 3, stride=c.stem_stride, padding=1, bias=False), nn.BatchNorm2d(c.c1))
        self.cell1 = SNASCell(self.cell, c.c1, c.learnable_tau)
        self.bn1 = TimeBatchNorm2d(c.c1)
        self.lif1 = LIF(learnable_tau=c.learnable_tau)
        self.conv = nn.Conv2d(c.c1, c.c2, 3, padding=1, bias=False)
        self.bn2 = TimeBatchNorm2d(c.c2)
        self.pool1 = AvgPool2d(2)
        self.cell2 = SNASCell(self.cell, c.c2, c.learnable_tau)
        self.bn3 = TimeBatchNorm2d(c.c2)
        self.lif2 = LIF(learnable_tau=c.learnable_tau)
        self.pool2 = AvgPool2d(c.pool)
        self.fc1 = nn.Linear(c.features, c.hidden, bias=False)
        self.lif3 = LIF(learnable_tau=c.learnable_tau)
        self.fc2 = nn.Linear(c.hidden, c.num_classes * c.group, bias=True)
        self._keep_mask = False  # under persist_network_state: the dropout mask of the first pass is kept
        self._mask: Tensor | None = None
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        c = self.config
        if x.dim() != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"input: expected [B, {c.in_channels}, H, W], got shape {tuple(x.shape)}")
        b = x.shape[0]
        if cast(nn.Conv2d, self.stem[0]).weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        static = self.stem(x)
        y = self.cell1(static.unsqueeze(0).expand(c.timesteps, *static.shape))
        y = self.lif1(self.bn1(y))
        y = _merged(self.pool1, self.bn2(_merged(self.conv, y)))
        y = self.lif2(self.bn3(self.cell2(y)))
        y = _merged(self.pool2, y).reshape(c.timesteps, b, -1)
        if self.training and c.dropout > 0:
            mask = self._mask if self._mask is not None else F.dropout(torch.ones_like(y[0]), c.dropout, training=True)
            if self._keep_mask:
                self._mask = mask
            y = y * mask
        y = self.fc2(self.lif3(self.fc1(y)))
        return y.view(c.timesteps, b, c.num_classes, c.group).mean(-1).mean(0)

    def lif_layers(self) -> list[tuple[str, LIF]]:
        """Every LIF layer with its module name, in registration order: the forward order of the skeleton;
        inside a cell, edges by target node then source node, backward edges last (for a forward cell
        that is the order in which they run)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, LIF)]

    def _output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-image, per-step output shape of each top-level block (analytic, no forward pass)."""
        c = self.config
        s1, s2, s3 = (c.c1, c.stem_size, c.stem_size), (c.c2, c.cell2_size, c.cell2_size), (c.c2, c.final_size, c.final_size)
        wide = (c.c2, c.stem_size, c.stem_size)
        return {"stem": s1, "cell1": s1, "bn1": s1, "lif1": s1, "conv": wide, "bn2": wide, "pool1": s2, "cell2": s2,
                "bn3": s2, "lif2": s2, "pool2": s3, "fc1": (c.hidden,), "lif3": (c.hidden,), "fc2": (c.num_classes * c.group,)}

    def lif_neurons(self) -> dict[str, int]:
        """Neurons per image per time step of each LIF layer (name -> count), in forward order."""
        shapes = self._output_shapes()
        return {name: math.prod(shapes[name.split(".")[0]]) for name, _ in self.lif_layers()}

    def describe(self) -> list[dict[str, Any]]:
        """One row per layer in forward order: ``name, type, output`` (per image and step), ``params``
        and, for LIF layers, ``neurons``. Works on a ``meta``-device model."""
        shapes = self._output_shapes()
        rows = []
        for name, m in self.named_modules():
            if not name or (list(m.children()) and not isinstance(m, LIF)) or isinstance(m, nn.ModuleDict):
                continue
            kind = m.op if isinstance(m, Edge) else type(m).__name__
            row: dict[str, Any] = {"name": name, "type": kind, "output": list(shapes[name.split(".")[0]]),
                                   "params": sum(p.numel() for p in m.parameters())}
            if isinstance(m, LIF):
                row["neurons"] = math.prod(row["output"])
            rows.append(row)
        return rows


def init_weights(model: nn.Module) -> None:
    """SPEC initialisation: conv Kaiming-uniform (a = 2), BN weight 1 / bias 0, linear N(0, 0.01) / bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_network(cell: Cell | object, config: NetworkConfig, channels_last: bool = True) -> SNASNet:
    """The SNASNet for ``cell`` (any accepted matrix form; built from its pruned matrix) on CPU.

    ``channels_last``: store conv weights (and so activations) channels-last, which is several times
    faster for the narrow convolutions of the bench skeleton on CPU; the numbers are the same up to
    float rounding of the convolution.
    """
    model = SNASNet(cell, config)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def count_params(model: nn.Module) -> int:
    """Number of trainable parameter elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def spike_stats(model: SNASNet, x: Tensor) -> dict[str, Any]:
    """Spikes of one forward pass of ``x[B, ...]`` (current train/eval mode, no gradient).

    Returns ``spikes_per_image`` (all LIF layers, all steps), ``rate`` (spikes / neuron-steps) and
    ``layers``: per LIF layer ``name, neurons`` (per image per step), ``steps`` (steps it fired
    on), ``spikes_per_image`` and ``rate``.
    """
    counts: dict[str, list[float]] = {name: [0.0, 0.0, 0] for name, _ in model.lif_layers()}  # type: ignore[misc]

    def hook(name: str):
        def record(_m: nn.Module, _inp: Any, out: Tensor) -> None:
            rec = counts[name]
            rec[0] += float(out.sum(dtype=torch.float64))
            rec[1] = out[0, 0].numel()
            rec[2] += out.shape[0]

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.lif_layers()]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    b = x.shape[0]
    layers: list[dict[str, Any]] = [
        {"name": name, "neurons": int(n), "steps": int(steps), "spikes_per_image": s / b, "rate": s / (b * n * steps) if steps else 0.0}
        for name, (s, n, steps) in counts.items()
    ]
    total = sum(r["spikes_per_image"] for r in layers)
    slots = sum(r["neurons"] * r["steps"] for r in layers)
    return {"spikes_per_image": total, "rate": total / slots if slots else 0.0, "layers": layers}


@contextmanager
def persist_network_state(model: SNASNet) -> Iterator[None]:
    """Within this context the model's LIF membranes and dropout mask carry over from one forward pass to the next,
    as in the authors' search, which never resets its network between the two scoring passes of a cell (SpikingJelly
    keeps a neuron's membrane and a ``Dropout`` mask until ``reset_net``). Cleared on exit."""
    model._keep_mask, model._mask = True, None
    try:
        with persist_state(m for _, m in model.lif_layers()):
            yield
    finally:
        model._keep_mask, model._mask = False, None
