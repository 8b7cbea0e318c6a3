"""The names every layer and command shares, importable without torch.

Each tuple is the one list of valid values: the modules that compute (``network``, ``training``, ``scores``)
and the CLI options that choose among them read it from here, so ``snnbench --help`` and the torch-free
commands never import torch to know what a valid dataset, preset or metric is.
"""

from __future__ import annotations

#: Datasets with a named network skeleton (``snnbench.network.network_config``); any ``.npz`` works too.
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "tinyimagenet", "digits")
#: Network skeletons (``snnbench.network``): the paper's, and the narrow one tables are built with.
NETWORK_PRESETS: tuple[str, ...] = ("paper", "bench")
#: Training recipes (``snnbench.training``); each trains the skeleton ``TRAIN_NETWORK`` names.
TRAIN_PRESETS: tuple[str, ...] = ("paper", "bench", "release")
TRAIN_NETWORK: dict[str, str] = {"paper": "paper", "bench": "bench", "release": "paper"}

#: Scores computed from spike patterns (``snnbench.scores``).
SPIKE_METRICS: tuple[str, ...] = ("sahd", "hd", "vanrossum", "sahd_2022a", "sahd_eq5", "sahd_release")
#: Scores computed from a loss's gradients.
LOSS_METRICS: tuple[str, ...] = ("grad_norm", "snip")
METRICS: tuple[str, ...] = SPIKE_METRICS + LOSS_METRICS + ("jacob_cov", "synflow", "params")
#: ``clean``: seeded, un-augmented batches, exact float64 kernels, every pass from a reset network (the default);
#: ``release``: the authors' current search scoring as its code runs (``snnbench.scores.score_model``).
SCORE_MODES: tuple[str, ...] = ("clean", "release")
#: Former score metric names -> current ones. A former name is still computed under that name (a protocol's
#: settings, hence its id, hold the names it was built with); readers (``snnbench.api``) show the current name.
METRIC_ALIASES: dict[str, str] = {"sahd_release": "sahd_2022a"}
