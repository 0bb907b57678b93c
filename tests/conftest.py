"""Shared fixtures of the test suite."""

from __future__ import annotations

import pytest

import deeplinear as dl


@pytest.fixture
def one_thread():
    """One core thread for the test (small layers: a second thread only adds contention)."""
    before = dl.get_num_threads()
    dl.set_num_threads(1)
    yield
    dl.set_num_threads(before)
