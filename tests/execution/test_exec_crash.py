"""Kill the coordinator with SIGKILL mid-run, restart it, and check that nothing was lost or
duplicated: the journal and the venues agree order by order and fill by fill, and positions
equal the sum of the journaled fills."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sigfuse.execution.marketdata import Quote
from sigfuse.execution.venue import FillModel, PaperVenue, VenueStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def query(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def runner(tmp_path: Path, seed: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sigfuse.execution.runner", "--config", str(tmp_path / "config.yaml"),
            "--journal", str(tmp_path / "journal.sqlite"), "--venue-store", str(tmp_path / "venues.sqlite"),
            "--seed", str(seed), *extra]


async def venue_trades_on(store_path: Path) -> int:
    """The exchange does not stop when its client dies: fill every resting order of the dead
    process at its limit price.  Returns how many orders it filled."""
    store = VenueStore(store_path)
    filled = 0
    try:
        for name in ("alpha", "beta"):
            venue = PaperVenue(name, store=store, model=FillModel(latency_median_us=0, reject_probability=0,
                                                                  timeout_probability=0, participation=1.0))
            for order in await venue.open_orders():
                size = order.qty * 10
                if order.side == 0:
                    ask = order.limit_price * 0.9999
                    quote = Quote(0, name, order.pair, ask * 0.999, ask, size, size)
                else:
                    bid = order.limit_price * 1.0001
                    quote = Quote(0, name, order.pair, bid, bid * 1.001, size, size)
                venue.on_quote(quote)
                filled += (await venue.order_status(order.client_order_id)).state.value == "filled"
    finally:
        store.close()
    return filled


def test_sigkill_mid_run_then_restart(tmp_path: Path, seed: int) -> None:
    (tmp_path / "config.yaml").write_text(
        "execution:\n  venue_orders_per_second: 500\n  order_expiry_ms: 3000\n"
        "risk:\n  max_position_per_pair: 1000000\n  max_gross_exposure: 10000000\n"
        "  daily_loss_limit: 1000000\n  max_orders_per_second: 1000\n")
    journal, store = tmp_path / "journal.sqlite", tmp_path / "venues.sqlite"
    kill_after = random.Random(seed).randint(40, 90)
    print(f"killing after {kill_after} orders")

    # Run 1: slow acks, thin participation and lost acks keep many orders in flight.
    with open(tmp_path / "run1.out", "wb") as out, open(tmp_path / "run1.err", "wb") as err:
        first = subprocess.Popen(runner(tmp_path, seed, "--duration", "120", "--latency-us", "3000",
                                        "--participation", "0.02", "--timeout-probability", "0.05"),
                                 stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
            killed = False
            while not killed and time.monotonic() < deadline and first.poll() is None:
                time.sleep(0.02)
                try:
                    if not journal.exists() or query(journal, "SELECT COUNT(*) FROM orders")[0][0] < kill_after:
                        continue
                except sqlite3.OperationalError:
                    continue  # schema not there yet
                # Freeze it, look, and kill it only with acknowledged orders in flight, so what
                # we saw is exactly what it leaves behind.
                os.kill(first.pid, signal.SIGSTOP)
                in_flight = query(journal, "SELECT COUNT(*) FROM orders WHERE state IN "
                                           "('submitted', 'partially_filled')")[0][0]
                if in_flight:
                    os.kill(first.pid, signal.SIGKILL)
                    killed = True
                else:
                    os.kill(first.pid, signal.SIGCONT)
            assert killed, (tmp_path / "run1.err").read_text()[-2000:]
        finally:
            if first.poll() is None:
                first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL

    open_at_kill = query(journal, "SELECT COUNT(*) FROM orders WHERE state IN "
                                  "('new', 'submitted', 'partially_filled')")[0][0]
    orders_at_kill = query(journal, "SELECT COUNT(*) FROM orders")[0][0]
    print(f"at kill: {orders_at_kill} orders journaled, {open_at_kill} open")
    assert open_at_kill > 0, "the kill did not land mid-run"
    filled_while_down = asyncio.run(venue_trades_on(store))
    print(f"the venue filled {filled_while_down} orders while the coordinator was down")

    # Run 2: reconcile, trade a little, shut down cleanly.
    second = subprocess.run(runner(tmp_path, seed + 1, "--duration", "1.5"), capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout)
    reconcile = result["reconcile"]
    print("reconcile:", {k: v for k, v in reconcile.items() if k != "positions"})
    assert reconcile["ok"] and reconcile["checked_orders"] == open_at_kill
    assert reconcile["adopted_fills"] >= filled_while_down
    # Every acknowledged order open at the kill moved on at the venue: the restart caught up.
    assert reconcile["adopted_fills"] + reconcile["state_updates"] >= 1

    journal_orders = {coid: (venue, state, filled) for coid, venue, state, filled in
                      query(journal, "SELECT client_order_id, venue, state, filled_qty FROM orders")}
    venue_orders = {coid: (venue, state, filled) for coid, venue, state, filled in
                    query(store, "SELECT client_order_id, venue, state, filled_qty FROM venue_orders")}
    assert len(journal_orders) > orders_at_kill

    # No order lost: everything a venue holds is journaled, with the same state and fills.
    assert set(venue_orders) <= set(journal_orders)
    for coid, (venue, state, filled) in venue_orders.items():
        j_venue, j_state, j_filled = journal_orders[coid]
        assert (j_venue, j_state) == (venue, state), coid
        assert j_filled == pytest.approx(filled, rel=1e-9, abs=1e-12), coid
    # Journaled orders the venues never got were closed, not left dangling.
    for coid in set(journal_orders) - set(venue_orders):
        assert journal_orders[coid][1] in ("cancelled", "rejected"), coid
    assert not [c for c, (_, s, _) in journal_orders.items() if s in ("new", "submitted", "partially_filled")]

    # No order duplicated: one order per decision, one venue order per client order id.
    assert not query(journal, "SELECT session, decision_ts_us, decision_seq FROM orders "
                              "GROUP BY 1, 2, 3 HAVING COUNT(*) > 1")
    assert not query(store, "SELECT client_order_id FROM venue_orders GROUP BY 1 HAVING COUNT(*) > 1")

    # Fill for fill the same, and positions = the sum of journaled fills = the venues' positions.
    fill_sql = "SELECT venue, fill_id, client_order_id, pair, side, qty, price FROM {} ORDER BY venue, fill_id"
    journal_fills = query(journal, fill_sql.format("fills"))
    venue_fills = query(store, fill_sql.format("venue_fills"))
    assert journal_fills == venue_fills
    summed: Counter[str] = Counter()
    for _, _, _, pair, side, qty, _ in journal_fills:
        summed[pair] += -qty if side else qty
    venue_positions = dict(query(store, "SELECT pair, SUM(CASE side WHEN 0 THEN qty ELSE -qty END) "
                                        "FROM venue_fills GROUP BY pair"))
    reported = {pair: p["qty"] for pair, p in result["positions"].items()}
    assert set(summed) == set(venue_positions) == set(reported)
    for pair, qty in summed.items():
        assert venue_positions[pair] == pytest.approx(qty, rel=1e-9, abs=1e-9)
        assert reported[pair] == pytest.approx(qty, rel=1e-9, abs=1e-9)
