"""Fixtures for data tests."""

import pytest
from synthetic_records import make_records


@pytest.fixture(scope="module")
def records():
    return make_records(97, seed=1)
