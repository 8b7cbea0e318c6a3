"""Surrogate-gradient (STBP) training of one cell: SGD + momentum, cosine schedule, on-device data pipeline.

Invariants
----------
* The protocol defaults are SPEC section 4: SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine annealing
  per epoch from ``lr`` to ``lr * lr_min_factor`` (0.01) over ``epochs``, batch 64, random crop + flip.
* The whole dataset sits on the training device as uint8; every epoch draws one index permutation and the
  augmentation on the device from one seeded generator; no DataLoader, no per-image Python, and no host
  synchronisation inside an epoch (loss and correct counts accumulate on the device).
* ``seed`` fixes initial weights and dropout masks (``torch.manual_seed``) and the shuffling / augmentation
  stream (a separate generator): two runs with the same arguments on the same CPU give bit-identical
  results (another CPU's vector kernels change the last bits, which training amplifies).
* On CUDA the forward pass runs under bf16 autocast (``amp``); the loss is computed in float32 (float64 for a
  float64 model).
* ``dampening`` (SGD's) is 0 unless set, and a config at 0 serialises without it: the settings, hence the protocol ids,
  of configs made before the field existed are unchanged.
* With ``checkpoint`` set, the state after every epoch is written atomically (``torch.save`` of tensors,
  lists and numbers; read back with ``weights_only=True``); a rerun resumes from it and ends with exactly
  the result of an uninterrupted run (bit for bit on CPU).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from snnbench import fields
from snnbench.data import NAMES, Dataset, Split, crop_flip, draw_crop_flip
from snnbench.names import TRAIN_NETWORK, TRAIN_PRESETS
from snnbench.network import NetworkConfig, SNASNet, build_network, count_params, network_config, spike_stats
from snnbench.scores import resolve_device
from snnbench.space import Cell

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """A training budget and optimiser. ``test_epochs`` are 1-based; the test split is also scored at the end.
    Fields are checked on construction and held as plain ``int`` / ``float`` / ``bool`` (``test_epochs``: a
    sorted tuple of distinct epochs within the budget): equal settings serialise (and hash) equally."""

    epochs: int = 300
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    lr_min_factor: float = 0.01
    augment: bool = True
    test_epochs: tuple[int, ...] = ()
    eval_batch_size: int = 500
    amp: bool = True
    dampening: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            object.__setattr__(self, name, fields.integer("train", name, getattr(self, name)))
        for name in ("lr", "momentum", "weight_decay", "lr_min_factor", "dampening"):
            object.__setattr__(self, name, fields.real("train", name, getattr(self, name)))
        for name in ("nesterov", "augment", "amp"):
            object.__setattr__(self, name, fields.boolean("train", name, getattr(self, name)))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train config: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name, ok, allowed in (("lr", self.lr > 0, "> 0"), ("lr_min_factor", 0 <= self.lr_min_factor <= 1, "in [0, 1]"),
                                  ("momentum", 0 <= self.momentum < 1, "in [0, 1)"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                                  ("dampening", 0 <= self.dampening <= 1, "in [0, 1]")):
            if not ok:
                raise ValueError(f"train config: {name} must be {allowed}, got {getattr(self, name)!r}")
        if self.dampening and (self.optimizer != "sgd" or self.nesterov):
            raise ValueError(f"train config: dampening {self.dampening!r} needs plain SGD (optimizer sgd, nesterov off)")
        if isinstance(self.test_epochs, (str, bytes)) or not isinstance(self.test_epochs, (list, tuple)):
            raise ValueError(f"train config: test_epochs must be a list of epochs, got {self.test_epochs!r}")
        epochs = {fields.integer("train", "test_epochs entry", e) for e in self.test_epochs}
        if epochs and max(epochs) > self.epochs:
            raise ValueError(f"train config: test_epochs {sorted(epochs)} go past the budget of {self.epochs} epochs")
        object.__setattr__(self, "test_epochs", tuple(sorted(epochs)))

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: ``lr_min + (lr - lr_min) * (1 + cos(pi * epoch / epochs)) / 2``."""
        lr_min = self.lr * self.lr_min_factor
        return lr_min + (self.lr - lr_min) * (1 + math.cos(math.pi * epoch / self.epochs)) / 2

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values; ``dampening`` only when set (see the module invariants)."""
        d = asdict(self)
        d["test_epochs"] = list(self.test_epochs)
        if self.dampening == 0:
            del d["dampening"]
        return d


_TRAIN_PRESETS = {
    "paper": TrainConfig(),
    # bench: a short budget for building tables. From the SPEC initialisation (linear weights N(0, 0.01))
    # the narrow bench skeletons start with a silent classifier LIF layer and near-zero class scores; SGD
    # (lr 0.1 or 1.0) stays on that plateau for hundreds of steps on `digits`, Adam at 3e-3 leaves it.
    "bench": TrainConfig(epochs=12, batch_size=64, optimizer="adam", lr=3e-3, weight_decay=0.0),
    # release: what the authors' search_snn.py really trains with. Its call SGD(params, lr, momentum, weight_decay)
    # passes 5e-4 positionally into SGD's fourth parameter, dampening: weight decay 0, dampening 5e-4. Its README
    # runs use batch 32; it trains in float32 (no autocast). Schedule, lr, momentum, epochs and augmentation are
    # the paper's (cosine to lr / 100 over 300 epochs, random crop + flip).
    "release": TrainConfig(batch_size=32, weight_decay=0.0, dampening=5e-4, amp=False),
}


def train_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """The ``paper`` protocol (SPEC section 4), the short ``bench`` budget or the ``release`` code's optimiser (the
    paper's recipe with weight decay 0 and dampening 5e-4, batch 32, float32), with field overrides."""
    if preset not in _TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {preset!r}: use one of {', '.join(TRAIN_PRESETS)}")
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    return replace(_TRAIN_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


def network_config_for(dataset: Dataset, preset: str = "bench", **overrides: Any) -> NetworkConfig:
    """The skeleton for ``dataset``: its named preset, or for another (``.npz``) set the CIFAR-10 skeleton
    (Tiny-ImageNet's for images of 64 pixels or more) with the set's classes, channels and size."""
    name = dataset.name if dataset.name in NAMES else ("tinyimagenet" if dataset.image_size >= 64 else "cifar10")
    preset = TRAIN_NETWORK.get(preset, preset)
    shape = {"num_classes": dataset.num_classes, "in_channels": dataset.channels, "image_size": dataset.image_size}
    return network_config(name, preset, **{**shape, **overrides})


@dataclass
class _State:
    """Everything that changes during training (what a checkpoint holds besides the weights)."""

    epoch: int = 0
    records: list = field(default_factory=list)
    seconds: float = 0.0


@torch.inference_mode()
def evaluate(model: torch.nn.Module, dataset: Dataset, split: Split, batch_size: int, amp: bool) -> float | None:
    """Top-1 accuracy of ``model`` (eval mode) on ``split`` (``None`` if empty); one host sync at the end."""
    if len(split) == 0:
        return None
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=split.labels.device)
    for start in range(0, len(split), batch_size):
        x = dataset.normalize(split.images[start : start + batch_size])
        with _autocast(x.device, amp):
            out = model(x)
        correct += (out.argmax(1) == split.labels[start : start + batch_size]).sum()
    return correct.item() / len(split)


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def _loss_dtype(out: torch.Tensor) -> torch.Tensor:
    """Class scores for the loss: float32, or float64 for a float64 model."""
    return out if out.dtype == torch.float64 else out.float()


def _test_spikes(model: SNASNet, dataset: Dataset, split: Split, batch_size: int) -> dict[str, Any]:
    """``spike_stats`` over the whole split (eval mode): batch results averaged with weights = batch sizes."""
    model.eval()
    total: dict[str, Any] = {}
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            x = dataset.normalize(split.images[start : start + batch_size])
            stats = spike_stats(model, x)
            w = len(x) / len(split)
            total = _weighted_add(total, stats, w)
    return total


def _weighted_add(acc: Any, new: Any, w: float) -> Any:
    """``acc + w * new`` over nested dicts/lists of floats (ints, strings and flags are taken from ``new``)."""
    if isinstance(new, dict):
        acc = acc if isinstance(acc, dict) else {}
        return {k: _weighted_add(acc.get(k), v, w) for k, v in new.items()}
    if isinstance(new, (list, tuple)):
        acc = acc if isinstance(acc, list) else [None] * len(new)
        return [_weighted_add(a, v, w) for a, v in zip(acc, new)]
    if not isinstance(new, float):
        return new
    return (acc or 0.0) + w * float(new)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, dampening, weight decay, nesterov) or Adam (``betas = (momentum, 0.999)``, L2 weight decay)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                           weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def train_cell(
    cell: Cell | str,
    dataset: Dataset,
    net_config: NetworkConfig,
    cfg: TrainConfig,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    *,
    checkpoint: str | os.PathLike | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``cell`` in the skeleton ``net_config`` on ``dataset`` and return a JSON-ready result.

    Result keys: ``cell``, ``hash``, ``seed``, ``device``, ``train_config``, ``net_config``, ``dataset``,
    ``params``, ``epochs`` (one record per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_acc``,
    ``val_acc``, ``seconds``, and ``test_acc`` at ``test_epochs``), ``test_acc`` and ``val_acc`` (final),
    ``spikes`` (``spike_stats`` averaged over the test split), ``seconds`` (training and evaluation time).
    ``on_epoch`` is called with each new record (after the checkpoint is written).
    """
    cell = cell if isinstance(cell, Cell) else Cell(cell)
    device = resolve_device(device)
    ckpt = _checkpoint_path(checkpoint) if checkpoint is not None else None
    identity = {"cell": cell.text, "seed": seed, "train_config": cfg.to_dict(), "net_config": net_config.to_dict(),
                "dataset": dataset.summary(), "device": device.type}  # a run resumes on the device type it began on
    run = _start(cell, dataset, net_config, cfg, seed, device)
    state = _State()
    if ckpt is not None and ckpt.is_file():
        state = _load_checkpoint(ckpt, identity, run.model, run.opt, run.gen, device)
    steps = math.ceil(len(run.data.train) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps, initial=state.epoch * steps, desc=f"train {cell.text}", unit="batch",
               disable=not progress, leave=False)
    try:
        while state.epoch < cfg.epochs:
            record = _train_epoch(run, state, bar)
            if ckpt is not None:
                _save_checkpoint(ckpt, identity, run.model, run.opt, run.gen, state)
            bar.set_postfix(epoch=state.epoch, loss=f"{record['train_loss']:.3f}", acc=f"{record['train_acc']:.3f}",
                            val="-" if record["val_acc"] is None else f"{record['val_acc']:.3f}")
            if on_epoch is not None:
                on_epoch(record)
    finally:
        bar.close()
    return _result(identity, cell, run, state)


@dataclass
class _Run:
    """What one :func:`train_cell` run trains with: the network and its optimiser, the data on ``device``, and the
    generator that draws every epoch's shuffle and augmentation."""

    model: SNASNet
    opt: torch.optim.Optimizer
    data: Dataset
    cfg: TrainConfig
    gen: torch.Generator
    device: torch.device


def _start(cell: Cell, dataset: Dataset, net_config: NetworkConfig, cfg: TrainConfig, seed: int,
           device: torch.device) -> _Run:
    """The seeded start of a run: ``torch.manual_seed(seed)`` then the network's weights, then the generator."""
    torch.manual_seed(seed)
    model = build_network(cell, net_config).to(device)
    data = dataset.to(device)
    gen = torch.Generator(device).manual_seed(seed)
    return _Run(model, _optimizer(model, cfg), data, cfg, gen, device)


def _train_epoch(run: _Run, state: _State, bar: Any) -> dict[str, Any]:
    """Train epoch ``state.epoch + 1``, evaluate, and append its record to ``state`` (see :func:`train_cell`)."""
    cfg, data = run.cfg, run.data
    t0 = time.perf_counter()
    lr = cfg.lr_at(state.epoch)
    train_loss, train_acc = _fit_epoch(run, lr, bar)
    state.epoch += 1
    record: dict[str, Any] = {"epoch": state.epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                              "val_acc": evaluate(run.model, data, data.val, cfg.eval_batch_size, cfg.amp)}
    if state.epoch in cfg.test_epochs or state.epoch == cfg.epochs:
        record["test_acc"] = evaluate(run.model, data, data.test, cfg.eval_batch_size, cfg.amp)
    record["seconds"] = time.perf_counter() - t0
    state.seconds += record["seconds"]
    state.records.append(record)
    return record


def _fit_epoch(run: _Run, lr: float, bar: Any) -> tuple[float, float]:
    """One pass over a fresh shuffle of the training split at learning rate ``lr``: (mean loss, accuracy). Loss and
    correct counts accumulate on the device: one host synchronisation, at the end."""
    model, opt, data, cfg = run.model, run.opt, run.data, run.cfg
    for group in opt.param_groups:
        group["lr"] = lr
    model.train()
    n = len(data.train)
    loss_sum = torch.zeros((), dtype=torch.float32, device=run.device)
    correct = torch.zeros((), dtype=torch.int64, device=run.device)
    for idx in torch.randperm(n, device=run.device, generator=run.gen).split(cfg.batch_size):
        x, y = data.train.images[idx], data.train.labels[idx]
        if cfg.augment:
            x = data.augment(x, run.gen)
        x = data.normalize(x)
        with _autocast(run.device, cfg.amp):
            out = model(x)
        loss = F.cross_entropy(_loss_dtype(out), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(idx)
        correct += (out.detach().argmax(1) == y).sum()
        bar.update(1)  # host-side counter only: no synchronisation
    return loss_sum.item() / n, correct.item() / n


def _result(identity: dict[str, Any], cell: Cell, run: _Run, state: _State) -> dict[str, Any]:
    """The JSON-ready result of a finished run (the spike statistics measured now, on the test split)."""
    t0 = time.perf_counter()
    spikes = _test_spikes(run.model, run.data, run.data.test, run.cfg.eval_batch_size)
    final = state.records[-1]
    return {
        **identity,
        "hash": cell.hash,
        "kind": cell.kind,
        "device": str(run.device),
        "params": count_params(run.model),
        "epochs": state.records,
        "val_acc": final["val_acc"],
        "test_acc": final["test_acc"],
        "spikes": spikes,
        "seconds": state.seconds + time.perf_counter() - t0,
    }


#: Networks per pack by device type (``snnbench train`` / ``build`` default; measured in docs/data.md, "Packs").
PACK = {"cpu": 1, "cuda": 8}


def default_pack(device: str | torch.device) -> int:
    """The default number of networks per pack on ``device`` (see :data:`PACK`)."""
    return PACK.get(torch.device(device).type, 1)


def _pack_batch(data: Dataset, batch: Sequence[torch.Tensor], gens: Sequence[torch.Generator],
                augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's input of a pack: network k's images ``batch[k]`` (augmented with the draws of its own generator,
    as ``train_cell`` draws them) in channel block k, ``[B, K * C, H, W]``, and its labels ``[K, B]``. The K
    crops and flips run as one gather, the normalisation as one op (the same numbers as per network)."""
    k, b = len(batch), len(batch[0])
    index = torch.cat(list(batch))
    x = data.train.images[index]
    if augment:
        draws = [draw_crop_flip(b, data.crop_padding, data.hflip, x.device, g) for g in gens]
        x = crop_flip(x, data.crop_padding, *(torch.cat(d) for d in zip(*draws)))
    x = data.normalize(x)
    return x.view(k, b, *x.shape[1:]).transpose(0, 1).reshape(b, -1, *x.shape[2:]), data.train.labels[index].view(k, b)


def train_pack(
    cells: Sequence[Cell | str],
    dataset: Dataset,
    net_config: NetworkConfig,
    cfg: TrainConfig,
    seeds: Sequence[int],
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train network ``k`` = (``cells[k]``, ``seeds[k]``) for every k as one pack (:mod:`snnbench.packed`) and return
    the :func:`train_cell` result of each, in order.

    Each network is exactly the one :func:`train_cell` trains alone: the same initialisation (built after
    ``torch.manual_seed(seed)``), dropout masks (its own generator, positioned where the global stream stands after
    its initialisation; on CUDA seeded like the CUDA default stream but drawn by another kernel, so masks differ
    from a lone run there), data order and augmentation (its own seeded generator), forward, gradient and optimiser
    update (float rounding aside). The loss is the sum of the K per-network losses. Evaluation runs on each network
    alone after its blocks are copied back. Time: each record's ``seconds`` and the result's ``seconds`` are the
    pack's wall time divided equally among its K networks (the evaluation of a network is charged to it).
    No checkpoint: a pack interrupted is trained again from the start.
    """
    from snnbench.packed import PackedSNASNet

    if len(cells) != len(seeds) or not cells:
        raise ValueError(f"pack: needs one seed per cell, got {len(cells)} cells and {len(seeds)} seeds")
    device = resolve_device(device)
    cell_list = [c if isinstance(c, Cell) else Cell(c) for c in cells]
    k = len(cell_list)
    models, drop_gens, gens = [], [], []
    for cell, seed in zip(cell_list, seeds):
        torch.manual_seed(seed)
        models.append(build_network(cell, net_config).to(device))
        drop = torch.Generator(device)
        if device.type == "cpu":
            drop.set_state(torch.get_rng_state())
        else:
            drop.manual_seed(seed)
        drop_gens.append(drop)
        gens.append(torch.Generator(device).manual_seed(seed))
    packed = PackedSNASNet(models)
    data = dataset.to(device)
    opt = _optimizer(packed, cfg)
    records: list[list[dict[str, Any]]] = [[] for _ in range(k)]
    seconds = [0.0] * k
    n = len(data.train)
    steps = math.ceil(n / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps, desc=f"train pack of {k}", unit="batch", disable=not progress, leave=False)
    try:
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            lr = cfg.lr_at(epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            packed.train()
            loss_sum = torch.zeros(k, dtype=torch.float32, device=device)
            correct = torch.zeros(k, dtype=torch.int64, device=device)
            orders = [torch.randperm(n, device=device, generator=g).split(cfg.batch_size) for g in gens]
            for batch in zip(*orders):
                x, y = _pack_batch(data, batch, gens, cfg.augment)
                with _autocast(device, cfg.amp):
                    out = packed(x, drop_gens)
                losses = torch.stack([F.cross_entropy(_loss_dtype(o), t) for o, t in zip(out, y)])  # each as alone
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
                opt.step()
                loss_sum += losses.detach() * y.shape[1]
                correct += (out.detach().argmax(2) == y).sum(1)
                bar.update(1)
            packed.unpack()
            losses_host, correct_host = [v / n for v in loss_sum.tolist()], correct.tolist()  # as train_cell divides
            train_time = (time.perf_counter() - t0) / k
            for net, model in enumerate(models):
                t1 = time.perf_counter()
                record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": losses_host[net],
                                          "train_acc": correct_host[net] / n,
                                          "val_acc": evaluate(model, data, data.val, cfg.eval_batch_size, cfg.amp)}
                if epoch + 1 in cfg.test_epochs or epoch + 1 == cfg.epochs:
                    record["test_acc"] = evaluate(model, data, data.test, cfg.eval_batch_size, cfg.amp)
                record["seconds"] = train_time + time.perf_counter() - t1
                seconds[net] += record["seconds"]
                records[net].append(record)
    finally:
        bar.close()
    results = []
    for net, (cell, seed, model) in enumerate(zip(cell_list, seeds, models)):
        t1 = time.perf_counter()
        spikes = _test_spikes(model, data, data.test, cfg.eval_batch_size)
        final = records[net][-1]
        results.append({"cell": cell.text, "seed": seed, "train_config": cfg.to_dict(), "net_config": net_config.to_dict(),
                        "dataset": dataset.summary(), "hash": cell.hash, "kind": cell.kind, "device": str(device),
                        "params": count_params(model), "epochs": records[net], "val_acc": final["val_acc"],
                        "test_acc": final["test_acc"], "spikes": spikes,
                        "seconds": seconds[net] + time.perf_counter() - t1})
    return results


def _checkpoint_path(checkpoint: str | os.PathLike) -> Path:
    """``checkpoint`` as a path whose folder exists and is writable (checked before training, never created)."""
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(f"checkpoint: {str(path)!r} is a folder, not a file")
    if not path.parent.is_dir():
        raise ValueError(f"checkpoint: folder {str(path.parent)!r} of {str(path)!r} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"checkpoint: folder {str(path.parent)!r} of {str(path)!r} is not writable")
    return path


def _save_checkpoint(path: Path, identity: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator, state: _State) -> None:
    payload = {
        "identity": identity,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "epoch": state.epoch,
        "records": state.records,
        "seconds": state.seconds,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, identity: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator, device: torch.device) -> _State:
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means the file is not our checkpoint
        raise ValueError(f"{path}: not a readable training checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or not _CHECKPOINT_KEYS <= payload.keys():
        raise ValueError(f"{path}: not a training checkpoint (a {type(payload).__name__} without its fields)")
    if payload["identity"] != identity:
        raise ValueError(f"{path}: checkpoint of a different run (cell, seed, settings, data or device differ); delete "
                         "it or pick another path")
    try:
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        gen.set_state(payload["generator"].cpu())
        torch.set_rng_state(payload["torch_rng"].cpu())
        if payload["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in payload["cuda_rng"]])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: damaged training checkpoint ({type(err).__name__})") from None
    return _State(epoch=payload["epoch"], records=payload["records"], seconds=payload["seconds"])


_CHECKPOINT_KEYS = frozenset({"identity", "model", "optimizer", "generator", "torch_rng", "cuda_rng", "epoch", "records",
                              "seconds"})
