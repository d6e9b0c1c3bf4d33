"""The register map and its exports: regs.json, regs.csv, the C headers, the docs table, the CLI."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sigfuse import protocol as p
from sigfuse import regexport
from sigfuse.contract import FusionParams
from sigfuse.regmap import (BY_NAME, GROUPS, REGISTERS, Access, StatKind, param_registers,
                            params_from_values, params_to_writes, register, stats_registers)

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
DOCS = ROOT / "docs" / "link.md"


def test_map_covers_every_fusion_parameter_with_contract_defaults():
    defaults = FusionParams()
    fields = {f.name for f in dataclasses.fields(FusionParams)}
    assert {r.param[0] for r in param_registers()} == fields
    writes = params_to_writes(defaults)
    assert len(writes) == 8 + 5 + 8
    for addr, value in writes:
        assert next(r for r in REGISTERS if r.addr == addr).reset == value
    assert params_from_values(dict(writes)) == defaults
    odd = FusionParams(weights=(1, 2, 3, 4, 5, 6, 7, 32768), consensus_threshold=1, quorum=2,
                       min_confidence=3, vote_ttl_us=2**32 - 1, cooldown_us=0,
                       boost=(65535, 1, 2, 3, 4, 5, 6, 7))
    assert params_from_values(dict(params_to_writes(odd))) == odd
    for r in param_registers():
        field, _ = r.param
        assert r.access == Access.RW and r.max_value in (32768, 65535, 2**32 - 1)


def test_map_is_well_formed():
    addrs = [r.addr for r in REGISTERS]
    assert addrs == sorted(set(addrs))
    for r in REGISTERS:
        name, base, size, _ = next(g for g in GROUPS if g[0] == r.group)
        assert base <= r.addr < base + size and 1 <= r.width <= 32 and r.doc
    required = {"magic", "version", "build_id", "clk_hz", "pair_slots", "queue_capacity",
                "stats_control", "frames_ok", "frames_bad_crc", "frames_bad_cobs", "frames_oversize",
                "frames_unknown_type", "signals_in", "stale_drops", "decisions_out", "queue_pushes",
                "queue_pops", "queue_evicted", "queue_rejected", "queue_high_water",
                "uptime_clocks_lo", "uptime_clocks_hi"}
    assert required <= set(BY_NAME)
    stats = stats_registers()
    assert all(r.access == Access.RO for r in stats)
    assert [r.addr for r in stats] == list(range(stats[0].addr, stats[0].addr + len(stats)))
    # A STATS reply carries every stats register and must fit one frame.
    assert p.record_bytes(p.REPLY_PREFIX) + len(stats) * 6 <= p.MAX_BODY
    assert register("min_confidence").addr == 0x2A
    with pytest.raises(KeyError, match="did you mean"):
        register("min_confidense")


def test_generated_files_are_up_to_date():
    assert regexport.check(FIRMWARE) == [], "firmware/ is stale: run `sigfuse regs export`"


def test_docs_register_table_is_up_to_date():
    text = DOCS.read_text(encoding="utf-8")
    assert regexport.update_docs(text) == text, \
        "docs/link.md register table is stale: run `sigfuse regs export --docs docs/link.md`"


def test_json_and_csv_describe_every_register():
    doc = json.loads(regexport.render_json())
    assert [r["name"] for r in doc["registers"]] == [r.name for r in REGISTERS]
    assert doc["protocol_version"] == list(p.PROTOCOL_VERSION)
    by_name = {r["name"]: r for r in doc["registers"]}
    assert by_name["weight_momentum"]["param"] == {"field": "weights", "index": 1}
    assert by_name["build_id"]["reset"] is None and by_name["magic"]["reset"] == 0x53464753
    assert by_name["queue_high_water"]["stat"] == StatKind.GAUGE.value
    rows = list(csv.DictReader(io.StringIO(regexport.render_csv())))
    assert [int(row["addr"], 16) for row in rows] == [r.addr for r in REGISTERS]
    assert rows[0].keys() == {"addr", "name", "group", "access", "width", "reset", "max", "doc"}


def test_c_headers_compile_and_agree(tmp_path):
    # A C compiler is there: Verilator needs one.
    assert shutil.which("cc"), "no C compiler (cc)"
    program = tmp_path / "regs.c"
    program.write_text(r'''
#include <stdio.h>
#include "sigfuse_regs.h"
#include "sigfuse_link.h"
int main(void) {
    const struct sigfuse_reg_info *t = sigfuse_reg_table();
    unsigned i;
    for (i = 0; i < SIGFUSE_REG_COUNT; i++)
        printf("%s %u %u %u %lu %lu\n", t[i].name, t[i].addr, t[i].width, t[i].access,
               (unsigned long)t[i].reset, (unsigned long)t[i].max);
    printf("%u %u %u %u %u %u %u\n", SIGFUSE_MAX_FRAME, SIGFUSE_FRAME_RESULTS, SIGFUSE_ERROR_BAD_VALUE,
           SIGFUSE_SIGNAL_EDGE_BPS_OFFSET, SIGFUSE_RESULT_KIND_OFFSET, SIGFUSE_CRC_CHECK,
           SIGFUSE_REG_MIN_CONFIDENCE);
    return 0;
}
''')
    exe = tmp_path / "regs"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror",
                    f"-I{FIRMWARE / 'include'}", str(program), "-o", str(exe)], check=True)
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    access = {Access.RO: 0, Access.RW: 1, Access.WO: 2}
    for line, r in zip(lines, REGISTERS):
        reset = r.reset if r.group != "identity" or r.name in ("magic", "version", "max_frame") else 0
        assert line.split() == [r.name, str(r.addr), str(r.width), str(access[r.access]), str(reset),
                                str(r.max_value)]
    assert lines[-1].split() == [str(v) for v in (p.MAX_FRAME, p.FrameType.RESULTS, p.ErrorCode.BAD_VALUE,
                                                  92, 153, p.CRC_CHECK, BY_NAME["min_confidence"].addr)]


def _cli(argv):
    parser = argparse.ArgumentParser(prog="sigfuse")
    regexport.add_regs_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_export_and_check(tmp_path, capsys):
    out = tmp_path / "fw"
    assert _cli(["regs", "export", "--check", "--out", str(out)]) == 1
    assert "regs.json is out of date" in capsys.readouterr().err
    assert _cli(["regs", "export", "--out", str(out)]) == 0
    assert _cli(["regs", "export", "--check", "--out", str(out)]) == 0
    for rel in regexport.outputs():
        assert (out / rel).read_bytes() == (FIRMWARE / rel).read_bytes()
    (out / "regs.csv").write_text("tampered\n")
    assert _cli(["regs", "export", "--check", "--out", str(out)]) == 1
    docs = tmp_path / "link.md"
    docs.write_text(f"# x\n{regexport.DOCS_BEGIN}\nold\n{regexport.DOCS_END}\ntail\n")
    assert _cli(["regs", "export", "--out", str(out), "--docs", str(docs)]) == 0
    assert "| 0x002a | `min_confidence` |" in docs.read_text() and docs.read_text().endswith("tail\n")
