"""The golden vectors through ``sigfuse trace`` on the reference backend, and their documentation.

Every vector runs in process (through ``sigfuse.cli.main``, with the default batching and with
one event per batch, since results must not depend on batching); two also run as real
subprocesses, reading stdin and writing stdout.  ``docs/fusion.md`` must show every vector file verbatim, and its record-layout
tables must match the contract.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sigfuse.contract import DECISION_LAYOUT, SIGNAL_LAYOUT, Field
from vectors import VECTOR_DIR, VECTORS, Vector, sigfuse_command, vector_file_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "fusion.md"
# "`tests/vectors/NAME.EXT`:" on a line of its own, then a fenced block holding the file.
_SHOWN_FILE = re.compile(r"^`tests/vectors/([\w.]+)`:\n\n```[\w]*\n(.*?)^```$", re.M | re.S)
_MENTIONED_FILE = re.compile(r"tests/vectors/([a-z0-9_]+)\.(?:in\.jsonl|out\.jsonl|yaml|err)\b")


def test_vectors_found():
    assert len(VECTORS) >= 15
    for vector in VECTORS:
        assert vector.expected_path.exists(), f"{vector.name}: no {vector.expected_path.name}"


def test_no_stray_files_in_vector_folder():
    owned = {p.name for v in VECTORS for p in v.files}
    assert vector_file_names() - owned == set(), "files that belong to no vector (missing .in.jsonl?)"


@pytest.mark.parametrize("batch", [None, 1], ids=["batched", "batch1"])
@pytest.mark.parametrize("vector", VECTORS, ids=str)
def test_vector_in_process(vector: Vector, batch: int | None, tmp_path: Path):
    extra = () if batch is None else ("--batch", str(batch))
    vector.check(vector.run_in_process(tmp_path, extra=extra))


# One vector with a configuration and drop lines through the console script, one that ends on
# a bad line (exit status, stderr) through ``python -m``: the in-process runs cover the rest, and
# every interpreter start costs a quarter of a second.
_SUBPROCESS_RUNS = [("queue_overflow", "script"), ("bad_line", "module")]


@pytest.mark.parametrize("name, launcher", _SUBPROCESS_RUNS, ids=[n for n, _ in _SUBPROCESS_RUNS])
def test_vector_as_subprocess(name: str, launcher: str):
    vector = next(v for v in VECTORS if v.name == name)
    command = sigfuse_command() if launcher == "script" else [sys.executable, "-m", "sigfuse.cli"]
    vector.check(vector.finish_subprocess(vector.start_subprocess(command=command)))


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_doc_and_vectors_reference_each_other():
    mentioned = set(_MENTIONED_FILE.findall(_doc()))
    names = {v.name for v in VECTORS}
    assert names - mentioned == set(), "vectors not derived in docs/fusion.md"
    assert mentioned - names == set(), "docs/fusion.md names vectors that do not exist"


def test_doc_shows_vector_files_verbatim():
    shown: dict[str, str] = {}
    for file_name, text in _SHOWN_FILE.findall(_doc()):
        assert file_name not in shown, f"{file_name} shown twice"
        shown[file_name] = text
    for vector in VECTORS:
        for path in vector.files:
            assert path.name in shown, f"docs/fusion.md does not show {path.name}"
            assert shown[path.name] == path.read_text(encoding="utf-8"), \
                f"docs/fusion.md shows an outdated {path.name}"
    assert set(shown) <= {p.name for v in VECTORS for p in v.files}


def _doc_layout(title: str) -> list[Field]:
    section = _doc().split(f"(`{title}`,", 1)[1]
    rows = re.findall(r"^\| (\d+)–(\d+) \| `(\w+)` \| (\d+) \| (signed|unsigned) \|", section, re.M)
    fields, offset = [], 0
    for low, high, name, width, kind in rows:
        if int(low) != offset:
            break
        assert int(high) - int(low) + 1 == int(width), f"{title}.{name}: bit range vs width"
        fields.append(Field(name, int(width), kind == "signed"))
        offset += int(width)
    return fields


@pytest.mark.parametrize("title, layout", [("SIGNAL_LAYOUT", SIGNAL_LAYOUT),
                                           ("DECISION_LAYOUT", DECISION_LAYOUT)])
def test_doc_layout_tables_match_contract(title: str, layout: tuple[Field, ...]):
    assert _doc_layout(title) == [Field(f.name, f.width, f.signed) for f in layout]
    assert f"(`{title}`, {sum(f.width for f in layout)} bits)" in _doc()
