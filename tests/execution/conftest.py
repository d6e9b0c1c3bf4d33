"""Shared fixtures of the execution tests.  Every test that draws random numbers takes ``seed``,
which is printed (pytest shows it on failure) and can be pinned with SIGFUSE_TEST_SEED."""

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
