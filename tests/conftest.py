"""Suite-wide test settings: one intra-op torch thread.

On shared 2-core CI machines, torch's thread pool spinning against other processes made tiny
steps 10-25x slower than single-threaded ones; every test here runs tiny models.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
