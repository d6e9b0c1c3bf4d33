"""Shared fixtures of the orchestrator tests.  Tests that draw random numbers take ``seed``,
printed on failure and pinned with SIGFUSE_TEST_SEED."""

from __future__ import annotations

import os
import zlib

import pytest


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    pinned = os.environ.get("SIGFUSE_TEST_SEED")
    value = int(pinned) if pinned else zlib.crc32(request.node.nodeid.encode()) & 0xFFFF
    print(f"seed={value} (SIGFUSE_TEST_SEED={value} to repeat)")
    return value


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
