"""What one ``snnbench build`` builds, as one frozen value: its stages, stored settings and command derive from it.

Invariants
----------
* A :class:`BuildRequest` holds exactly what a recorded build command says (table, dataset and split, skeleton,
  score and training settings, cell selections, seeds, device, shard); nothing else spells those options:
  ``snnbench build`` makes its options from :data:`OPTIONS`, parses them into a request, and the command each
  stage records is :meth:`BuildRequest.command` of :meth:`BuildRequest.for_stage`. Parsing a request's command
  gives an equal request.
* It is validated and canonical when made: metrics checked and without duplicates, seeds parsed, overrides
  sorted by key, an ``.npz`` dataset and FILE selections made absolute, and the settings of a stage that does not
  run (``--scores none``, ``--train-epochs 0``) at their defaults, so one build has one request.
* How a build runs (where the data lies, workers, executor, training pack) changes no number of the table and
  is no part of a request: :meth:`BuildRequest.stages` takes it as arguments.
* The settings (hence protocol ids) and command lines are those of every table built before requests existed.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import click

from snnbench.builders.plan import CELL_SPECS, check_cells, parse_shard
from snnbench.cli.common import SEED, FiniteFloatRange
from snnbench.names import NETWORK_PRESETS, SCORE_MODES
from snnbench.seeds import parse_seeds
from snnbench.space import KINDS

if TYPE_CHECKING:
    from snnbench.builders.build import Stage

Overrides = tuple[tuple[str, Any], ...]  # (field, JSON value) pairs, sorted by field


def _option(default: Any, help: str, **click_args: Any) -> Any:
    """A request field whose ``snnbench build`` option is ``--NAME`` (underscores as dashes), with ``help``; the
    ``click_args`` (type, metavar, multiple) say how the option reads its text."""
    return field(default=default, metadata={"help": help, "click": click_args})


def _key_values(pairs: tuple[str, ...] | list[str], what: str) -> Overrides:
    """``("c1=8", "dropout=0.2")`` -> ``(("c1", 8), ("dropout", 0.2))`` (values read as JSON, else text; sorted by
    key, the last of a repeated key kept)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what}: expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return tuple(sorted(out.items()))


def _seeds(text: str | tuple[int, ...]) -> tuple[int, ...]:
    return parse_seeds(text) if isinstance(text, str) else tuple(text)


def _metrics(text: str | tuple[str, ...]) -> tuple[str, ...]:
    from snnbench.scores import check_metrics

    if isinstance(text, str):
        return () if text.strip().lower() == "none" else check_metrics(m.strip() for m in text.split(",") if m.strip())
    return check_metrics(text) if text else ()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class BuildRequest:
    """One build: the table it fills and what fixes its rows. Fields holding text are read as the option reads
    it (``scores="sahd,hd"``, ``seeds="0-3"``, ``net={"timesteps": 4}``, ``shard="0/4"``) and stored canonical."""

    table: str = field(default="", metadata={"help": "the table built"})
    dataset: str = _option("digits", "digits, cifar10, cifar100, tinyimagenet or a train .npz path.")
    val_fraction: float = _option(0.1, "Share of training images held out for validation.",
                                  type=FiniteFloatRange(0.0, 1.0, max_open=True))
    split_seed: int = _option(0, "Seed of the validation split.", type=SEED)
    dataset_name: str | None = _option(None, "Name an .npz dataset in the table (default: its absolute path); "
                                       "the table also records the sha256 of its files.")
    kind: str = _option("forward", "Cell space to draw cells from.", type=KINDS)
    preset: str = _option("bench", "Skeleton widths.", type=NETWORK_PRESETS)
    net: Overrides = _option((), "Override a NetworkConfig field (repeatable), e.g. --net timesteps=4.",
                             multiple=True, metavar="KEY=VALUE")
    device: str = _option("cpu", "Device type the rows are computed on (part of the settings).", type=("cpu", "cuda"))
    shard: tuple[int, int] | None = _option(None, "Build only the cells whose hash is I modulo N.", metavar="I/N")
    scores: tuple[str, ...] = _option(("sahd", "hd"), "Comma-separated score metrics, or 'none'.")
    score_batch: int = _option(64, "Images per scoring batch.", type=click.IntRange(min=2))
    score_repeats: int = _option(1, "Batches averaged per score.", type=click.IntRange(min=1))
    score_mode: str = _option("clean", "clean: seeded, un-augmented, exact kernels; release: the authors' search "
                              "scoring as its code runs (sahd only).", type=SCORE_MODES)
    score_seeds: tuple[int, ...] = _option((0,), "Scoring seeds (list 0,1 or range 0-3).")
    cells: str = _option("all", f"Cells to score: {CELL_SPECS}.")
    train_epochs: int = _option(3, "Training epochs (0: no training).", type=click.IntRange(min=0))
    train: Overrides = _option((), "Override a TrainConfig field (repeatable), e.g. --train lr=0.05.",
                               multiple=True, metavar="KEY=VALUE")
    seeds: tuple[int, ...] = _option((0, 1), "Training seeds (list 0,1 or range 0-3).")
    train_cells: str = _option("sample:16", f"Cells to train: {CELL_SPECS}.")

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # canonical forms of what was given, once, as the request is made
        set_(self, "table", str(self.table))
        if not self.table:
            raise ValueError("table: the path is empty")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction: expected 0 <= value < 1, got {self.val_fraction!r}")
        set_(self, "val_fraction", float(self.val_fraction))
        for name, choices in (("kind", KINDS), ("preset", NETWORK_PRESETS), ("device", ("cpu", "cuda")),
                              ("score_mode", SCORE_MODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.score_batch < 2 or self.score_repeats < 1 or self.train_epochs < 0:
            raise ValueError("score_batch >= 2, score_repeats >= 1 and train_epochs >= 0, got "
                             f"{self.score_batch}, {self.score_repeats}, {self.train_epochs}")
        set_(self, "net", _overrides(self.net, "--net"))
        set_(self, "train", _overrides(self.train, "--train"))
        set_(self, "shard", parse_shard(self.shard) if isinstance(self.shard, str) else self.shard)
        set_(self, "scores", _metrics(self.scores))
        set_(self, "score_seeds", _seeds(self.score_seeds))
        set_(self, "seeds", _seeds(self.seeds))
        from snnbench.data import NAMES

        if self.dataset in NAMES:
            if self.dataset_name:
                raise ValueError("--dataset-name: only for an .npz dataset (a named dataset keeps its name)")
        elif not self.dataset.endswith(".npz"):  # named as load_dataset names it, before it becomes an absolute path
            raise ValueError(f"unknown dataset {self.dataset!r}: use one of {', '.join(NAMES)} or a path to a train .npz file")
        else:
            set_(self, "dataset", str(Path(self.dataset).expanduser().resolve()))
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        # a FILE selection is recorded by absolute path, as an .npz dataset is: the command rebuilds from any folder
        if self.scores:
            from snnbench.scores import check_mode

            if check_cells(self.cells, self.kind) == "file":
                set_(self, "cells", str(Path(self.cells.strip()).expanduser().resolve()))
            check_mode(self.score_mode, self.scores)
        else:
            for name in ("score_batch", "score_repeats", "score_mode", "score_seeds", "cells"):
                set_(self, name, defaults[name])
        if "epochs" in dict(self.train):
            raise ValueError("--train epochs: the budget is set with --train-epochs")
        if self.train_epochs:
            if check_cells(self.train_cells, self.kind) == "file":
                set_(self, "train_cells", str(Path(self.train_cells.strip()).expanduser().resolve()))
        else:
            for name in ("train", "seeds", "train_cells"):
                set_(self, name, defaults[name])

    @classmethod
    def from_options(cls, table: str, **options: Any) -> BuildRequest:
        """The request of ``snnbench build``'s parsed options (their click names, the fields' names)."""
        return cls(table=table, **{f.name: options[f.name] for f in dataclasses.fields(cls) if f.name in options})

    def for_stage(self, type: str) -> BuildRequest:
        """The request that builds this one's ``type`` stage (``score`` or ``train``) alone: what that stage
        records as its command. A training that ranks by this request's scores (``top:``, ``strata:``) keeps them."""
        if type == "score":
            return dataclasses.replace(self, train_epochs=0)
        from snnbench.builders.plan import ranking_column

        needs_scores = ranking_column(self.train_cells, self.kind) is not None
        return self if needs_scores else dataclasses.replace(self, scores=())

    def command(self) -> str:
        """The ``snnbench build`` command line that makes this request (options in the order tables record them)."""
        def opt(name: str, value: Any) -> str:
            return f" {flag(name)} {value}"

        def pairs(name: str) -> str:
            return "".join(opt(name, shlex.quote(f"{k}={json.dumps(v)}")) for k, v in getattr(self, name))

        text = (f"snnbench build {shlex.quote(self.table)}" + opt("dataset", shlex.quote(self.dataset))
                + opt("val_fraction", self.val_fraction) + opt("split_seed", self.split_seed)
                + (opt("dataset_name", shlex.quote(self.dataset_name)) if self.dataset_name else "")
                + opt("kind", self.kind) + opt("preset", self.preset) + pairs("net") + opt("device", self.device)
                + ("" if self.shard is None else opt("shard", f"{self.shard[0]}/{self.shard[1]}")))
        if self.scores:  # the clean mode (the default) is not spelled: protocols made before modes keep their commands
            text += (opt("scores", ",".join(self.scores)) + opt("score_batch", self.score_batch)
                     + opt("score_repeats", self.score_repeats)
                     + ("" if self.score_mode == "clean" else opt("score_mode", self.score_mode))
                     + opt("score_seeds", ",".join(map(str, self.score_seeds))) + opt("cells", shlex.quote(self.cells)))
        else:
            text += opt("scores", "none")
        text += opt("train_epochs", self.train_epochs)
        if self.train_epochs:
            text += (pairs("train") + opt("seeds", ",".join(map(str, self.seeds)))
                     + opt("train_cells", shlex.quote(self.train_cells)))
        return text

    def settings(self, network: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Each stage's stored settings (``{"score": ..., "train": ...}``, those that run), which define its protocol
        id: dataset and split (``data``: the name and, for an ``.npz``, its ``sha256``), skeleton (``network``: the
        full config), score settings or training budget, device type. The clean score mode is not stored, so
        protocols made before modes keep their ids."""
        from snnbench.scores import VAN_ROSSUM_TAU
        from snnbench.training import train_config

        common = {"dataset": {"name": self.dataset, "val_fraction": self.val_fraction, "split_seed": self.split_seed,
                              **data},
                  "network": {"preset": self.preset, "config": dict(network)}, "device": self.device}
        out: dict[str, dict[str, Any]] = {}
        if self.scores:
            out["score"] = {**common, "score": {"metrics": list(self.scores), "batch_size": self.score_batch,
                                                "repeats": self.score_repeats, "tau": VAN_ROSSUM_TAU,
                                                **({} if self.score_mode == "clean" else {"mode": self.score_mode})}}
        if self.train_epochs:
            out["train"] = {**common, "train": train_config("bench", **dict(self.train), epochs=self.train_epochs).to_dict()}
        return out

    def stages(self, *, pack: int = 1, data_dir: str | None = None) -> list[Stage]:
        """The stages (scores first), each with its settings and command. The dataset is loaded here as each worker
        will load it (from ``data_dir``, else the default folder), so missing files, a batch larger than the
        training set or a bad override are refused before anything is written. ``pack``: training rows per pack
        (and per work item), not a setting."""
        from snnbench.builders.build import Stage
        from snnbench.data import NAMES, load_dataset, npz_digest
        from snnbench.network import network_config
        from snnbench.training import network_config_for

        source = None if self.dataset in NAMES else self.dataset
        data_settings: dict[str, Any] = {}
        if source is None:
            config = network_config(self.dataset, self.preset, **dict(self.net))
            try:
                data = load_dataset(self.dataset, data_dir, val_fraction=self.val_fraction, seed=self.split_seed)
            except FileNotFoundError as err:  # its message is "what is missing; how to get it", the how for load_dataset
                raise FileNotFoundError(f"{str(err).split('; ', 1)[0]}; a build does not download: pass --data-dir, or "
                                        f"fetch it first with snnbench.data.load_dataset({self.dataset!r}, download=True)"
                                        ) from None
        else:
            data = load_dataset(source, val_fraction=self.val_fraction, seed=self.split_seed)
            config = network_config_for(data, self.preset, **dict(self.net))
            data_settings = {"name": self.dataset_name or source, "sha256": npz_digest(source)}
        images = int(data.train.images.shape[0])
        if self.scores and self.score_batch > images:  # every row would fail the same way
            raise ValueError(f"--score-batch {self.score_batch}: exceeds the {images:,} training images of "
                             f"{self.dataset} (scoring draws a batch of distinct images)")
        settings = self.settings(config.to_dict(), data_settings)
        stages = []
        if "score" in settings:
            stages.append(Stage("score", settings["score"], self.cells, self.kind, self.score_seeds, batch=16,
                                command=self.for_stage("score").command(), source=source))
        if "train" in settings:
            stages.append(Stage("train", settings["train"], self.train_cells, self.kind, self.seeds, batch=pack,
                                pack=pack, command=self.for_stage("train").command(), source=source))
        return stages


def _overrides(value: Overrides | Mapping[str, Any] | tuple[str, ...], what: str) -> Overrides:
    """Overrides given as ``KEY=VALUE`` texts, a mapping or pairs, as sorted pairs."""
    if isinstance(value, Mapping):
        return tuple(sorted(value.items()))
    if all(isinstance(v, str) for v in value):
        return _key_values(tuple(value), what)  # type: ignore[arg-type]
    return tuple(sorted(tuple(v) for v in value))  # type: ignore[misc]


#: The request's fields that ``snnbench build`` takes as options, in the order its help lists them.
OPTIONS: tuple[dataclasses.Field, ...] = tuple(f for f in dataclasses.fields(BuildRequest) if f.name != "table")
