"""Training on `digits`: learning, CPU determinism, resume, schedule, records; the `snnbench train` CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import snnbench.training as training
from snnbench.cli import main
from snnbench.data import load_dataset
from snnbench.network import build_network, network_config
from snnbench.training import TrainConfig, network_config_for, train_cell, train_config

FORWARD = "0303 0033 0003 0000"
BACKWARD = "0302 0030 3003 0000"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def tiny(digits):
    return digits.subset(train=160, val=40, test=60, seed=0)


def tiny_net(dataset):
    return network_config_for(dataset, "bench", timesteps=2)


def strip_time(result: dict) -> dict:
    """The result without wall-clock fields (everything else must repeat exactly)."""
    out = {k: v for k, v in result.items() if k != "seconds"}
    out["epochs"] = [{k: v for k, v in r.items() if k != "seconds"} for r in result["epochs"]]
    return out


def test_learns_digits_above_chance(digits):
    """Bench budget (Adam) and the digits bench skeleton (3 time steps to keep the test short) on the full
    digits train split: loss falls, accuracy far above 10% chance."""
    cfg = train_config("bench", epochs=5, batch_size=32)
    net = network_config_for(digits, "bench", timesteps=3)
    res = train_cell(FORWARD, digits, net, cfg, seed=0)
    losses = [r["train_loss"] for r in res["epochs"]]
    assert losses[-1] < losses[0] - 0.3
    assert res["test_acc"] > 0.3 and res["val_acc"] > 0.3  # chance: 0.1
    assert res["spikes"]["spikes_per_image"] > 0 and 0 < res["spikes"]["rate"] < 1
    assert res["params"] == sum(p.numel() for p in build_network(FORWARD, net).parameters())


def test_cpu_runs_repeat_bit_for_bit_and_resume(tiny, tmp_path):
    cfg = train_config("bench", epochs=2, batch_size=32, test_epochs=(1,))
    net = tiny_net(tiny)
    first = train_cell(BACKWARD, tiny, net, cfg, seed=3)
    second = train_cell(BACKWARD, tiny, net, cfg, seed=3)
    assert strip_time(first) == strip_time(second)
    other = train_cell(BACKWARD, tiny, net, cfg, seed=4)
    assert strip_time(other)["epochs"] != strip_time(first)["epochs"]
    # test accuracy at the chosen epoch and at the end only
    assert [("test_acc" in r) for r in first["epochs"]] == [True, True]

    ckpt = tmp_path / "run.pt"

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cell(BACKWARD, tiny, net, cfg, seed=3, checkpoint=ckpt, on_epoch=interrupt)
    resumed = train_cell(BACKWARD, tiny, net, cfg, seed=3, checkpoint=ckpt)
    assert strip_time(resumed) == strip_time(first)
    with pytest.raises(ValueError, match="checkpoint of a different run"):
        train_cell(BACKWARD, tiny, net, cfg, seed=5, checkpoint=ckpt)
    payload = torch.load(ckpt, weights_only=True)
    payload["identity"]["device"] = "cuda"  # begun on a GPU: its RNG states would not fit the CPU's
    torch.save(payload, ckpt)
    with pytest.raises(ValueError, match="checkpoint of a different run"):
        train_cell(BACKWARD, tiny, net, cfg, seed=3, checkpoint=ckpt)
    with pytest.raises(ValueError, match="device: 'gpu' is not a torch device"):
        train_cell(BACKWARD, tiny, net, cfg, seed=3, device="gpu")
    for bad, message in ((torch.zeros(3), "not a training checkpoint .a Tensor"), ({"identity": 1}, "not a training checkpoint"),
                         ({**payload, "identity": torch.load(ckpt, weights_only=True)["identity"] | {"device": "cpu"},
                           "model": {"nope": torch.zeros(1)}}, "damaged training checkpoint")):
        torch.save(bad, ckpt)
        with pytest.raises(ValueError, match=message):
            train_cell(BACKWARD, tiny, net, cfg, seed=3, checkpoint=ckpt)


def test_a_checkpoint_that_cannot_be_written_is_refused_before_training(tiny, tmp_path):
    """A missing folder (not created) or a folder given as the file: one line before the first epoch, not after it."""
    net, cfg = tiny_net(tiny), train_config("bench", epochs=1, batch_size=32)
    epochs = []  # records of epochs run
    for ckpt, message in ((tmp_path / "no" / "run.pt", f"checkpoint: folder {str(tmp_path / 'no')!r} of "
                                                        f"{str(tmp_path / 'no' / 'run.pt')!r} does not exist"),
                          (tmp_path, f"checkpoint: {str(tmp_path)!r} is a folder, not a file")):
        with pytest.raises(ValueError) as err:
            train_cell(BACKWARD, tiny, net, cfg, checkpoint=ckpt, on_epoch=epochs.append)
        assert str(err.value) == message
    assert epochs == [] and list(tmp_path.iterdir()) == []


def test_sgd_paper_optimiser_and_plif(tiny, monkeypatch):
    """One step of the paper's SGD equals a hand-written update; PLIF time constants are trained too."""
    cfg = train_config("paper", epochs=1, batch_size=200, augment=False)  # one full batch: a single step
    net = network_config_for(tiny, "bench", timesteps=2, learnable_tau=True, dropout=0.0)
    trained: dict[str, torch.Tensor] = {}

    def grab(model, *args):
        trained.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return {}

    monkeypatch.setattr(training, "_test_spikes", grab)
    res = train_cell(FORWARD, tiny, net, cfg, seed=1)
    assert len(res["epochs"]) == 1 and res["epochs"][0]["lr"] == pytest.approx(0.1)

    torch.manual_seed(1)  # the same initial weights, the same permutation, no augmentation, no dropout
    model = build_network(FORWARD, net)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    perm = torch.randperm(len(tiny.train), generator=torch.Generator().manual_seed(1))
    x, y = tiny.normalize(tiny.train.images[perm]), tiny.train.labels[perm]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    taus = [n for n in w0 if n.endswith(".w")]
    assert taus, "PLIF layers have a learnable parameter"
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ["fc2.bias", "stem.0.weight", taus[0]]:
        expect = w0[name] - 0.1 * (grads[name] + 5e-4 * w0[name])  # first momentum step = plain step
        torch.testing.assert_close(trained[name], expect, rtol=1e-5, atol=1e-7)
        assert not torch.equal(trained[name], w0[name])


def test_cosine_schedule_matches_torch():
    cfg = TrainConfig(epochs=7, lr=0.2, lr_min_factor=0.01)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.002)
    for e in range(7):
        assert cfg.lr_at(e) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
    assert cfg.lr_at(7) == pytest.approx(0.002)
    assert math.isclose(cfg.lr_at(0), 0.2)


def test_config_validation_and_to_dict():
    cfg = train_config("paper")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.optimizer) == (300, 64, 0.1, 0.9, 5e-4, "sgd")
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and TrainConfig(**{**d, "test_epochs": tuple(d["test_epochs"])}) == cfg
    with pytest.raises(ValueError, match="unknown training preset"):
        train_config("fast")
    with pytest.raises(ValueError, match="unknown training setting"):
        train_config("bench", epoch=3)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


@pytest.mark.parametrize("field, value, message", [
    ("lr", "abc", "lr must be a finite number, got 'abc'"),
    ("lr", float("inf"), "lr must be a finite number"),
    ("momentum", True, "momentum must be a finite number, got True"),
    ("lr", -0.1, "train config: lr must be > 0, got -0.1"),
    ("lr_min_factor", 1.5, "train config: lr_min_factor must be in [0, 1], got 1.5"),
    ("momentum", 1, "train config: momentum must be in [0, 1), got 1.0"),
    ("weight_decay", -1e-4, "train config: weight_decay must be >= 0, got -0.0001"),
    ("lr", np.complex128(0.1), "lr must be a finite number, got np.complex128"),
    ("lr", np.float32("nan"), "lr must be a finite number, got np.float32(nan)"),
    ("batch_size", 1.5, "batch_size must be an integer >= 1, got 1.5"),
    ("epochs", "3", "epochs must be an integer >= 1, got '3'"),
    ("amp", "maybe", "amp must be true or false, got 'maybe'"),
    ("nesterov", 1, "nesterov must be true or false, got 1"),
    ("test_epochs", 4, "test_epochs must be a list of epochs, got 4"),
    ("test_epochs", "48", "test_epochs must be a list of epochs, got '48'"),
    ("test_epochs", [0], "test_epochs entry must be an integer >= 1, got 0"),
    ("test_epochs", [2.5], "test_epochs entry must be an integer >= 1, got 2.5"),
    ("test_epochs", [4, 13], "test_epochs [4, 13] go past the budget of 12 epochs"),
])
def test_bad_setting_is_a_one_line_error(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        train_config("bench", **{field: value})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_equal_settings_of_other_number_types_make_equal_configs() -> None:
    """1 and 1.0, numpy scalars, lists and tuples: one config, one JSON form (hence one protocol id)."""
    a = train_config("bench", lr=1, momentum=np.float32(0.5), weight_decay=0, batch_size=np.int64(32), test_epochs=[8, 4, 8], amp=np.bool_(False))
    b = train_config("bench", lr=1.0, momentum=0.5, weight_decay=0.0, batch_size=32, test_epochs=(4, 8), amp=False)
    assert a == b and json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert type(a.lr) is float and type(a.momentum) is float and type(a.batch_size) is int and type(a.amp) is bool and a.test_epochs == (4, 8)
    n1, n2 = network_config("digits", "bench", dropout=0, c1=np.int32(8)), network_config("digits", "bench", dropout=0.0, c1=8)
    assert n1 == n2 and json.dumps(n1.to_dict()) == json.dumps(n2.to_dict()) and type(n1.c1) is int


def test_npz_dataset_gets_a_skeleton_from_its_shape(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", images=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), labels=np.arange(40) % 4)
    np.savez(tmp_path / "test.npz", images=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), labels=np.arange(8) % 4)
    d = load_dataset(tmp_path / "train.npz", val_fraction=0.25)
    net = network_config_for(d, "bench", timesteps=1)
    assert (net.num_classes, net.in_channels, net.image_size) == (4, 3, 16)
    res = train_cell(FORWARD, d, net, train_config("bench", epochs=1, batch_size=16), seed=0)
    assert 0 <= res["test_acc"] <= 1 and len(res["epochs"]) == 1


# --------------------------------------------------------------------------- CLI


def test_cli_train_json():
    result = CliRunner().invoke(main, ["train", FORWARD, "--dataset", "digits", "--epochs", "1", "--timesteps", "2",
                                       "--train-images", "100", "--test-images", "50", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["cell"] == FORWARD and len(out["epochs"]) == 1 and out["dataset"]["train"] == 100
    assert out["dataset"]["test"] == 50 and out["net_config"]["timesteps"] == 2
    assert {"train_loss", "train_acc", "val_acc", "test_acc", "seconds", "lr"} <= set(out["epochs"][0])


@pytest.mark.parametrize("command,args", [
    ("train", ["--epochs", "1", "--timesteps", "2", "--train-images", "64", "--test-images", "32"]),
    ("score", ["--dataset", "digits", "--preset", "bench", "--score-batch", "16", "--score-repeats", "1", "--score", "hd"]),
])
def test_cli_train_and_score_set_torch_threads(command: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The work runs with --threads torch threads (default 1, not the core count), and the caller's count is restored."""
    import importlib

    # the command imports its worker when it runs: patch the function where it is defined
    module = importlib.import_module("snnbench.training" if command == "train" else "snnbench.scores")
    name = "train_cell" if command == "train" else "score_cell"
    real, seen = getattr(module, name), []

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(module, name, spy)
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # as a process starts on a 3-core machine
    try:
        for extra, want in (([], 1), (["--threads", "2"], 2)):
            result = CliRunner().invoke(main, [command, FORWARD, *args, *extra, "--json"])
            assert result.exit_code == 0, result.output
            assert seen.pop() == want and torch.get_num_threads() == 3
        result = CliRunner().invoke(main, [command, FORWARD, *args, "--threads", "0"])
        assert result.exit_code == 2 and "--threads" in result.output and not seen
    finally:
        torch.set_num_threads(before)
    assert "torch CPU threads" in CliRunner().invoke(main, [command, "--help"]).output


@pytest.mark.parametrize(
    "args,message",
    [
        (["0302 0030 3003 0001"], "Error: "),
        (["0303 0033 0003 0000", "--dataset", "cifar10", "--data-dir", "{tmp}"], "--download"),
        (["0303 0033 0003 0000", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["0303 0033 0003 0000", "--epochs", "0"], "Error: "),
        (["0303 0033 0003 0000", "--lr", "inf"], "Invalid value for '--lr': inf is not a finite number."),
        (["0303 0033 0003 0000", "--train-images", "50", "--checkpoint", "{tmp}/no/ck.pt"], "/no' of "),
    ],
)
def test_cli_bad_input_one_line_exit_2(args, message, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_test_split_spikes_are_the_whole_split_statistics(tiny):
    """Spikes averaged over eval batches of 7 equal ``spike_stats`` of the whole split in one batch."""
    from snnbench.network import spike_stats

    torch.manual_seed(0)
    model = build_network(BACKWARD, tiny_net(tiny))
    batched = training._test_spikes(model, tiny, tiny.test, 7)
    whole = spike_stats(model.eval(), tiny.normalize(tiny.test.images))
    assert batched["spikes_per_image"] == pytest.approx(whole["spikes_per_image"], rel=1e-9)
    assert batched["rate"] == pytest.approx(whole["rate"], rel=1e-9)
    for a, b in zip(batched["layers"], whole["layers"]):
        assert (a["name"], a["neurons"], a["steps"]) == (b["name"], b["neurons"], b["steps"])
        assert a["spikes_per_image"] == pytest.approx(b["spikes_per_image"], rel=1e-9, abs=1e-12)
