"""A *pack*: K SNASNets (any cells of one node count, one skeleton) trained as one model (horizontal fusion).

Layout: network ``k`` owns channel block ``k`` of every activation, ``[T, B, K * C, H, W]``; its inputs are its own
images (its own data order and augmentation), stacked along channels ``[B, K * Cin, H, W]``. Convolutions are
grouped (one group per network), batch norms run over ``K * C`` channels (per-channel statistics, hence per
network), LIF layers are elementwise (one call for all K), the two linears run network by network (as the lone
network computes them), and the output is ``[K, B, classes]``.

Cells: the pack evaluates the *union* of its cells' pruned graphs. At each edge position ``(i, j)`` the networks
holding op ``o`` there form a member set; op ``o`` runs once on their channel blocks (a view when the set is all
networks or one contiguous run of them) and adds into node ``j``'s blocks of those networks, in the order the single
network sums its terms. Nodes are visited by the strongly connected components of the union graph: a node in a
cycle of the union steps through time, which gives the numbers of the whole-sequence evaluation for a network whose
own graph has no cycle there (``SNASCell.step_through_time``). A network's blocks of a node dead in its own cell
stay zero and are never read by it.

Invariants
----------
* :meth:`PackedSNASNet.pack` copies each network's parameters and buffers into its blocks and :meth:`unpack`
  copies them back: nothing is shared or coupled between networks, so with the loss a *sum* of the K
  per-network losses, every network gets its own gradient, and elementwise optimisers (SGD, Adam, with their
  weight decay) give its own update: mathematically exactly; numerically up to float rounding, since the kernels see
  other shapes and layouts (``tests/test_packed.py``: 1e-9 relative in float64).
* Dropout draws network ``k``'s per-sample mask from ``generators[k]`` with the same call ``F.dropout`` makes on
  CPU (``bernoulli_(1 - p) / (1 - p)``), so a generator positioned where network ``k``'s global stream stands
  gives its masks.
* Learnable time constants (PLIF) are not packed (edges leaving one node would need separate LIF layers).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnbench.network import SNASCell, SNASNet, TimeBatchNorm2d, AvgPool2d, _merged, components
from snnbench.neuron import LIF, carry_state
from snnbench.space import OPS, edge_name, edge_nodes


def packable(models: Sequence[SNASNet]) -> None:
    """Raise ``ValueError`` unless ``models`` can form one pack (one skeleton, one node count, fixed tau)."""
    if not models:
        raise ValueError("pack: needs at least one network")
    first = models[0]
    for m in models[1:]:
        if m.config != first.config:
            raise ValueError("pack: all networks must share one skeleton (network config)")
        if m.cell1.n != first.cell1.n:
            raise ValueError(f"pack: all cells must have one node count, got {first.cell1.n} and {m.cell1.n}")
    if first.config.learnable_tau:
        raise ValueError("pack: learnable time constants (PLIF) are not packed; train such networks alone")


class _Members:
    """Which networks of a K-pack an op runs for, and how to reach their channel blocks of width ``channels``."""

    def __init__(self, members: list[int], k: int, channels: int) -> None:
        self.members, self.k, self.channels = members, k, channels
        self.full = members == list(range(k))
        self.run = members == list(range(members[0], members[0] + len(members)))  # one contiguous run: a view
        self._index = {torch.device("cpu"): torch.tensor([m * channels + c for m in members for c in range(channels)])}

    def index(self, device: torch.device) -> Tensor:
        """The members' channel indices (int64) on ``device`` (cached)."""
        if device not in self._index:
            self._index[device] = self._index[torch.device("cpu")].to(device)
        return self._index[device]

    def take(self, x: Tensor) -> Tensor:
        """The members' channel blocks of ``x[T, B, K * C, ...]``."""
        if self.full:
            return x
        if self.run:
            return x.narrow(2, self.members[0] * self.channels, len(self.members) * self.channels)
        return x.index_select(2, self.index(x.device))


class _PackedEdge(nn.Module):
    """Op ``op`` at one edge position for the networks ``members`` (grouped conv + batch norm over their blocks)."""

    def __init__(self, op: str, members: _Members, channels: int) -> None:
        super().__init__()
        self.op, self.where = op, members
        g = len(members.members)
        if op in ("conv1x1", "conv3x3"):
            size = 1 if op == "conv1x1" else 3
            self.conv = nn.Conv2d(g * channels, g * channels, size, padding=size // 2, groups=g, bias=False)
            self.bn = TimeBatchNorm2d(g * channels)

    def forward(self, y: Tensor, spikes: Tensor | None) -> Tensor:
        """Output for the members' blocks; ``spikes`` is the LIF output of ``y`` (needed by conv ops only)."""
        if self.op == "skip":
            return self.where.take(y)
        if self.op == "avgpool3x3":
            v = self.where.take(y)
            return _merged(lambda u: F.conv2d(u, u.new_ones(u.shape[1], 1, 3, 3), padding=1, groups=u.shape[1]).div_(9.0), v)
        assert spikes is not None
        return self.bn(_merged(self.conv, self.where.take(spikes)))


def _gather(terms: list[tuple[_Members | None, Tensor]], like: Tensor) -> Tensor | None:
    """Sum of terms (``None`` member sets: every network), each added into its members' blocks in the order given."""
    acc: Tensor | None = None
    for where, t in terms:
        if where is None or where.full:
            acc = t if acc is None else acc + t
        else:
            base = acc if acc is not None else torch.zeros_like(like, dtype=t.dtype)
            common = torch.promote_types(base.dtype, t.dtype)  # as `+` promotes (terms differ under autocast)
            acc = base.to(common).index_add(2, where.index(t.device), t.to(common))
    return acc


class PackedCell(nn.Module):
    """The union of K cells (each network's own edges on its own channel blocks), over ``[T, B, K * C, H, W]``."""

    def __init__(self, cells: Sequence[SNASCell], channels: int) -> None:
        super().__init__()
        k = len(cells)
        self.n = cells[0].n
        mats = [c.cell.pruned.matrix for c in cells]
        self.k, self.channels = k, channels
        self.edges = nn.ModuleDict()
        self.links: dict[str, list[tuple[int, str]]] = {}  # packed edge name -> (network, single edge name) per block
        self.forward_in: list[list[int]] = [[] for _ in range(self.n)]
        self.backward_in: list[list[int]] = [[] for _ in range(self.n)]
        union = np.zeros((self.n, self.n), dtype=np.int64)
        for backward in (False, True):  # the single network's registration order: forward edges, then backward
            for j in range(self.n):
                for i in (range(j + 1, self.n) if backward else range(j)):
                    for op in range(1, len(OPS)):
                        members = [net for net, m in enumerate(mats) if m[i, j] == op]
                        if members:
                            name = f"{edge_name(i, j)}_{OPS[op]}"
                            self.edges[name] = _PackedEdge(OPS[op], _Members(members, k, channels), channels)
                            self.links[name] = [(net, edge_name(i, j)) for net in members]
                            union[i, j] = op
                    if union[i, j]:
                        (self.backward_in if backward else self.forward_in)[j].append(i)
        self._at: dict[tuple[int, int], list[_PackedEdge]] = {}
        for name, edge in self.edges.items():
            self._at.setdefault(edge_nodes(name), []).append(edge)  # type: ignore[arg-type]
        self.alive = [any(c.alive[j] for c in cells) for j in range(self.n)]
        self.groups = components(union, self.alive)
        self.lif = LIF()  # whole-sequence spikes of a node (edges of fixed, equal tau share them)
        self.step_lifs = nn.ModuleList(LIF() for _ in range(self.n))  # per source node, carried through a cycle

    def _ops(self, i: int, j: int) -> list[_PackedEdge]:
        return self._at[(i, j)]

    def forward(self, x: Tensor) -> Tensor:
        seq: list[Tensor | None] = [None] * self.n
        spikes: dict[int, Tensor] = {}
        for nodes, cyclic in self.groups:
            if cyclic:
                self._step_group(nodes, x, seq, spikes)
            else:
                j = nodes[0]
                seq[j] = _gather(self._inputs(j, x, seq, spikes, set()), x)
        return seq[-1]  # type: ignore[return-value]

    def _run(self, i: int, j: int, y: Tensor, spikes: Tensor | None) -> list[tuple[_Members | None, Tensor]]:
        return [(e.where, e(y, spikes)) for e in self._ops(i, j)]

    def _seq_spikes(self, i: int, seq: list[Tensor | None], spikes: dict[int, Tensor]) -> Tensor:
        if i not in spikes:
            spikes[i] = self.lif(seq[i])
        return spikes[i]

    def _inputs(self, j: int, x: Tensor, seq: list[Tensor | None], spikes: dict[int, Tensor],
                inside: set[int]) -> list[tuple[_Members | None, Tensor]]:
        terms: list[tuple[_Members | None, Tensor]] = [(None, x)] if j == 0 else []
        for i in self.forward_in[j]:
            if i not in inside:
                terms += self._run(i, j, seq[i], self._seq_spikes(i, seq, spikes))  # type: ignore[arg-type]
        for i in self.backward_in[j]:
            if i not in inside:
                for where, out in self._run(i, j, seq[i], self._seq_spikes(i, seq, spikes)):  # type: ignore[arg-type]
                    terms.append((where, torch.cat([torch.zeros_like(out[:1]), out[:-1]])))  # y_i(t-1); 0 at t = 0
        return terms

    def _step_group(self, nodes: list[int], x: Tensor, seq: list[Tensor | None], spikes: dict[int, Tensor]) -> None:
        inside = set(nodes)
        ext = {j: _gather(self._inputs(j, x, seq, spikes, inside), x) for j in nodes}
        delayed: dict[int, Tensor | None] = {j: None for j in nodes}
        steps: dict[int, list[Tensor]] = {j: [] for j in nodes}
        with carry_state([self.step_lifs[j] for j in nodes]):  # type: ignore[misc]
            for t in range(x.shape[0]):
                like = x[t : t + 1]
                y: dict[int, Tensor] = {}
                s: dict[int, Tensor] = {}

                def step_spikes(i: int) -> Tensor:
                    if i not in s:
                        s[i] = self.step_lifs[i](y[i])
                    return s[i]

                for j in nodes:
                    terms: list[tuple[_Members | None, Tensor]] = []
                    if ext[j] is not None:
                        terms.append((None, ext[j][t : t + 1]))  # type: ignore[index]
                    for i in self.forward_in[j]:
                        if i in inside:
                            terms += self._run(i, j, y[i], step_spikes(i))
                    if delayed[j] is not None:
                        terms.append((None, delayed[j]))  # type: ignore[arg-type]
                    acc = _gather(terms, like)
                    y[j] = acc if acc is not None else torch.zeros_like(like)  # only backward inputs, t = 0
                    steps[j].append(y[j])
                # backward edges inside the cycle run at every step, the last included (as in the release)
                delayed = {j: _gather([term for i in self.backward_in[j] if i in inside
                                       for term in self._run(i, j, y[i], step_spikes(i))], like) for j in nodes}
        for j in nodes:
            seq[j] = torch.cat(steps[j])


class PackedSNASNet(nn.Module):
    """K SNASNets as one model: ``forward(x[B, K * Cin, H, W], generators) -> class scores [K, B, classes]``.

    >>> packed = PackedSNASNet(models)       # copies their parameters and buffers (``pack``)
    >>> packed.unpack()                      # copies them back into ``models`` (e.g. to evaluate one network)
    """

    def __init__(self, models: Sequence[SNASNet]) -> None:
        super().__init__()
        packable(models)
        self.models = list(models)  # not registered: the pack owns its own (packed) parameters
        c = models[0].config
        k = len(models)
        self.config, self.k = c, k
        stem = models[0].stem[0]
        assert isinstance(stem, nn.Conv2d)
        channels_last = stem.weight.is_contiguous(memory_format=torch.channels_last)
        self.stem_conv = nn.Conv2d(k * c.in_channels, k * c.c1, 3, stride=c.stem_stride, padding=1, groups=k, bias=False)
        self.stem_bn = nn.BatchNorm2d(k * c.c1)
        self.cell1 = PackedCell([m.cell1 for m in models], c.c1)
        self.bn1 = TimeBatchNorm2d(k * c.c1)
        self.lif1 = LIF()
        self.conv = nn.Conv2d(k * c.c1, k * c.c2, 3, padding=1, groups=k, bias=False)
        self.bn2 = TimeBatchNorm2d(k * c.c2)
        self.pool1 = AvgPool2d(2)
        self.cell2 = PackedCell([m.cell2 for m in models], c.c2)
        self.bn3 = TimeBatchNorm2d(k * c.c2)
        self.lif2 = LIF()
        self.pool2 = AvgPool2d(c.pool)
        self.fc1 = nn.Linear(c.features, k * c.hidden, bias=False)  # weight: K blocks [hidden, features]
        self.lif3 = LIF()
        self.fc2 = nn.Linear(c.hidden, k * c.num_classes * c.group, bias=True)
        every = list(range(k))
        self.links: dict[str, list[tuple[int, str]]] = {}  # packed tensor name -> (network, its name) per block
        for packed, single in (("stem_conv", "stem.0"), ("stem_bn", "stem.1"), ("bn1", "bn1"), ("conv", "conv"),
                               ("bn2", "bn2"), ("bn3", "bn3"), ("fc1", "fc1"), ("fc2", "fc2")):
            for name, _ in getattr(self, packed).state_dict().items():
                self.links[f"{packed}.{name}"] = [(net, f"{single}.{name}") for net in every]
        for cell in ("cell1", "cell2"):
            for edge, blocks in getattr(self, cell).links.items():
                for name in getattr(self, cell).edges[edge].state_dict():
                    self.links[f"{cell}.edges.{edge}.{name}"] = [(net, f"{cell}.edges.{e}.{name}") for net, e in blocks]
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.to(next(models[0].parameters()).device, next(models[0].parameters()).dtype)
        self.pack()

    @torch.no_grad()
    def pack(self) -> None:
        """Copy every network's parameters and buffers into its blocks."""
        mine = self.state_dict(keep_vars=True)
        theirs = [m.state_dict(keep_vars=True) for m in self.models]
        for name, blocks in self.links.items():
            parts = [theirs[net][single] for net, single in blocks]
            if mine[name].dim() == 0:  # num_batches_tracked: equal in every network of a pack
                mine[name].copy_(parts[0])
            else:
                mine[name].copy_(torch.cat(parts))

    @torch.no_grad()
    def unpack(self) -> None:
        """Copy every network's blocks back into its own model."""
        mine = self.state_dict(keep_vars=True)
        theirs = [m.state_dict(keep_vars=True) for m in self.models]
        for name, blocks in self.links.items():
            whole = mine[name]
            if whole.dim() == 0:
                for net, single in blocks:
                    theirs[net][single].copy_(whole)
                continue
            for (net, single), part in zip(blocks, whole.split(whole.shape[0] // len(blocks))):
                theirs[net][single].copy_(part)

    def forward(self, x: Tensor, generators: Sequence[torch.Generator] | None = None) -> Tensor:
        """``x[B, K * Cin, H, W]``: network ``k``'s images in channel block ``k``. In training mode with dropout,
        ``generators[k]`` draws network ``k``'s mask."""
        c, k = self.config, self.k
        if x.dim() != 4 or x.shape[1] != k * c.in_channels:
            raise ValueError(f"input: expected [B, {k * c.in_channels}, H, W], got shape {tuple(x.shape)}")
        b = x.shape[0]
        if self.stem_conv.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        static = self.stem_bn(self.stem_conv(x))
        y = self.cell1(static.unsqueeze(0).expand(c.timesteps, *static.shape))
        y = self.lif1(self.bn1(y))
        y = _merged(self.pool1, self.bn2(_merged(self.conv, y)))
        y = self.lif2(self.bn3(self.cell2(y)))
        y = _merged(self.pool2, y).reshape(c.timesteps, b, k, -1)  # per network: (c, h, w) order, as the single one
        if self.training and c.dropout > 0:
            if generators is None or len(generators) != k:
                raise ValueError(f"pack: training with dropout needs {k} generators (one per network)")
            masks = [torch.empty(b, y.shape[-1], dtype=y.dtype, device=y.device).bernoulli_(1 - c.dropout, generator=g)
                     .div_(1 - c.dropout) for g in generators]  # what F.dropout draws on CPU
            y = y * torch.stack(masks, 1)
        t = c.timesteps
        # the linears network by network, as the lone network computes them (a batched matmul rounds differently)
        w1, w2, b2 = self.fc1.weight.chunk(k), self.fc2.weight.chunk(k), self.fc2.bias.chunk(k)
        h = torch.stack([F.linear(y[:, :, net], w1[net]) for net in range(k)], 2)  # [T, B, K, hidden]
        s = self.lif3(h)
        z = torch.stack([F.linear(s[:, :, net], w2[net], b2[net]) for net in range(k)])  # [K, T, B, out]
        return z.view(k, t, b, c.num_classes, c.group).mean(-1).mean(1)
