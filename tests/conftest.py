"""Shared fixtures: a real loopback CSMS (the `ocpp` library, its own thread) and short temp directories."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import PASSWORD, short_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def csms() -> Iterator[LoopbackCsms]:
    """A CSMS that expects station CS001 with basic auth and answers Accepted."""
    with LoopbackCsms(passwords={"CS001": PASSWORD}, heartbeat_interval=300) as server:
        yield server
        assert server.violations == [], f"OCPP violations seen by the CSMS: {server.violations}"
