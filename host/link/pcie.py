"""The PCIe transport: the BAR window of :mod:`sigfuse.bar` over a memory mapping.

* ``pcie://0000:03:00.0`` maps ``/sys/bus/pci/devices/0000:03:00.0/resource0`` (the approach of
  LiteX's ``CommPCIe``: open ``O_RDWR | O_SYNC``, ``mmap``, 32-bit loads and stores).  The
  window and the mailbox work through it.  The rings live in host memory the device reaches by
  DMA, which sysfs cannot provide: a DMA buffer and its bus address come from a kernel driver
  (LitePCIe's, for example), so over plain sysfs :meth:`PcieTransport.push_signals` and
  :meth:`~PcieTransport.pop` raise :class:`LinkError` saying so.
* ``pcie-sim://PATH`` maps the file of a ``pcie-sim`` model (:class:`sigfuse.sim.pcie_model.PcieSimModel`):
  the window, then the host memory the rings live in.  ``?sig_entries=N&res_entries=M`` choose
  the ring sizes (powers of two; default: the largest of 1024/2048 that fits).

32-bit accessors: through cffi (``ffi.from_buffer`` over the mapping, one typed 32-bit load or
store per access -- what MMIO needs) when cffi imports, otherwise ``struct`` on the ``mmap``
(the pure-Python fallback; :data:`ACCESSOR` says which).  Ring entries are copied in bulk
slices; the doorbell is written after the entries it announces.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qs

from ..bar import (BAR, BAR_MAGIC, BAR_SIZE, BAR_VERSION, CONTROL_ENABLE, REG_COMMIT,
                   REG_STATUS_CODE_MASK, REG_TICKET_MASK, REG_TICKET_SHIFT, RESULT_ENTRY_BYTES,
                   SIGNAL_ENTRY_BYTES, SIM_HOST_MEMORY_OFFSET, STATUS_ENABLED, STATUS_FAULT,
                   STATUS_GONE, STATUS_RING_ERROR, EntryOp, RegOp, RegStatus, ring_layout)
from ..contract import DECISION_LAYOUT, SIGNAL_LAYOUT, Decision, Pop, Signal
from ..protocol import (RESULT_RECORD_BYTES, RESULT_RECORD_LAYOUT, SIGNAL_RECORD_BYTES,
                        BodyError, Result, ResultKind, unpack_result)
from ..regmap import (BY_ADDR, STATS_CONTROL_SNAPSHOT, register, stats_registers)
from .transport import DeviceGone, LinkCounters, LinkError, LinkTimeout, Transport

__all__ = ["PcieTransport", "RegisterError", "open_pcie", "open_url", "ACCESSOR",
           "SYSFS_DEVICES"]

SYSFS_DEVICES = Path("/sys/bus/pci/devices")
_ALL_ONES = 0xFFFF_FFFF


class RegisterError(LinkError):
    """The mailbox refused a register access (the link's ERROR for REG_READ/REG_WRITE)."""

    def __init__(self, url: str, addr: int, status: RegStatus) -> None:
        super().__init__(f"{url}: register 0x{addr:04x}: {status.name}")
        self.addr = addr
        self.status = status


# --- 32-bit accessors -------------------------------------------------------------------------

class _StructWords:
    """The pure-Python accessors: ``struct`` on the mmap (LiteX's CommPCIe uses ctypes the same
    way)."""
    name = "mmap"

    def __init__(self, mapping: mmap.mmap) -> None:
        self._map = mapping
        self._unpack = struct.Struct("<I").unpack_from
        self._pack = struct.Struct("<I").pack_into

    def read(self, offset: int) -> int:
        return self._unpack(self._map, offset)[0]

    def write(self, offset: int, value: int) -> None:
        self._pack(self._map, offset, value)

    def release(self) -> None:
        pass


try:  # cffi in ABI mode: no compiler needed, nothing built at import.
    from cffi import FFI as _FFI
    _ffi = _FFI()
except ImportError:  # pragma: no cover - cffi is a dependency of the codec, normally present
    _ffi = None


class _CffiWords:
    """32-bit accessors through cffi: ``uint32_t`` loads and stores on the mapping."""
    name = "cffi"

    def __init__(self, mapping: mmap.mmap) -> None:
        self._words = _ffi.from_buffer("uint32_t[]", mapping)

    def read(self, offset: int) -> int:
        return self._words[offset >> 2]

    def write(self, offset: int, value: int) -> None:
        self._words[offset >> 2] = value

    def release(self) -> None:
        _ffi.release(self._words)


#: Which 32-bit accessors new transports use: "cffi" or "mmap".
ACCESSOR = "cffi" if _ffi is not None and os.environ.get("SIGFUSE_PCIE_ACCESSOR") != "mmap" else "mmap"


def _words(mapping: mmap.mmap, accessor: str | None = None):
    accessor = accessor or ACCESSOR
    return _CffiWords(mapping) if accessor == "cffi" and _ffi is not None else _StructWords(mapping)


# --- entries ----------------------------------------------------------------------------------

def _signal_entry_packer():
    """A packer of a signal into a 16-byte ring entry (offsets from the contract's layout;
    ``protocol.pack_signal`` is generic and several times slower per signal)."""
    offsets, offset = {}, 0
    for f in SIGNAL_LAYOUT:
        offsets[f.name] = (offset, f.width, f.signed)
        offset += f.width
    plan = [offsets[name] for name in Signal._fields]
    (ts, ts_w, _), (src, src_w, _), (pair, pair_w, _), (side, side_w, _), \
        (conf, conf_w, _), (edge, edge_w, edge_signed) = plan
    assert edge_signed and not any(signed for _, _, signed in plan[:-1])
    edge_lo, edge_hi, edge_mask = -(1 << (edge_w - 1)), (1 << (edge_w - 1)) - 1, (1 << edge_w) - 1
    op = int(EntryOp.SIGNAL) << (SIGNAL_RECORD_BYTES * 8)

    def pack(signal: Signal, pair_slots: int) -> bytes:
        t, so, pa, si, co, ed = signal
        # (x >> width) == 0 holds exactly for 0 <= x < 2**width.
        if (t >> ts_w or so >> src_w or si >> side_w or co >> conf_w or not 0 <= pa < pair_slots
                or not edge_lo <= ed <= edge_hi):
            _check_signal(signal, plan, pair_slots)
        return (op | t << ts | so << src | pa << pair | si << side | co << conf
                | (ed & edge_mask) << edge).to_bytes(SIGNAL_ENTRY_BYTES, "little")
    return pack


def _check_signal(signal: Signal, plan, pair_slots: int) -> None:
    """The error for a signal that does not fit its entry (the slow path of the packer)."""
    for (_, width, signed), raw, name in zip(plan, signal, Signal._fields):
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= raw <= hi:
            raise ValueError(f"signal field {name} = {raw} does not fit {width} bits")
    if signal.pair >= pair_slots:
        raise ValueError(f"pair slot {signal.pair} is not below the board's {pair_slots}")
    raise ValueError(f"signal {signal!r} does not fit a ring entry")  # pragma: no cover


def _record_decoder(fields, cls):
    """A decoder of a packed contract record into ``cls`` (offsets, masks and sign bits
    precomputed, like the Verilator backend's: it runs once per result)."""
    by_name, offset = {}, 0
    for f in fields:
        by_name[f.name] = (offset, (1 << f.width) - 1, (1 << (f.width - 1)) if f.signed else 0)
        offset += f.width
    plan = [by_name[name] for name in cls._fields]

    def decode(value: int):
        out = []
        for shift, mask, sign in plan:
            raw = (value >> shift) & mask
            if sign and raw & sign:
                raw -= sign << 1
            out.append(raw)
        return cls(*out)
    return decode


def _result_decoder():
    """A decoder of a result ring entry's record into a :class:`~sigfuse.protocol.Result`;
    anything :func:`~sigfuse.protocol.unpack_result` would refuse goes to it for the error."""
    decision = _record_decoder(DECISION_LAYOUT, Decision)
    signal = _record_decoder(SIGNAL_LAYOUT, Signal)
    record_bits = RESULT_RECORD_LAYOUT[0].width
    kind_bits = RESULT_RECORD_LAYOUT[1].width
    record_mask = (1 << record_bits) - 1
    signal_bits = sum(f.width for f in SIGNAL_LAYOUT)
    kinds = {int(k): k for k in ResultKind}

    def decode(raw: bytes) -> Result:
        value = int.from_bytes(raw, "little")
        kind = kinds.get(value >> record_bits)   # kind, and the reserved bits above it zero
        record = value & record_mask
        if kind is ResultKind.DECISION or kind is ResultKind.POPPED or \
                kind is ResultKind.EVICTED or kind is ResultKind.REJECTED:
            return Result(kind, decision(record))
        if kind is ResultKind.STALE and not record >> signal_bits:
            return Result(kind, signal(record))
        if kind is ResultKind.POPPED_EMPTY and not record:
            return Result(kind, None)
        return unpack_result(raw)   # raises BodyError naming the problem
    assert kind_bits + record_bits + RESULT_RECORD_LAYOUT[2].width == RESULT_RECORD_BYTES * 8
    return decode


_decode_result = _result_decoder()
_pack_signal_entry = _signal_entry_packer()
_POP_ENTRY = (int(EntryOp.POP) << (14 * 8)).to_bytes(SIGNAL_ENTRY_BYTES, "little")


# --- the transport ----------------------------------------------------------------------------

class PcieTransport(Transport):
    """A board behind a BAR window (see the module docstring).

    :param window: the mapping of the window (and, for the model, the host memory after it).
    :param host_memory: offset of the host memory in ``window`` (None: no DMA buffer).
    :param sim_pid_check: a model's window: its ``model_pid`` must be a live process.
    :param timeout: seconds without progress before :class:`LinkTimeout`.
    :param gone_timeout: seconds without a heartbeat before :class:`DeviceGone`.
    """

    def __init__(self, url: str, window: mmap.mmap, *, host_memory: int | None,
                 sig_entries: int | None = None, res_entries: int | None = None,
                 sim_pid_check: bool = False, timeout: float = 10.0, gone_timeout: float = 2.0,
                 accessor: str | None = None) -> None:
        self.url = url
        self.counters = LinkCounters()
        self.timeout = timeout
        self.gone_timeout = gone_timeout
        self._map = window
        self._w = _words(window, accessor)
        self.accessor = self._w.name
        self._closed = False
        self._sim_pid_check = sim_pid_check
        self._host = host_memory
        self._ticket = 0
        try:
            self._check_window()
            self._ticket = (self._read("reg_status") >> REG_TICKET_SHIFT) & REG_TICKET_MASK
            self.pair_slots = self.read_registers([register("pair_slots").addr])[0]
            self.layout = None
            if host_memory is not None:
                self._setup_rings(sig_entries, res_entries)
        except BaseException:
            self._release()
            raise

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open_url(cls, url: str, *, timeout: float = 10.0, **options) -> "PcieTransport":
        """``pcie://DOMAIN:BUS:DEV.FN`` or ``pcie-sim://PATH[?sig_entries=N&res_entries=M]``."""
        scheme, _, rest = url.partition("://")
        if scheme == "pcie":
            return cls._open_sysfs(url, rest, timeout=timeout, **options)
        if scheme == "pcie-sim":
            return cls._open_sim(url, rest, timeout=timeout, **options)
        raise LinkError(f"{url}: not a pcie:// or pcie-sim:// URL")

    @classmethod
    def _open_sysfs(cls, url: str, address: str, **options) -> "PcieTransport":
        address = address.strip("/")
        if address.count(":") == 1:
            address = "0000:" + address
        device = SYSFS_DEVICES / address
        resource = device / "resource0"
        if not device.exists():
            raise LinkError(f"{url}: no PCI device {address} ({device} does not exist; "
                            "`lspci -D` lists the addresses)")
        if not resource.exists():
            raise LinkError(f"{url}: {device} has no BAR0 ({resource} missing)")
        try:
            fd = os.open(resource, os.O_RDWR | os.O_SYNC)
        except PermissionError:
            raise LinkError(f"{url}: no permission to map {resource} (run as root, or give your "
                            "user read/write access to it with a udev rule)") from None
        except OSError as error:
            raise LinkError(f"{url}: cannot open {resource}: {error}") from None
        try:
            size = os.fstat(fd).st_size or BAR_SIZE
            if size < BAR_SIZE:
                raise LinkError(f"{url}: BAR0 is {size} bytes, the sigfuse window needs {BAR_SIZE}")
            try:
                window = mmap.mmap(fd, BAR_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as error:
                raise LinkError(f"{url}: cannot map {resource}: {error} (is the device's memory "
                                "decoding enabled? `setpci -s ADDR COMMAND=0x02`)") from None
        finally:
            os.close(fd)
        return cls(url, window, host_memory=None, **options)

    @classmethod
    def _open_sim(cls, url: str, rest: str, **options) -> "PcieTransport":
        path, _, query = rest.partition("?")
        for key, values in parse_qs(query).items():
            if key not in ("sig_entries", "res_entries"):
                raise LinkError(f"{url}: unknown option {key!r} (sig_entries, res_entries)")
            options[key] = int(values[-1])
        if not path:
            raise LinkError(f"{url}: no file (pcie-sim://PATH)")
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise LinkError(f"{url}: no model file {path} (start one with PcieSimModel)") from None
        except OSError as error:
            raise LinkError(f"{url}: cannot open {path}: {error}") from None
        try:
            size = os.fstat(fd).st_size
            if size < SIM_HOST_MEMORY_OFFSET:
                raise LinkError(f"{url}: {path} is {size} bytes, smaller than the window")
            window = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return cls(url, window, host_memory=SIM_HOST_MEMORY_OFFSET, sim_pid_check=True, **options)

    def _check_window(self) -> None:
        magic = self._read("bar_magic")
        if magic == _ALL_ONES or self._read("status") & STATUS_GONE:
            raise DeviceGone(f"{self.url}: the device is gone (its window reads all ones)")
        if magic != BAR_MAGIC:
            raise LinkError(f"{self.url}: not a sigfuse PCIe window (magic 0x{magic:08x}, "
                            f"expected 0x{BAR_MAGIC:08x})")
        version = self._read("bar_version")
        if version >> 16 != BAR_VERSION >> 16:
            raise LinkError(f"{self.url}: BAR layout {version >> 16}.{version & 0xFFFF}, this host "
                            f"speaks {BAR_VERSION >> 16}.{BAR_VERSION & 0xFFFF} (majors must match)")
        self._alive()

    def _setup_rings(self, sig_entries: int | None, res_entries: int | None) -> None:
        room = len(self._map) - self._host
        if sig_entries is None and res_entries is None:
            sig_entries, res_entries = 1024, 2048
            while ring_layout(sig_entries, res_entries).size > room and sig_entries > 2:
                sig_entries //= 2
                res_entries //= 2
        layout = ring_layout(sig_entries or 1024, res_entries or 2048)
        if layout.size > room:
            raise LinkError(f"{self.url}: rings of {layout.sig_entries}/{layout.res_entries} "
                            f"entries need {layout.size} bytes of host memory, the model has {room}")
        self.layout = layout
        # Stop the rings (a previous session may have left them running), configure, start.
        self._write("control", 0)
        self._wait(lambda: not self._read("status") & (STATUS_ENABLED | STATUS_RING_ERROR),
                   "the rings to stop")
        self._write("sig_base_lo", layout.sig_base & _ALL_ONES)
        self._write("sig_base_hi", layout.sig_base >> 32)
        self._write("sig_entries", layout.sig_entries)
        self._write("res_base_lo", layout.res_base & _ALL_ONES)
        self._write("res_base_hi", layout.res_base >> 32)
        self._write("res_entries", layout.res_entries)
        self._write("sig_head", 0)
        self._write("res_tail", 0)
        self._write("control", CONTROL_ENABLE)
        self._wait(lambda: self._read("status") & (STATUS_ENABLED | STATUS_RING_ERROR),
                   "the rings to start")
        if self._read("status") & STATUS_RING_ERROR:
            raise LinkError(f"{self.url}: the device refused the ring configuration")
        self._sig_head = self._sig_tail = self._sig_done = 0
        self._res_tail = 0
        self._sig_ring = self._host + layout.sig_base
        self._res_ring = self._host + layout.res_base

    # --- window access ------------------------------------------------------------------------

    def _read(self, name: str) -> int:
        return self._w.read(BAR[name])

    def _write(self, name: str, value: int) -> None:
        self._w.write(BAR[name], value)

    def _alive(self, *, thorough: bool = True) -> None:
        """Raise DeviceGone when the device is known to be gone.  ``thorough`` also asks the OS
        whether a model's process still lives (tens of microseconds: done at open and while
        waiting, not before every batch)."""
        if self._closed:
            raise DeviceGone(f"{self.url}: the transport is closed")
        if self._w.read(BAR["bar_magic"]) == _ALL_ONES or self._w.read(BAR["status"]) & STATUS_GONE:
            raise DeviceGone(f"{self.url}: the device is gone (its window reads all ones)")
        if thorough and self._sim_pid_check:
            pid = self._w.read(BAR["model_pid"])
            if not _process_alive(pid):
                raise DeviceGone(f"{self.url}: the model (process {pid}) is gone")

    def _wait(self, ready, what: str):
        """Poll ``ready()`` until true: spin first (latency), then nap; check the device is
        alive meanwhile, and that its heartbeat moves."""
        value = ready()
        if value:
            return value
        start = time.perf_counter()
        next_check = start + 0.05
        heartbeat = self._w.read(BAR["heartbeat"])
        heartbeat_seen = start
        spins = 0
        while True:
            value = ready()
            if value:
                return value
            spins += 1
            now = time.perf_counter()
            if now >= next_check:
                next_check = now + 0.05
                self._alive()
                beat = self._w.read(BAR["heartbeat"])
                if beat != heartbeat or self._host is None:
                    heartbeat, heartbeat_seen = beat, now
                elif now - heartbeat_seen > self.gone_timeout:
                    raise DeviceGone(f"{self.url}: no heartbeat for {self.gone_timeout} s")
                if now - start > self.timeout:
                    self.counters.timeouts += 1
                    raise LinkTimeout(f"{self.url}: timed out after {self.timeout} s waiting for {what}")
            if now - start > 0.0002:
                time.sleep(0.00002 if now - start < 0.01 else 0.0005)
            else:
                # The model may be waiting for this very core (2 cores, many processes).
                os.sched_yield()

    def _mailbox(self, op: RegOp, addr: int, value: int = 0, commit: bool = False) -> int:
        self._alive(thorough=False)
        ticket = (self._ticket + 1) & REG_TICKET_MASK
        self._write("reg_addr", addr)
        self._write("reg_wdata", value)
        self._write("reg_ctrl", int(op) | (REG_COMMIT if commit else 0) | ticket << REG_TICKET_SHIFT)
        self._ticket = ticket
        self.counters.commands += 1
        offset = BAR["reg_status"]
        self._wait(lambda: self._w.read(offset) >> REG_TICKET_SHIFT == ticket,
                   f"the register access to 0x{addr:04x}")
        code = RegStatus(self._w.read(offset) & REG_STATUS_CODE_MASK)
        if code != RegStatus.OK:
            raise RegisterError(self.url, addr, code)
        return self._read("reg_rdata")

    # --- Transport ----------------------------------------------------------------------------

    def ping(self, data: bytes = b"") -> bytes:
        self._check_window()
        self._mailbox(RegOp.READ, register("magic").addr)
        return bytes(data)

    def read_registers(self, addrs: Sequence[int]) -> list[int]:
        return [self._mailbox(RegOp.READ, addr) for addr in addrs]

    def write_registers(self, writes: Sequence[tuple[int, int]]) -> None:
        writes = list(writes)
        # All or nothing, as REG_WRITE: check everything before the first write.
        for addr, value in writes:
            reg = BY_ADDR.get(addr)
            if reg is None:
                raise RegisterError(self.url, addr, RegStatus.BAD_ADDRESS)
            if not reg.writable:
                raise RegisterError(self.url, addr, RegStatus.READ_ONLY)
            if not 0 <= value <= reg.max_value:
                raise RegisterError(self.url, addr, RegStatus.BAD_VALUE)
        for i, (addr, value) in enumerate(writes):
            self._mailbox(RegOp.WRITE, addr, value, commit=i == len(writes) - 1)

    def stats(self) -> dict[int, int]:
        self._mailbox(RegOp.WRITE, register("stats_control").addr, STATS_CONTROL_SNAPSHOT, commit=True)
        regs = stats_registers()
        return dict(zip((r.addr for r in regs), self.read_registers([r.addr for r in regs])))

    def push_signals(self, signals: Sequence[Signal]) -> list[Result]:
        pair_slots = self.pair_slots
        return self.run_entries([_pack_signal_entry(s, pair_slots) for s in signals])

    def pop(self, count: int = 1) -> list[Result]:
        if count < 0:
            raise ValueError(f"cannot pop {count} decisions")
        return self.run_entries([_POP_ENTRY] * count)

    def execute(self, events: Sequence[Signal | Pop]) -> list[Result]:
        """Signals and pops in their order, as one run of ring entries (the ring carries both
        kinds, so nothing waits for a change of kind)."""
        pair_slots = self.pair_slots
        entries = []
        for event in events:
            if type(event) is Signal:
                entries.append(_pack_signal_entry(event, pair_slots))
            elif type(event) is Pop:
                entries.append(_POP_ENTRY)
            else:
                raise TypeError(f"not an event: {event!r}")
        return self.run_entries(entries)

    def run_entries(self, entries: Sequence[bytes]) -> list[Result]:
        """Run signal ring entries (signals and pops, in order); their results, in order.

        Writes as many entries as the ring has room for, rings the doorbell, reads results as
        they arrive (freeing their slots) and refills, until the device reports every entry done
        and every result has been read.
        """
        if self.layout is None:
            raise LinkError(f"{self.url}: the rings need a DMA buffer in host memory, which sysfs "
                            "cannot provide: use a kernel driver's buffer (see docs/pcie.md); "
                            "register access works without it")
        self._alive(thorough=False)
        results: list[Result] = []
        n = len(entries)
        if not n:
            return results
        w = self._w
        mem = self._map
        sig_mask = self.layout.sig_entries - 1
        sig_entries = self.layout.sig_entries
        res_mask = self.layout.res_entries - 1
        sig_ring, res_ring = self._sig_ring, self._res_ring
        off_sig_head, off_sig_tail = BAR["sig_head"], BAR["sig_tail"]
        off_sig_done, off_res_head, off_res_tail = BAR["sig_done"], BAR["res_head"], BAR["res_tail"]
        target = (self._sig_head + n) & _ALL_ONES
        decode = _decode_result
        sent = 0
        self.counters.commands += 1
        self.counters.bytes_out += n * SIGNAL_ENTRY_BYTES

        def progress() -> bool:
            nonlocal sent
            moved = False
            # Fill the signal ring.
            if sent < n:
                free = sig_entries - ((self._sig_head - self._sig_tail) & _ALL_ONES)
                if free == 0:
                    self._sig_tail = w.read(off_sig_tail)
                    free = sig_entries - ((self._sig_head - self._sig_tail) & _ALL_ONES)
                count = min(free, n - sent)
                while count:
                    slot = self._sig_head & sig_mask
                    run = min(count, sig_entries - slot)
                    start = sig_ring + slot * SIGNAL_ENTRY_BYTES
                    mem[start:start + run * SIGNAL_ENTRY_BYTES] = b"".join(entries[sent:sent + run])
                    sent += run
                    count -= run
                    self._sig_head = (self._sig_head + run) & _ALL_ONES
                    moved = True
                if moved:
                    w.write(off_sig_head, self._sig_head)   # the doorbell, after the entries
            # Drain the result ring.
            head = w.read(off_res_head)
            while head != self._res_tail:
                slot = self._res_tail & res_mask
                run = min((head - self._res_tail) & _ALL_ONES, res_mask + 1 - slot)
                start = res_ring + slot * RESULT_ENTRY_BYTES
                chunk = mem[start:start + run * RESULT_ENTRY_BYTES]
                for i in range(run):
                    entry = chunk[i * RESULT_ENTRY_BYTES:(i + 1) * RESULT_ENTRY_BYTES]
                    seq = int.from_bytes(entry[RESULT_RECORD_BYTES:RESULT_RECORD_BYTES + 4], "little")
                    if seq != (self._res_tail + i) & _ALL_ONES:
                        raise LinkError(f"{self.url}: result ring entry {self._res_tail + i} "
                                        f"carries seq {seq}: a result was lost or overwritten")
                    try:
                        results.append(decode(entry[:RESULT_RECORD_BYTES]))
                    except BodyError as error:
                        raise LinkError(f"{self.url}: result ring entry {self._res_tail + i}: {error}") from None
                self._res_tail = (self._res_tail + run) & _ALL_ONES
                self.counters.bytes_in += run * RESULT_ENTRY_BYTES
                moved = True
            if moved:
                w.write(off_res_tail, self._res_tail)     # frees the slots just read
            return moved

        def finished() -> bool:
            if progress():
                return False
            if sent < n:
                return False
            # sig_done is published after res_head: read it first, then the results once more.
            done = w.read(off_sig_done)
            if done != target:
                return False
            progress()
            return w.read(off_res_head) == self._res_tail

        self._wait(finished, f"{n} ring entries")
        self._sig_done = target
        self._sig_tail = w.read(off_sig_tail)
        if w.read(BAR["status"]) & STATUS_FAULT:
            raise LinkError(f"{self.url}: the device raised its fault flag")
        return results

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.layout is not None and self._w.read(BAR["bar_magic"]) == BAR_MAGIC:
                self._write("control", 0)
        except (ValueError, OSError):
            pass
        self._release()

    def _release(self) -> None:
        self._closed = True
        try:
            self._w.release()
        except Exception:
            pass
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def open_url(url: str, **options) -> PcieTransport:
    """The transport for a ``pcie://`` or ``pcie-sim://`` URL (what ``Board.open`` calls)."""
    return PcieTransport.open_url(url, **options)


def open_pcie(url: str, **options) -> Transport:
    """Same as :func:`open_url` (the name the Board API's dispatcher was first given)."""
    return PcieTransport.open_url(url, **options)
