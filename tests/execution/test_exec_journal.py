"""The SQLite journal and ``sigfuse journal``."""

from __future__ import annotations

import argparse
import csv
import json

import pytest

from sigfuse.contract import Decision
from sigfuse.execution.cli import add_journal_command
from sigfuse.execution.journal import Journal
from sigfuse.execution.orders import Fill, Order, OrderState


def order(n: int, side: int = 0, qty: float = 2.0, sources: tuple[int, ...] = (0, 1)) -> Order:
    return Order(client_order_id=f"sf0001-{n:07d}", pair="BTC/USDT", side=side, qty=qty, limit_price=101.0,
                 venue="alpha", created_us=1_000 + n, decision_ts_us=900 + n, decision_seq=n,
                 confidence=30_000, edge_bps=12, arrival_price=100.0, expire_at_us=10**9, sources=sources)


def fill(o: Order, n: int, qty: float, price: float) -> Fill:
    return Fill("alpha", f"alpha-{n}", o.client_order_id, o.pair, o.side, qty, price, 0.01, 2_000 + n)


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        j.start_session(1, seed=5)
        yield j


def populate(journal: Journal) -> None:
    journal.record_decision(1_000, Decision(900, 0, 0, 30_000, 12, 100, 1), "BTC/USDT", (0, 1))
    buy = order(1)
    journal.record_order(buy)
    journal.record_transition(buy, buy.transition(OrderState.SUBMITTED, 1_500))
    f1 = fill(buy, 1, 2.0, 100.0)
    assert journal.record_fill(buy, f1, buy.apply_fill(f1))
    sell = order(2, side=1, qty=1.0, sources=(2,))
    journal.record_order(sell)
    f2 = fill(sell, 2, 1.0, 110.0)
    assert journal.record_fill(sell, f2, sell.apply_fill(f2))
    journal.record(3_000, "rejection", pair="BTC/USDT", reason="max_order_notional", detail="x")


def test_wal_mode_and_schema(journal: Journal) -> None:
    assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal.session == 1


def test_orders_fills_positions(journal: Journal) -> None:
    populate(journal)
    orders = {o.client_order_id: o for o in journal.orders()}
    assert orders["sf0001-0000001"].state is OrderState.FILLED
    assert orders["sf0001-0000001"].sources == (0, 1)
    assert orders["sf0001-0000002"].filled_qty == 1.0
    assert journal.open_orders() == []
    assert journal.positions() == {"BTC/USDT": pytest.approx(1.0)}
    kinds = [e["kind"] for e in journal.events()]
    assert kinds == ["session_start", "decision", "order", "transition", "fill", "transition", "order",
                     "fill", "transition", "transition", "rejection"]


def test_a_fill_is_journaled_once(journal: Journal) -> None:
    populate(journal)
    again = fill(order(1), 1, 2.0, 100.0)
    assert journal.record_fill(None, again) is False
    assert len(list(journal.fills())) == 2


def test_decision_is_unique_per_session(journal: Journal) -> None:
    journal.record_order(order(1))
    duplicate = order(1)
    duplicate.client_order_id = "sf0001-9999999"
    with pytest.raises(Exception, match="UNIQUE"):
        journal.record_order(duplicate)
    assert len(journal.orders()) == 1


def test_summary_positions_and_attribution(journal: Journal) -> None:
    populate(journal)
    summary = journal.summary()
    assert summary["orders"] == {"filled": 2}
    assert summary["fills"] == 2 and summary["fees"] == pytest.approx(0.02)
    assert summary["rejections"] == {"max_order_notional": 1}
    btc = summary["positions"]["BTC/USDT"]
    assert btc["qty"] == pytest.approx(1.0) and btc["realized"] == pytest.approx(10.0)
    # Marked at the last fill (110): buy of 2 @100 -> +20 split over two sources; sell 1 @110 -> 0.
    assert summary["source_pnl"]["arbitrage"] == pytest.approx(10.0 - 0.005)
    assert summary["source_pnl"]["mean_reversion"] == pytest.approx(-0.01)
    assert sum(summary["source_pnl"].values()) == pytest.approx(btc["net"])


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sigfuse")
    add_journal_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_summary_and_export(journal: Journal, tmp_path, capsys) -> None:
    populate(journal)
    path = journal.path
    for action in ("summary", "summarize"):
        args = parse(["journal", action, path])
        assert args.func(args) == 0
        text = capsys.readouterr().out
        assert "BTC/USDT" in text and "max_order_notional 1" in text and "arbitrage" in text
    args = parse(["journal", "summary", path, "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["fills"] == 2

    out = tmp_path / "orders.csv"
    args = parse(["journal", "export", path, "--table", "orders", "--out", str(out)])
    assert args.func(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["state"] for r in rows] == ["filled", "filled"]

    args = parse(["journal", "export", path, "--format", "json", "--table", "all"])
    assert args.func(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"events", "orders", "fills", "sessions"}
    assert document["events"][1]["data"]["sources"] == [0, 1]

    args = parse(["journal", "export", path, "--format", "csv", "--table", "all"])
    assert args.func(args) == 2


def test_cli_missing_journal(tmp_path) -> None:
    args = parse(["journal", "summary", str(tmp_path / "none.sqlite")])
    with pytest.raises(SystemExit) as exit_info:
        args.func(args)
    assert exit_info.value.code == 2
