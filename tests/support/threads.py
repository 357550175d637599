"""One torch intra-op thread per test; a module that imports this fixture gets it (autouse)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models are overhead-bound: with 2 threads on a busy 2-core box (xdist), OpenMP
    spin-waiting makes generate() 20-30x slower; one thread per worker is fastest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
