"""A simulated iCEBreaker programming port: SPI NOR flash, iCE40 configuration logic, FT2232H.

``sigfuse flash`` drives channel A of the iCEBreaker's FT2232H through pyftdi: SPI on AD0-AD2,
the flash's /CS on AD4 (which is also the iCE40's SPI_SS_B), CDONE on AD6 and CRESET_B on AD7.
:class:`SimulatedSpiController` stands in for ``pyftdi.spi.SpiController`` with the same methods
and signatures the real path calls (``configure``, ``get_port``, ``get_gpio``, ``close``; the
port's ``exchange``/``read``/``write``/``force_select``; the GPIO port's ``read``/``write``/
``set_direction``), so the flashing code and pyspiflash run unchanged against it.

Behind it:

* :class:`SpiNorFlash` -- a W25Q-class SPI NOR flash, byte for byte: JEDEC ID (9F), read (03)
  and fast read (0B), page program (02: 256-byte pages, the address wraps within the page, bits
  only go 1 -> 0), 4/32/64 KiB and chip erase (20/52/D8/C7/60) that act only when /CS rises on
  the exact byte count, the write enable latch (06/04: program and erase without it do nothing),
  status (05) with WIP held for the next two polls after each program or erase (as many as
  pyspiflash's timeouts allow for every operation at its typical poll interval), deep power-down (B9)
  and release (AB), reset (66+99), and block protection (BP bits via 01: a protected flash
  silently ignores program and erase, as the real one does).  Faults for tests: weak cells that
  will not program to 0, and a flash that stays busy.
* :class:`ICE40ConfigModel` -- the iCE40's configuration logic: CRESET_B rising with SS_B high
  boots from the flash, with SS_B low enters SPI slave mode (the "SRAM" load).  Either way the
  bitstream is parsed as the FPGA does (preamble 7EAA997E, commands, CRAM/BRAM blocks, CRC-16
  checked at the CRC command, wake-up), and CDONE rises only for a complete, CRC-correct image --
  in slave mode after at least 49 further clocks, as the datasheet asks.

Protocol mistakes by the code under test -- a command other than status read while the flash is
busy, flash traffic while the FPGA is not held in reset -- raise :class:`FlashProtocolError`
(``strict=True``, the default) or are collected in ``violations``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from pyftdi.spi import SpiIOError

__all__ = ["FlashProtocolError", "FlashChip", "W25Q128JV", "W25Q80DV", "GD25LQ128",
           "SpiNorFlash", "ICE40ConfigModel", "SimulatedSpiController", "SimulatedSpiPort",
           "SimulatedGpioPort", "parse_ice40_bitstream", "ICE40Image"]

PAGE_SIZE = 256
SR_WIP = 0x01
SR_WEL = 0x02
SR_BP = 0x1C  # BP0..BP2

# FT2232H channel A on the iCEBreaker.
CS_BIT = 0x08          # pyftdi: /CS n is AD3 + n
CDONE = 0x40           # AD6
CRESET = 0x80          # AD7
FLASH_CS = 1           # AD4
PAYLOAD_MAX_LENGTH = 0xFF00  # pyftdi.spi.SpiController.PAYLOAD_MAX_LENGTH


class FlashProtocolError(AssertionError):
    """The code driving the simulated port broke the flash's or the FPGA's protocol."""


@dataclass(frozen=True)
class FlashChip:
    name: str
    jedec_id: bytes
    size: int


#: The iCEBreaker's flash (16 MiB).
W25Q128JV = FlashChip("W25Q128JV", bytes((0xEF, 0x40, 0x18)), 16 << 20)
#: A 1 MiB flash: too small for large images.
W25Q80DV = FlashChip("W25Q80DV", bytes((0xEF, 0x40, 0x14)), 1 << 20)
#: A real part pyspiflash does not know (GigaDevice, 1.8 V).
GD25LQ128 = FlashChip("GD25LQ128", bytes((0xC8, 0x60, 0x18)), 16 << 20)


class SpiNorFlash:
    """A SPI NOR flash on a /CS line.  ``memory`` is its array (erased = 0xFF)."""

    def __init__(self, chip: FlashChip = W25Q128JV, *, busy_polls: int = 2,
                 powered_down: bool = False, strict: bool = True) -> None:
        self.chip = chip
        self.memory = bytearray(b"\xff" * chip.size)
        self.busy_polls = busy_polls
        self.powered_down = powered_down
        self.strict = strict
        self.status = 0
        #: address -> bit mask of cells that stay 1 when programmed (worn-out cells).
        self.weak_cells: dict[int, int] = {}
        #: When set, WIP never clears (a dead or hung flash).
        self.stuck_busy = False
        self.violations: list[str] = []
        self.stats = {"jedec_reads": 0, "status_polls": 0, "pages_programmed": 0,
                      "bytes_read": 0, "erases": {}, "ignored": 0}
        self._busy_left = 0
        self._reset_enabled = False
        self._rx = bytearray()
        self._selected = False

    # --- the bus -----------------------------------------------------------------------------

    def select(self) -> None:
        self._selected = True
        self._rx = bytearray()

    def deselect(self) -> None:
        if self._selected:
            self._selected = False
            self._execute(bytes(self._rx))
            self._rx = bytearray()

    def clock(self, mosi: bytes) -> bytes:
        """Shift ``mosi`` in while selected; returns what the flash drives on MISO."""
        if not self._selected:
            return b"\xff" * len(mosi)
        start = len(self._rx)
        self._rx += mosi
        if self.powered_down or not self._rx:
            return b"\xff" * len(mosi)
        command = self._rx[0]
        if start == 0 and self.busy and command != 0x05:
            self._violation(f"command {command:#04x} sent while the flash is busy (WIP set)")
        if command in (0x03, 0x0B):
            header = 4 if command == 0x03 else 5
            out = bytearray(b"\xff" * max(0, min(len(mosi), header - start)))
            first = max(start, header)
            count = start + len(mosi) - first
            if count > 0:
                address = (int.from_bytes(self._rx[1:4], "big") + first - header) % self.chip.size
                out += self._read(address, count)
                self.stats["bytes_read"] += count
            return bytes(out)
        out = bytearray()
        for position in range(start, start + len(mosi)):
            if position == 0:
                out.append(0xFF)
            elif command == 0x9F:
                if position == 1:
                    self.stats["jedec_reads"] += 1
                out.append(self.chip.jedec_id[(position - 1) % 3])
            elif command == 0x05:
                out.append(self._poll_status())
            elif command == 0xAB and position >= 4:
                out.append(self.chip.jedec_id[2] - 1)  # the legacy device ID
            else:
                out.append(0xFF)
        return bytes(out)

    # --- state ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self.status & SR_WIP)

    def _read(self, address: int, count: int) -> bytes:
        end = address + count
        if end <= self.chip.size:
            return bytes(self.memory[address:end])
        return bytes(self.memory[address:]) + self._read(0, end - self.chip.size)

    def _poll_status(self) -> int:
        self.stats["status_polls"] += 1
        value = self.status
        if self.busy and not self.stuck_busy:
            self._busy_left -= 1
            if self._busy_left <= 0:
                self.status &= ~(SR_WIP | SR_WEL)
        return value

    def _start_busy(self) -> None:
        self.status |= SR_WIP
        self._busy_left = self.busy_polls
        if self.busy_polls == 0 and not self.stuck_busy:
            self.status &= ~(SR_WIP | SR_WEL)

    def _violation(self, message: str) -> None:
        self.violations.append(message)
        if self.strict:
            raise FlashProtocolError(message)

    def _execute(self, frame: bytes) -> None:
        """What happens when /CS rises: the write-type commands take effect."""
        if not frame:
            return
        command = frame[0]
        if self.powered_down:
            if command == 0xAB:
                self.powered_down = False
            return
        if self.busy:
            return  # already reported; a busy flash ignores everything but status reads
        if command == 0x66 and len(frame) == 1:
            self._reset_enabled = True
            return
        if command == 0x99 and len(frame) == 1 and self._reset_enabled:
            self.status &= SR_BP
        self._reset_enabled = False
        if command == 0x06 and len(frame) == 1:
            self.status |= SR_WEL
        elif command == 0x04 and len(frame) == 1:
            self.status &= ~SR_WEL
        elif command == 0xB9 and len(frame) == 1:
            self.powered_down = True
        elif command == 0x01 and len(frame) >= 2:
            if self._write_enabled():
                self.status = (self.status & ~SR_BP) | (frame[1] & SR_BP)
                self._start_busy()
        elif command == 0x02 and len(frame) >= 5:
            if self._write_enabled() and self._unprotected():
                self._program(int.from_bytes(frame[1:4], "big"), frame[4:])
                self._start_busy()
        elif command in (0x20, 0x52, 0xD8) and len(frame) == 4:
            if self._write_enabled() and self._unprotected():
                size = {0x20: 4 << 10, 0x52: 32 << 10, 0xD8: 64 << 10}[command]
                base = int.from_bytes(frame[1:4], "big") % self.chip.size & ~(size - 1)
                self.memory[base:base + size] = b"\xff" * size
                self.stats["erases"][size] = self.stats["erases"].get(size, 0) + 1
                self._start_busy()
        elif command in (0xC7, 0x60) and len(frame) == 1:
            if self._write_enabled() and self._unprotected():
                self.memory[:] = b"\xff" * self.chip.size
                self.stats["erases"]["chip"] = self.stats["erases"].get("chip", 0) + 1
                self._start_busy()

    def _write_enabled(self) -> bool:
        if self.status & SR_WEL:
            return True
        self.stats["ignored"] += 1
        return False

    def _unprotected(self) -> bool:
        if self.status & SR_BP:
            self.stats["ignored"] += 1
            self.status &= ~SR_WEL
            return False
        return True

    def _program(self, address: int, data: bytes) -> None:
        address %= self.chip.size
        page = address & ~(PAGE_SIZE - 1)
        # More than a page: the chip keeps only the last 256 bytes, wrapped within the page.
        if len(data) > PAGE_SIZE:
            skipped = len(data) - PAGE_SIZE
            address = page + (address - page + skipped) % PAGE_SIZE
            data = data[skipped:]
        for index, value in enumerate(data):
            target = page + (address - page + index) % PAGE_SIZE
            value |= self.weak_cells.get(target, 0)
            self.memory[target] &= value
        self.stats["pages_programmed"] += 1


# --- the iCE40 -------------------------------------------------------------------------------------

@dataclass
class ICE40Image:
    """What the configuration logic made of a bitstream."""
    complete: bool
    crc_ok: bool
    length: int  # bytes up to and including the wake-up command
    problem: str = ""


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC16_TABLE = _crc16_table()


def _crc16(data: Iterable[int], crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT (polynomial 1021, MSB first), as the iCE40 checks its bitstream."""
    table = _CRC16_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def parse_ice40_bitstream(data: bytes) -> ICE40Image:
    """Walk an iCE40 bitstream as the configuration logic does.

    After the 7EAA997E preamble come commands: a byte ``opcode << 4 | n`` and an ``n``-byte
    payload.  Opcode 0 with payload 1 (CRAM) or 3 (BRAM) is followed by ``(width+1)*height/8``
    data bytes and two zero bytes; 5 resets the CRC, 6 wakes the device up.  Opcode 2 checks the
    CRC-16 (CCITT, init FFFF) of everything since the reset, its own bytes included: 0 is good.
    """
    start = data.find(b"\x7e\xaa\x99\x7e", 0, 64)
    if start < 0:
        return ICE40Image(False, False, 0, "no 7EAA997E preamble")
    position = start + 4
    width = height = 0
    crc_from: int | None = None
    crc_ok = False
    while position < len(data):
        command = data[position]
        opcode, count = command >> 4, command & 0xF
        payload_bytes = data[position + 1:position + 1 + count]
        if len(payload_bytes) < count:
            break
        payload = int.from_bytes(payload_bytes, "big")
        end = position + 1 + count
        if opcode == 0 and payload in (1, 3):
            end += (width + 1) * height // 8 + 2
            if end > len(data):
                break
        elif opcode == 0 and payload == 5:
            crc_from = end
        elif opcode == 0 and payload == 6:
            return ICE40Image(True, crc_ok, end, "" if crc_ok else "CRC error")
        elif opcode == 2:
            crc_ok = crc_from is not None and _crc16(data[crc_from:end]) == 0
            if not crc_ok:
                return ICE40Image(False, False, end, "CRC error")
        elif opcode == 6:
            width = payload
        elif opcode == 7:
            height = payload
        elif opcode not in (0, 1, 5, 8, 9):
            return ICE40Image(False, False, position, f"unknown command {command:#04x}")
        position = end
    return ICE40Image(False, crc_ok, position, "truncated bitstream")


class ICE40ConfigModel:
    """The iCE40UP5K's configuration port as the iCEBreaker wires it."""

    #: SPI clocks the FPGA needs after the wake-up command in slave mode.
    EXTRA_CLOCKS = 49

    def __init__(self, flash: SpiNorFlash | None) -> None:
        self.flash = flash
        self.creset = True
        # "reset" (CRESET_B low), "slave" (SRAM load), "user" (configured and running: its
        # SPI pins are user I/O now), "failed" (configuration error: CDONE low, pins high-Z).
        self.mode = "user"
        self.cdone = False
        self.slave_data = bytearray()
        self.boots = 0
        self.last_image: ICE40Image | None = None
        self._clocks_after_wakeup: int | None = None

    def set_creset(self, level: bool, ss_low: bool) -> None:
        if level == self.creset:
            return
        self.creset = level
        if not level:
            self.mode = "reset"
            self.cdone = False
            return
        if ss_low:
            self.mode = "slave"
            self.slave_data = bytearray()
            self._clocks_after_wakeup = None
        else:
            self._boot_from_flash()

    def _boot_from_flash(self) -> None:
        self.boots += 1
        if self.flash is None:
            self.mode, self.cdone = "failed", False
            return
        # The FPGA wakes the flash (AB) and reads from address 0.
        self.flash.powered_down = False
        image = parse_ice40_bitstream(bytes(self.flash.memory[:256 << 10]))
        self.last_image = image
        self.cdone = image.complete and image.crc_ok
        self.mode = "user" if self.cdone else "failed"

    def clock(self, mosi: bytes, ss_low: bool) -> None:
        if self.mode != "slave":
            return
        if self._clocks_after_wakeup is not None:
            self._clocks_after_wakeup += 8 * len(mosi)
        elif ss_low:
            self.slave_data += mosi
            image = parse_ice40_bitstream(bytes(self.slave_data))
            if image.complete or image.problem == "CRC error":
                self.last_image = image
                if not image.crc_ok:
                    self.mode = "failed"
                    return
                self._clocks_after_wakeup = 8 * (len(self.slave_data) - image.length)
        if self._clocks_after_wakeup is not None and self._clocks_after_wakeup >= self.EXTRA_CLOCKS:
            self.mode = "user"
            self.cdone = True


# --- the FT2232H channel A -------------------------------------------------------------------------

class SimulatedSpiController:
    """Stands in for ``pyftdi.spi.SpiController`` on the iCEBreaker's channel A."""

    def __init__(self, flash: SpiNorFlash | None = None, *, cs_count: int = 1,
                 fpga: bool = True) -> None:
        self.flash = flash if flash is not None else SpiNorFlash()
        self.fpga = ICE40ConfigModel(self.flash) if fpga else None
        self.cs_count = cs_count
        self.url: str | None = None
        self.configured = False
        self.closed = False
        self._frequency = 0.0
        self._cs_low = [False] * 5
        self._gpio_dir = 0
        self._gpio_out = 0
        self._ports: dict[int, SimulatedSpiPort] = {}
        self.log: list[str] = []

    # pyftdi API ---------------------------------------------------------------------------------

    def configure(self, url: str, **kwargs) -> None:
        if self.configured:
            raise SpiIOError("Already configured")
        self.cs_count = int(kwargs.pop("cs_count", self.cs_count))
        if not 1 <= self.cs_count <= 5:
            raise ValueError(f"Unsupported CS line count: {self.cs_count}")
        self.url = url
        self._frequency = float(kwargs.pop("frequency", 6e6))
        self._gpio_dir = int(kwargs.pop("direction", 0)) & self._gpio_mask
        self._set_gpio(int(kwargs.pop("initial", 0)) & self._gpio_dir)
        self.configured = True

    def get_port(self, cs: int, freq: float | None = None, mode: int = 0) -> "SimulatedSpiPort":
        self._require()
        if cs >= self.cs_count:
            raise SpiIOError(f"/CS pin {cs} not reserved for SPI")
        if cs not in self._ports:
            self._ports[cs] = SimulatedSpiPort(self, cs, min(freq or self._frequency, 30e6))
        return self._ports[cs]

    def get_gpio(self) -> "SimulatedGpioPort":
        self._require()
        return SimulatedGpioPort(self)

    def close(self, freeze: bool = False) -> None:
        self.closed = True
        self.configured = False

    def terminate(self) -> None:
        self.close()

    @property
    def frequency_max(self) -> float:
        return 30e6

    @property
    def frequency(self) -> float:
        return self._frequency

    # wiring ---------------------------------------------------------------------------------------

    @property
    def _gpio_mask(self) -> int:
        spi_and_cs = 0x07 | (((CS_BIT << self.cs_count) - 1) & ~(CS_BIT - 1))
        return 0xFFFF & ~spi_and_cs

    def _require(self) -> None:
        if not self.configured:
            raise SpiIOError("FTDI controller not initialized")

    def _ss_low(self) -> bool:
        return self._cs_low[FLASH_CS]

    def _set_cs(self, cs: int, low: bool) -> None:
        if self._cs_low[cs] == low:
            return
        self._cs_low[cs] = low
        if cs == FLASH_CS:
            if low:
                self.flash.select()
            else:
                self.flash.deselect()

    def _set_gpio(self, value: int) -> None:
        self._gpio_out = value
        if self.fpga is not None:
            self.fpga.set_creset(bool(value & CRESET), self._ss_low())

    def _transfer(self, cs: int, mosi: bytes) -> bytes:
        if cs != FLASH_CS:
            return b"\xff" * len(mosi)  # nothing on AD3
        if self.fpga is not None and self.fpga.mode == "user" and mosi:
            self.flash._violation("flash traffic while the FPGA is not held in reset "
                                  "(CRESET_B high): it may drive the SPI bus")
        miso = self.flash.clock(mosi)
        if self.fpga is not None:
            self.fpga.clock(mosi, self._ss_low())
        return miso


class SimulatedSpiPort:
    """Stands in for ``pyftdi.spi.SpiPort``."""

    def __init__(self, controller: SimulatedSpiController, cs: int, frequency: float) -> None:
        self._controller = controller
        self._cs = cs
        self._frequency = frequency

    def exchange(self, out: bytes | bytearray | Iterable[int] = b"", readlen: int = 0,
                 start: bool = True, stop: bool = True, duplex: bool = False,
                 droptail: int = 0) -> bytes:
        c = self._controller
        c._require()
        out = bytes(out)
        if len(out) > PAYLOAD_MAX_LENGTH:
            raise SpiIOError("Output payload is too large")
        if readlen > PAYLOAD_MAX_LENGTH:
            raise SpiIOError("Input payload is too large")
        if start:
            c._set_cs(self._cs, True)
        if droptail:
            # A partial byte (e.g. iceprog's 2-bit QPI exit): clocks, but no whole byte.
            out, tail = out[:-1], out[-1:]
        if duplex:
            mosi = out + b"\xff" * max(0, readlen - len(out))
            result = c._transfer(self._cs, mosi)[:readlen]
        else:
            c._transfer(self._cs, out)
            result = c._transfer(self._cs, b"\x00" * readlen) if readlen else b""
        if stop:
            c._set_cs(self._cs, False)
        return bytes(result)

    def read(self, readlen: int = 0, start: bool = True, stop: bool = True,
             droptail: int = 0) -> bytes:
        return self.exchange(b"", readlen, start, stop, False, droptail)

    def write(self, out: bytes | bytearray | Iterable[int], start: bool = True, stop: bool = True,
              droptail: int = 0) -> None:
        self.exchange(out, 0, start, stop, False, droptail)

    def force_select(self, level: bool | None = None, cs_hold: float = 0) -> None:
        c = self._controller
        c._require()
        if level is None:
            c._set_cs(self._cs, True)
            c._set_cs(self._cs, False)
        else:
            c._set_cs(self._cs, not level)

    def flush(self) -> None:
        pass

    def set_frequency(self, frequency: float) -> None:
        self._frequency = min(frequency, self._controller.frequency_max)

    def set_mode(self, mode: int, cs_hold: int | None = None) -> None:
        if not 0 <= mode <= 3:
            raise SpiIOError(f"Invalid SPI mode: {mode}")

    @property
    def frequency(self) -> float:
        return self._frequency

    @property
    def cs(self) -> int:
        return self._cs

    @property
    def mode(self) -> int:
        return 0


class SimulatedGpioPort:
    """Stands in for ``pyftdi.spi.SpiGpioPort``: CDONE in, CRESET_B out."""

    def __init__(self, controller: SimulatedSpiController) -> None:
        self._controller = controller

    @property
    def pins(self) -> int:
        return self._controller._gpio_mask

    @property
    def all_pins(self) -> int:
        return self._controller._gpio_mask

    @property
    def width(self) -> int:
        return 16

    @property
    def direction(self) -> int:
        return self._controller._gpio_dir

    def set_direction(self, pins: int, direction: int) -> None:
        c = self._controller
        if pins & ~c._gpio_mask:
            raise SpiIOError("Cannot access SPI pins as GPIO")
        c._gpio_dir = (c._gpio_dir & ~pins) | (pins & direction)

    def write(self, value: int) -> None:
        c = self._controller
        c._require()
        if (value & c._gpio_dir) != value:
            raise SpiIOError(f"No such GPO pins: {c._gpio_dir:04x}/{value:04x}")
        c._set_gpio(value)

    def read(self, with_output: bool = False) -> int:
        c = self._controller
        c._require()
        pins = c._gpio_out & c._gpio_dir
        if c.fpga is not None and c.fpga.cdone:
            pins |= CDONE
        if not with_output:
            pins &= ~c._gpio_dir
        return pins & c._gpio_mask
