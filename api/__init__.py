"""snnbench's query API: ``query(matrix)``, ``Benchmark(path)``, replay, correlation and offline NAS comparison.

Records and fields are documented in ``docs/api.md``. Importing ``api`` loads numpy and h5py only
(scipy and matplotlib are imported by the functions that need them).
"""

from snnbench.api.algorithms import CompareSettings, compare, run
from snnbench.api.benchmark import Benchmark, CellNotFound, load, query, resolve_table
from snnbench.api.correlate import agreement, correlate, seed_agreement
from snnbench.api.replay import replay, replay_curve

__all__ = ["Benchmark", "CellNotFound", "CompareSettings", "agreement", "compare", "correlate", "load", "query", "replay", "replay_curve",
           "resolve_table", "run", "seed_agreement"]
