"""The simulated SPI NOR flash and iCE40 behave as the datasheets say: these are the properties
the flashing tests rely on, checked at the SPI-command level."""

from __future__ import annotations

import pytest

from sigfuse.spiflash_model import (CDONE, CRESET, FLASH_CS, W25Q128JV, FlashProtocolError,
                                    SimulatedSpiController, SpiNorFlash, parse_ice40_bitstream)

from .conftest import make_ice40_image


def _port(flash: SpiNorFlash | None = None):
    controller = SimulatedSpiController(flash or SpiNorFlash(), fpga=False)
    controller.configure("ftdi://ftdi:2232h/1", cs_count=2)
    return controller, controller.get_port(FLASH_CS)


def _wait_ready(port) -> int:
    polls = 0
    while port.exchange(b"\x05", 1)[0] & 0x01:
        polls += 1
    return polls


def test_jedec_id_and_reads() -> None:
    controller, port = _port()
    assert port.exchange(b"\x9f", 3) == W25Q128JV.jedec_id
    controller.flash.memory[0x100:0x104] = b"\x01\x02\x03\x04"
    assert port.exchange(b"\x03\x00\x01\x00", 4) == b"\x01\x02\x03\x04"
    assert port.exchange(b"\x0b\x00\x01\x00\x00", 4) == b"\x01\x02\x03\x04"  # one dummy byte
    # A read split over two transfers of one transaction continues where it stopped.
    first = port.exchange(b"\x03\x00\x01\x00", 2, stop=False)
    assert first + port.read(2, start=False) == b"\x01\x02\x03\x04"


def test_page_program_needs_write_enable_and_wraps_within_the_page() -> None:
    controller, port = _port()
    flash = controller.flash
    port.exchange(b"\x02\x00\x00\x00\x00")
    assert flash.memory[0] == 0xFF and flash.stats["ignored"] == 1  # no WREN: ignored
    port.exchange(b"\x06")
    port.exchange(b"\x02\x00\x00\xfc" + bytes(range(8)))  # 4 bytes fit before the page ends
    assert _wait_ready(port) == 2                          # WIP held for two polls
    assert flash.memory[0xFC:0x100] == bytes(range(4))
    assert flash.memory[0x00:0x04] == bytes(range(4, 8))   # wrapped to the page start
    assert flash.memory[0x100] == 0xFF                     # never into the next page
    port.exchange(b"\x06")
    port.exchange(b"\x02\x00\x00\xfc\xff\xf0")             # program only clears bits
    _wait_ready(port)
    assert flash.memory[0xFC:0xFE] == bytes([0x00, 0x01 & 0xF0])


def test_erase_acts_only_on_the_exact_command_length() -> None:
    controller, port = _port()
    flash = controller.flash
    flash.memory[0x1000:0x3000] = b"\x00" * 0x2000
    port.exchange(b"\x06")
    port.exchange(b"\x20\x00\x10\x00\x00")   # five bytes: a real chip ignores it
    assert flash.memory[0x1000] == 0x00
    port.exchange(b"\x04")                   # WRDI
    port.exchange(b"\x06")
    port.exchange(b"\x20\x00\x10\x23")       # 4 KiB erase, address rounded down
    _wait_ready(port)
    assert flash.memory[0x1000:0x2000] == b"\xff" * 0x1000
    assert flash.memory[0x2000] == 0x00
    assert flash.stats["erases"] == {4096: 1}


def test_busy_flash_rejects_other_commands() -> None:
    controller, port = _port()
    port.exchange(b"\x06")
    port.exchange(b"\xd8\x00\x00\x00")
    with pytest.raises(FlashProtocolError, match="busy"):
        port.exchange(b"\x03\x00\x00\x00", 1)


def test_deep_power_down_ignores_everything_but_release() -> None:
    controller, port = _port(SpiNorFlash(powered_down=True))
    assert port.exchange(b"\x9f", 3) == b"\xff\xff\xff"
    port.exchange(b"\xab")
    assert port.exchange(b"\x9f", 3) == W25Q128JV.jedec_id
    port.exchange(b"\xb9")
    assert port.exchange(b"\x9f", 3) == b"\xff\xff\xff"


def test_protected_flash_ignores_program() -> None:
    controller, port = _port()
    port.exchange(b"\x06")
    port.exchange(b"\x01\x1c")               # BP0..2: whole array protected
    _wait_ready(port)
    port.exchange(b"\x06")
    port.exchange(b"\x02\x00\x00\x00\x00")
    assert controller.flash.memory[0] == 0xFF


def test_pyftdi_limits_are_enforced() -> None:
    controller, port = _port()
    with pytest.raises(Exception, match="too large"):
        port.write(b"\x00" * 0x10000)
    gpio = controller.get_gpio()
    with pytest.raises(Exception, match="No such GPO"):
        gpio.write(CRESET)                   # CRESET_B was never made an output
    with pytest.raises(Exception, match="not reserved"):
        controller.get_port(2)


def test_bitstream_parser_accepts_good_images_and_catches_corruption() -> None:
    image = make_ice40_image(8 << 10)
    parsed = parse_ice40_bitstream(image)
    assert parsed.complete and parsed.crc_ok and parsed.length == len(image) - 1
    corrupt = bytearray(image)
    corrupt[len(image) // 2] ^= 0x10
    assert parse_ice40_bitstream(bytes(corrupt)).problem == "CRC error"
    assert parse_ice40_bitstream(image[:len(image) // 2]).problem == "truncated bitstream"
    assert parse_ice40_bitstream(b"\x00" * 100).problem.startswith("no 7EAA997E")


def test_fpga_boots_from_flash_on_creset_rising_with_ss_high() -> None:
    controller = SimulatedSpiController(SpiNorFlash())
    controller.configure("ftdi://ftdi:2232h/1", cs_count=2, direction=CRESET, initial=CRESET)
    gpio = controller.get_gpio()
    image = make_ice40_image(8 << 10)
    controller.flash.memory[:len(image)] = image
    gpio.write(0)
    assert not gpio.read() & CDONE
    gpio.write(CRESET)
    assert gpio.read() & CDONE and controller.fpga.boots == 1
    # The configured FPGA owns the bus: flash traffic now is a protocol error.
    with pytest.raises(FlashProtocolError, match="not held in reset"):
        controller.get_port(FLASH_CS).exchange(b"\x9f", 3)
