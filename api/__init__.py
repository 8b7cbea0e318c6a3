"""snnbench's query API: ``query(matrix)``, ``Benchmark(path)``, replay, correlation and offline NAS comparison.

Records and fields are documented in ``docs/api.md``. Importing ``api`` loads numpy and h5py only
(scipy and matplotlib are imported by the functions that need them).
"""

from snnbench.api.algorithms import BudgetExhausted, CompareSettings, Oracle, compare, mutate, run, trajectory
from snnbench.api.benchmark import Benchmark, CellNotFound, load, query, resolve_table, seconds_to_epochs
from snnbench.api.correlate import agreement, correlate, seed_agreement
from snnbench.api.replay import replay, replay_curve

__all__ = ["Benchmark", "BudgetExhausted", "CellNotFound", "CompareSettings", "Oracle", "agreement", "compare", "correlate",
           "load", "mutate", "query", "replay", "replay_curve", "resolve_table", "run", "seconds_to_epochs", "seed_agreement",
           "trajectory"]
