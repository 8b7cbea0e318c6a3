"""Suite-wide settings: one torch intra-op thread (the tensors here are tiny; on a 2-core machine
OpenMP spin-waits of a second thread cost more than they give)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
