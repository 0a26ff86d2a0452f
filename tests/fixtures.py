"""Fixtures shared by several test modules (import them into a module to use them there)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each test with one torch thread, as training does on the CPU, and restore the count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
