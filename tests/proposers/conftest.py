"""The model-driven proposers' tests never reach a real API (fixtures.no_real_keys, for every test
here); `night` is a toy night whose contexts a proposer is called with directly."""

from __future__ import annotations

import pytest

from overnight.testing.nights import ToyNight
from overnight.testing.toy import write_toy


@pytest.fixture(autouse=True)
def _no_real_keys(no_real_keys):
    pass


@pytest.fixture
def night(tmp_path) -> ToyNight:
    return ToyNight(write_toy(tmp_path / "toy"))
