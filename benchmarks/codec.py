"""Link codec: frames/s encoded and decoded, native (C via cffi) against pure Python.

    .venv/bin/python benchmarks/codec.py [--frames 20000] [--repeats 5] [--json benchmarks/results/codec.json]
    .venv/bin/python benchmarks/codec.py --c-steps [--frames 2000]   # the C alone, step by step
    .venv/bin/python benchmarks/codec.py --c-steps --portable          # ... its fallbacks forced

Workloads (generated from the seed before any clock runs):

* ``full``: PUSH_SIGNALS frames of 17 packed signals (238-byte body, 244 bytes on the wire),
  the frame the host sends most;
* ``small``: 3-byte acks (PUSH_ACK: prefix + status, 9 bytes on the wire), the frame the board
  answers most;
* ``mixed``: random types, bodies of 0..250 random bytes (a third of them zeros).

Each workload is measured as (frames/s; the Python figure is always :mod:`sigfuse.protocol`'s
own way of doing the job -- ``encode_frame`` / ``Frame.encode`` joined / ``Deframer.feed``):

* ``encode, per frame``: ``codec.encode_frame(type, seq, body)`` in a loop (one C call each);
* ``encode, batch (Frame objects in)``: ``codec.encode_frames(frames)``, one C call;
* ``encode, packed columns in``: ``codec.encode_packed(types, seqs, lengths, bodies)``, the
  frames already in flat buffers (what a caller that builds bodies in bulk has);
* ``decode (Frame objects out)``: ``codec.Deframer().feed(stream)``;
* ``decode, batch (columns out)``: ``codec.decode_batch(stream)``, one C call, the frames as
  columns (types, seqs, offsets, lengths, bodies) instead of a Python object each.

The Python side of ``encode`` and ``decode`` is :mod:`sigfuse.protocol` itself (its Frame
encode, Deframer), whose CRC (``binascii.crc_hqx``) and COBS (the ``cobs`` package) are C
already.  Rates are frames per second of CPU time of the measuring thread (the machine is
shared: waiting for a core is not the codec's cost).  Best of ``--repeats``; every run is kept
in the JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time
from array import array
from datetime import datetime, timezone
from pathlib import Path

from sigfuse import codec
from sigfuse import protocol as p
from sigfuse.contract import Signal

ROOT = Path(__file__).resolve().parents[1]


def workloads(n: int, seed: int) -> dict[str, list[p.Frame]]:
    rng = random.Random(seed)

    def signal() -> Signal:
        return Signal(rng.randrange(1 << 40), rng.randrange(7), rng.randrange(10), rng.randrange(2),
                      rng.randrange(32769), rng.randrange(-500, 500))

    full = [p.push_signals(i % 256, [signal() for _ in range(p.MAX_SIGNALS)]) for i in range(n)]
    small = [p.Frame(p.FrameType.PUSH_ACK, i % 256, bytes((p.FrameType.PUSH_SIGNALS, i % 256, 0)))
             for i in range(n)]
    mixed = []
    for i in range(n):
        body = bytes(rng.choice((0, 0, rng.randrange(256))) if rng.random() < 0.5 else rng.randrange(1, 256)
                     for _ in range(rng.randrange(p.MAX_BODY + 1)))
        mixed.append(p.Frame(rng.randrange(256), i % 256, body))
    return {"full": full, "small": small, "mixed": mixed}


def best_rate(fn, n: int, repeats: int) -> tuple[float, list[float]]:
    # CPU time of this thread, not wall time: the machine is shared, and time spent waiting
    # for a core is not the codec's cost.
    rates = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        rates.append(n / max(time.thread_time() - start, 1e-9))
    return max(rates), rates


def measure(frames: list[p.Frame], repeats: int) -> dict[str, dict]:
    """{measurement: {"python": (best, runs), "native": (best, runs)}}.  The python figure of
    the batch rows is sigfuse.protocol's own way of doing the same job (the fastest Python)."""
    n = len(frames)
    stream = b"".join(f.encode() for f in frames)
    triples = [(f.type, f.seq, f.body) for f in frames]
    types, seqs = bytes(f.type for f in frames), bytes(f.seq for f in frames)
    lengths, bodies = array("H", (len(f.body) for f in frames)), b"".join(f.body for f in frames)
    out: dict[str, dict] = {}

    def python_encode():
        for t, s, b in triples:
            p.encode_frame(t, s, b)

    def python_encode_join():
        return b"".join(f.encode() for f in frames)

    def python_decode():
        assert len(p.Deframer().feed(stream)) == n

    py_encode = best_rate(python_encode, n, repeats)
    py_join = best_rate(python_encode_join, n, repeats)
    py_decode = best_rate(python_decode, n, repeats)
    out["encode, per frame"] = {"python": py_encode}
    out["encode, batch (Frame objects in)"] = {"python": py_join}
    out["encode, packed columns in"] = {"python": py_join}
    out["decode (Frame objects out)"] = {"python": py_decode}
    out["decode, batch (columns out)"] = {"python": py_decode}
    if not codec.native_available():
        return out
    codec.use("native")
    assert codec.encode_frames(frames) == stream == codec.encode_packed(types, seqs, lengths, bodies)
    assert codec.decode_batch(stream).frames() == frames

    def native_encode():
        encode = codec.encode_frame
        for t, s, b in triples:
            encode(t, s, b)

    def native_decode():
        assert len(codec.Deframer().feed(stream)) == n

    def native_batch():
        assert codec.decode_batch(stream).frame_count == n

    out["encode, per frame"]["native"] = best_rate(native_encode, n, repeats)
    out["encode, batch (Frame objects in)"]["native"] = best_rate(lambda: codec.encode_frames(frames), n, repeats)
    out["encode, packed columns in"]["native"] = best_rate(
        lambda: codec.encode_packed(types, seqs, lengths, bodies), n, repeats)
    out["decode (Frame objects out)"]["native"] = best_rate(native_decode, n, repeats)
    out["decode, batch (columns out)"]["native"] = best_rate(native_batch, n, repeats)
    return out


def c_steps(frames: list[p.Frame], repeats: int, portable: bool = False) -> dict[str, float]:
    """ns per frame of each step of the C codec alone (``codec_steps.c``, built with ``cc -O2``
    against ``firmware/src/sigfuse_codec.c``), best of ``repeats`` rounds over ``frames``.
    ``portable`` forces the fallbacks of a compiler without SSE2 or a CPU without PCLMULQDQ."""
    import shutil
    import tempfile
    compiler = shutil.which("cc")
    if compiler is None:
        raise SystemExit("--c-steps needs a C compiler (cc)")
    with tempfile.TemporaryDirectory(prefix="codec-steps-") as tmp:
        exe, data = Path(tmp) / "codec_steps", Path(tmp) / "frames.bin"
        flags = ["-U__SSE2__", "-DSIGFUSE_NO_CLMUL"] if portable else []
        subprocess.run([compiler, "-std=c99", "-O2", "-D_POSIX_C_SOURCE=199309L", *flags,
                        "-I", str(ROOT / "firmware" / "include"), str(ROOT / "benchmarks" / "codec_steps.c"),
                        str(ROOT / "firmware" / "src" / "sigfuse_codec.c"), "-o", str(exe)], check=True)
        data.write_bytes(b"".join(len(f.body).to_bytes(2, "little") + bytes((f.type, f.seq)) + f.body
                                  for f in frames))
        out = subprocess.run([str(exe), str(data), str(repeats)], capture_output=True, text=True,
                             check=True).stdout
    return {name: float(ns) for name, ns in (line.split() for line in out.splitlines())}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--c-steps", action="store_true",
                        help="time the C codec's steps alone on the full-frame workload instead "
                             "(best of 10 x --repeats rounds)")
    parser.add_argument("--portable", action="store_true",
                        help="with --c-steps: the C's portable fallbacks (no SSE2, no PCLMULQDQ)")
    args = parser.parse_args(argv)

    loads = workloads(args.frames, args.seed)
    if args.c_steps:
        steps = c_steps(loads["full"], 10 * args.repeats, args.portable)
        print("| step, one full frame | ns |\n|---|--:|")
        for name, ns in steps.items():
            print(f"| {name} | {ns:.1f} |")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": " ".join(["benchmarks/codec.py", *(argv if argv is not None else sys.argv[1:])]),
                "frames": args.frames, "portable": args.portable, "git_commit": _git_commit(),
                "ns_per_frame": steps}, indent=1) + "\n")
        return 0
    gc.freeze()
    results = {name: measure(frames, args.repeats) for name, frames in loads.items()}

    print(f"| workload | measurement | python frames/s | native frames/s | native / python |")
    print("|---|---|--:|--:|--:|")
    table = []
    for name, rows in results.items():
        for what, by in rows.items():
            py = by["python"][0]
            nat = by.get("native", (None,))[0]
            ratio = nat / py if nat else None
            table.append({"workload": name, "measurement": what, "python": py, "native": nat, "ratio": ratio})
            print(f"| {name} | {what} | {py:,.0f} | {f'{nat:,.0f}' if nat else '—'} | "
                  f"{f'{ratio:.1f}×' if ratio else '—'} |")
    if args.json:
        document = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join(["benchmarks/codec.py", *(argv if argv is not None else sys.argv[1:])]),
            "seed": args.seed, "frames": args.frames, "repeats": args.repeats,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()), "git_commit": _git_commit(),
            "native_available": codec.native_available(),
            "note": "python figure of the batch and packed rows: sigfuse.protocol's own way "
                    "(Frame.encode joined; Deframer.feed)",
            "table": table,
            "runs": {name: {what: {k: v[1] for k, v in by.items()} for what, by in rows.items()}
                     for name, rows in results.items()},
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
