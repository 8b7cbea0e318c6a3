"""snnbench's query API: ``query(matrix)``, ``Benchmark(path)``, replay, correlation and offline NAS comparison.

Records and fields are documented in ``docs/api.md``.
"""

from api.benchmark import Benchmark, CellNotFound, load, query, resolve_table

__all__ = ["Benchmark", "CellNotFound", "load", "query", "resolve_table"]
