"""Fixtures for the board, build and flash tests.

* ``fake_time`` -- pyspiflash sleeps its *typical* operation time between status polls (1 s per
  64 KiB erase); against the simulated flash the clock is simulated too, so a flash test takes
  milliseconds and still exercises every timeout path.
* ``board_build`` -- one real build per board and core per test session, through
  :func:`sigfuse.build.build` with the user's cache (``SIGFUSE_CACHE_DIR`` overrides it), so
  repeated test runs are cache hits; two workers asking for one design wait for each other
  (``build`` locks each cache key).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

import pytest

from sigfuse.build import BuildResult, build


class FakeTime:
    """Stands in for the ``time`` module where flashing code sleeps and polls."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    import spiflash.serialflash

    import sigfuse.flash
    clock = FakeTime()
    monkeypatch.setattr(spiflash.serialflash, "time", clock)
    monkeypatch.setattr(sigfuse.flash, "time", clock)
    return clock


def _crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def make_ice40_image(cram_bytes: int = 96 << 10, seed: int = 1) -> bytes:
    """A structurally valid iCE40 bitstream (icepack's framing and CRC) with random CRAM data:
    the simulated FPGA configures from it."""
    rng = random.Random(seed)
    width_bits = 1024
    height = cram_bytes * 8 // width_bits
    image = bytearray(b"\xff\x00\x00\xff\x7e\xaa\x99\x7e")
    image += bytes([0x51, 0x00, 0x01, 0x05])          # frequency range; reset CRC
    crc_from = len(image)
    image += bytes([0x62, (width_bits - 1) >> 8, (width_bits - 1) & 0xFF, 0x72, height >> 8, height & 0xFF,
                    0x82, 0x00, 0x00, 0x11, 0x00, 0x01, 0x01])
    image += bytes(rng.getrandbits(8) for _ in range(width_bits * height // 8))
    image += b"\x00\x00\x22"
    crc = _crc16(bytes(image[crc_from:]))
    image += bytes([crc >> 8, crc & 0xFF, 0x01, 0x06, 0x00])
    return bytes(image)


@pytest.fixture(scope="session")
def ice40_image() -> bytes:
    return make_ice40_image()


@pytest.fixture(scope="session")
def board_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., BuildResult]:
    """``board_build(board, core=None)``: the session's build of ``core`` (default: the board's
    default core, the product) for that board."""
    results: dict[tuple[str, str | None], BuildResult] = {}

    def get(board: str, core: str | None = None) -> BuildResult:
        if (board, core) not in results:
            out: Path = tmp_path_factory.mktemp(f"build-{board}-{core or 'default'}")
            results[board, core] = build(board, core=core, out_dir=out, progress=False)
        return results[board, core]

    return get
