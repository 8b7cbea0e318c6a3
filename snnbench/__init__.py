"""snnbench: a tabular NAS benchmark for spiking neural networks (the SNASNet cell space).

Pipeline, one module per idea: ``space`` (cells, canonical hash) -> ``neuron`` / ``network``
(spiking model) -> ``scores`` (training-free) and ``data`` / ``training`` (surrogate-gradient
accuracy) -> ``table`` (the HDF5 file), filled by ``snnbench.builders`` and read by ``snnbench.api`` (the two
layers above this core: it imports neither, see ``tests/test_layers.py``).
"""

from snnbench.space import Cell, cell_hash, enumerate_cells, is_isomorphic, sample_cells

__all__ = ["Cell", "cell_hash", "enumerate_cells", "is_isomorphic", "sample_cells"]
__version__ = "0.1.0"
