"""The audit journal: every decision, order, transition, fill, rejection and state change, in
SQLite (WAL mode).

Three kinds of table:

``events``
    the append-only audit trail, one row per thing that happened, with a JSON payload;
``orders``, ``fills``
    the current state of each order and every fill, written in the same transaction as the
    event that changed them, so a restart reloads open orders and positions without replaying
    the trail.  ``fills`` is keyed by (venue, fill id): a fill seen twice is stored once;
``sessions``
    one row per coordinator start; the session number prefixes client order ids, so ids stay
    unique across restarts;
``meta``
    the latest value of things a restart needs at once (the risk state, the day's P&L anchor).

Secondary indexes are left out on purpose: every page an index adds is written again at each
commit, and the readers (summary, export, restart) scan.

An order is written (``new``) *before* it is sent: whatever reached a venue is in the journal,
which is what lets a restart find every order the venue may hold.

``synchronous=NORMAL`` in WAL mode makes a committed write survive the process being killed
(the OS has it); ``FULL`` also survives power loss, at an fsync per commit.  Writes are grouped
into one transaction per millisecond (see :class:`Journal`): a commit costs tens of
microseconds on a disk, an insert inside a transaction a few, so grouping is what lets the
journal keep up with the coordinator.  They run on the event loop's thread: a hop to a writer
thread would cost more than the insert.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Iterable, Iterator, Literal

from ..contract import Decision
from .orders import Fill, Order, OrderState, Transition

__all__ = ["Journal", "JOURNAL_TABLES", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 1
JOURNAL_TABLES: Final = ("events", "orders", "fills", "sessions")
# orders and fills are WITHOUT ROWID (one B-tree each, one page less per commit).
_TABLE_ORDER: Final = {"events": "id", "orders": "created_us, client_order_id",
                       "fills": "ts_us, venue, fill_id", "sessions": "session"}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY AUTOINCREMENT, started_us INTEGER NOT NULL, pid INTEGER,
    info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, session INTEGER, kind TEXT NOT NULL,
    client_order_id TEXT, pair TEXT, data TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, session INTEGER NOT NULL,
    decision_ts_us INTEGER NOT NULL, decision_seq INTEGER NOT NULL,
    pair TEXT NOT NULL, side INTEGER NOT NULL, qty REAL NOT NULL, limit_price REAL NOT NULL,
    venue TEXT NOT NULL, state TEXT NOT NULL, filled_qty REAL NOT NULL DEFAULT 0,
    filled_notional REAL NOT NULL DEFAULT 0, fees REAL NOT NULL DEFAULT 0,
    arrival_price REAL NOT NULL, expire_at_us INTEGER NOT NULL, confidence INTEGER NOT NULL,
    edge_bps INTEGER NOT NULL, sources TEXT NOT NULL, created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    UNIQUE (session, decision_ts_us, decision_seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fills (
    venue TEXT NOT NULL, fill_id TEXT NOT NULL, client_order_id TEXT NOT NULL, pair TEXT NOT NULL,
    side INTEGER NOT NULL, qty REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL,
    ts_us INTEGER NOT NULL, PRIMARY KEY (venue, fill_id)) WITHOUT ROWID;
"""

_OPEN: Final = tuple(s.value for s in (OrderState.NEW, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED))
_ORDER_COLUMNS: Final = ("client_order_id", "pair", "side", "qty", "limit_price", "venue", "created_us",
                         "decision_ts_us", "decision_seq", "confidence", "edge_bps", "arrival_price",
                         "expire_at_us", "sources", "state", "filled_qty", "filled_notional", "fees")


_INSERT_EVENT: Final = ("INSERT INTO events (ts_us, session, kind, client_order_id, pair, data) "
                        "VALUES (?, ?, ?, ?, ?, ?)")


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


class _Checkpointer:
    """Copies the WAL back into the database file every ``interval_s``, on its own thread and
    connection (a PASSIVE checkpoint never blocks the writer; sqlite3 releases the GIL)."""

    def __init__(self, path: str, interval_s: float) -> None:
        self._stop = threading.Event()
        self._path = path
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval_s):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the next checkpoint (or the next open) catches up
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Journal:
    """An append-only audit journal in one SQLite file (``:memory:`` for tests).

    Group commit: inside a running event loop, writes join one transaction that commits
    ``group_window_s`` after it opened (or at :meth:`flush`); outside a loop each write commits
    at once.  The coordinator flushes before an order leaves for a venue, so no order is ever
    sent that the journal could lose.  A crash can lose the events of the last window; the fills
    and order states among them are recovered from the venues by reconciliation.
    """

    def __init__(self, path: str | Path, *, synchronous: Literal["normal", "full"] = "normal",
                 group_commit: bool = True, group_window_s: float = 0.001,
                 checkpoint_interval_s: float = 0.5) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.group_commit = group_commit
        self.group_window_s = group_window_s
        self._checkpointer: _Checkpointer | None = None
        if self.path != ":memory:" and checkpoint_interval_s > 0:
            # A checkpoint fsyncs; left to SQLite it runs inside whichever commit crosses 1000
            # WAL pages, which puts milliseconds on the order path.  A thread does it instead.
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.path, checkpoint_interval_s)
        self.session: int | None = None
        #: Rows appended to ``events`` (the audit trail) by this process.
        self.writes = 0
        #: Transactions committed by this process.
        self.commits = 0
        self._in_tx = False

    def close(self) -> None:
        self.flush()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions --------------------------------------------------------------------------

    def flush(self) -> None:
        """Commit what has been written (durable against a process crash once this returns)."""
        if self._in_tx:
            self._in_tx = False
            self.db.execute("COMMIT")
            self.commits += 1

    def _open(self) -> bool:
        """Join or open the group transaction; True when it commits later (not by the caller)."""
        if self._in_tx:
            return True
        self.db.execute("BEGIN")
        self._in_tx = True
        if self.group_commit:
            try:
                asyncio.get_running_loop().call_later(self.group_window_s, self.flush)
                return True
            except RuntimeError:
                pass
        return False

    def _single(self, sql: str, args: tuple[Any, ...]) -> None:
        """One statement, committed with its group."""
        deferred = self._open()
        try:
            self.db.execute(sql, args)
            self.writes += 1
        finally:
            if not deferred:
                self.flush()

    def _rollback(self) -> None:
        if self._in_tx:
            self._in_tx = False
            self.db.execute("ROLLBACK")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One record of several statements, committed with its group.

        No savepoint per record: each record can only fail at its first statement (a
        constraint), before it wrote anything.  Any other failure (disk full, I/O error) rolls
        the whole group back and re-raises: the process can no longer vouch for its journal, and
        a restart reconciles it from the venues.
        """
        deferred = self._open()
        try:
            yield
        except sqlite3.IntegrityError:
            if not deferred:
                self.flush()
            raise
        except BaseException:
            self._rollback()
            raise
        if not deferred:
            self.flush()

    # --- writing -------------------------------------------------------------------------------

    def _event(self, ts_us: int, kind: str, coid: str | None, pair: str | None, data: dict[str, Any]) -> None:
        self.db.execute(_INSERT_EVENT, (ts_us, self.session, kind, coid, pair, _dumps(data)))
        self.writes += 1

    def start_session(self, ts_us: int, **info: Any) -> int:
        """Open a new session; its number prefixes this run's client order ids."""
        with self._writing():
            cursor = self.db.execute("INSERT INTO sessions (started_us, pid, info) VALUES (?, ?, ?)",
                                     (ts_us, os.getpid(), _dumps(info)))
            self.session = int(cursor.lastrowid)
            self._event(ts_us, "session_start", None, None, info)
        self.flush()
        return self.session

    def record(self, ts_us: int, kind: str, *, client_order_id: str | None = None,
               pair: str | None = None, **data: Any) -> None:
        """Append one audit event."""
        self._single(_INSERT_EVENT, (ts_us, self.session, kind, client_order_id, pair, _dumps(data)))

    def record_decision(self, ts_us: int, decision: Decision, pair: str, sources: tuple[int, ...] | None) -> None:
        self._single(_INSERT_EVENT, (ts_us, self.session, "decision", None, pair,
                                     _dumps({**decision._asdict(), "sources": sources})))

    def record_order(self, order: Order) -> None:
        """Write a new order (state ``new``) with its audit event; :meth:`flush` before sending it."""
        with self._writing():
            self.db.execute(
                "INSERT INTO orders (client_order_id, session, decision_ts_us, decision_seq, pair, side, "
                "qty, limit_price, venue, state, arrival_price, expire_at_us, confidence, edge_bps, "
                "sources, created_us, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order.client_order_id, self.session, order.decision_ts_us, order.decision_seq,
                 order.pair, order.side, order.qty, order.limit_price, order.venue, order.state.value,
                 order.arrival_price, order.expire_at_us, order.confidence, order.edge_bps,
                 _dumps({"sources": list(order.sources)}), order.created_us, order.created_us))
            self._event(order.created_us, "order", order.client_order_id, order.pair, {
                "venue": order.venue, "side": order.side, "qty": order.qty,
                "limit_price": order.limit_price, "arrival_price": order.arrival_price,
                "decision_ts_us": order.decision_ts_us, "decision_seq": order.decision_seq,
                "sources": list(order.sources)})

    def _update_order(self, order: Order, ts_us: int) -> None:
        self.db.execute("UPDATE orders SET state = ?, filled_qty = ?, filled_notional = ?, fees = ?, "
                        "updated_us = ? WHERE client_order_id = ?",
                        (order.state.value, order.filled_qty, order.filled_notional, order.fees, ts_us,
                         order.client_order_id))

    def _transition_events(self, order: Order, transitions: Iterable[Transition]) -> None:
        for t in transitions:
            self._event(t.ts_us, "transition", order.client_order_id, order.pair,
                        {"from": t.from_state.value, "to": t.to_state.value, "reason": t.reason})

    def record_transition(self, order: Order, transition: Transition) -> None:
        with self._writing():
            self._update_order(order, transition.ts_us)
            self._transition_events(order, (transition,))

    def has_fill(self, venue: str, fill_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM fills WHERE venue = ? AND fill_id = ?",
                               (venue, fill_id)).fetchone() is not None

    def record_fill(self, order: Order | None, fill: Fill, transitions: Iterable[Transition] = ()) -> bool:
        """Store a fill, the order's new state and the transitions, atomically.

        Returns False (and writes nothing) when the fill is already journaled.
        """
        with self._writing():
            cursor = self.db.execute("INSERT OR IGNORE INTO fills (venue, fill_id, client_order_id, pair, "
                                     "side, qty, price, fee, ts_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", fill)
            if cursor.rowcount == 0:
                return False
            self._event(fill.ts_us, "fill", fill.client_order_id, fill.pair, {
                "venue": fill.venue, "fill_id": fill.fill_id, "side": fill.side, "qty": fill.qty,
                "price": fill.price, "fee": fill.fee, "known_order": order is not None})
            if order is not None:
                self._update_order(order, fill.ts_us)
                self._transition_events(order, transitions)
        return True

    # --- reading -------------------------------------------------------------------------------

    @staticmethod
    def _order_from_row(row: tuple[Any, ...]) -> Order:
        values = dict(zip(_ORDER_COLUMNS, row))
        values["sources"] = tuple(json.loads(values["sources"])["sources"])
        values["state"] = OrderState(values["state"])
        return Order(**values)

    def orders(self, *, open_only: bool = False) -> list[Order]:
        """Orders as journaled (transition history not loaded), oldest first."""
        query = f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders"
        args: tuple[Any, ...] = ()
        if open_only:
            query += f" WHERE state IN ({', '.join('?' * len(_OPEN))})"
            args = _OPEN
        return [self._order_from_row(r) for r in self.db.execute(query + " ORDER BY created_us, client_order_id",
                                                                 args)]

    def open_orders(self) -> list[Order]:
        return self.orders(open_only=True)

    def order(self, client_order_id: str) -> Order | None:
        row = self.db.execute(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE client_order_id = ?",
                              (client_order_id,)).fetchone()
        return None if row is None else self._order_from_row(row)

    def fills(self) -> Iterator[Fill]:
        """Every journaled fill, in time order (fills adopted at a restart fall into place)."""
        for row in self.db.execute("SELECT venue, fill_id, client_order_id, pair, side, qty, price, fee, "
                                   "ts_us FROM fills ORDER BY ts_us, venue, fill_id"):
            yield Fill(*row)

    def positions(self) -> dict[str, float]:
        """Net position per pair: the signed sum of journaled fills."""
        return {pair: qty for pair, qty in self.db.execute(
            "SELECT pair, SUM(CASE side WHEN 0 THEN qty ELSE -qty END) FROM fills GROUP BY pair ORDER BY pair")}

    def set_meta(self, key: str, value: dict[str, Any]) -> None:
        """Keep the latest ``value`` under ``key`` (written with the current group)."""
        self._single("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _dumps(value)))

    def meta(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def last_event(self, kind: str) -> tuple[int, dict[str, Any]] | None:
        row = self.db.execute("SELECT ts_us, data FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1",
                              (kind,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def events(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        query = "SELECT id, ts_us, session, kind, client_order_id, pair, data FROM events"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        for id_, ts, session, kind_, coid, pair, data in self.db.execute(query + " ORDER BY id", args):
            yield {"id": id_, "ts_us": ts, "session": session, "kind": kind_, "client_order_id": coid,
                   "pair": pair, "data": json.loads(data)}

    # --- summary and export --------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts, order states, rejections, fees, positions and P&L from the journal alone."""
        from .ledger import PositionBook, SourceLedger
        db = self.db
        book = PositionBook()
        sources_of = {coid: tuple(json.loads(s)["sources"])
                      for coid, s in db.execute("SELECT client_order_id, sources FROM orders")}
        ledger = SourceLedger()
        for sources in sources_of.values():
            ledger.add_order(sources)
        last_price: dict[str, float] = {}
        for fill in self.fills():
            book.apply(fill)
            ledger.add_fill(sources_of.get(fill.client_order_id, ()), fill)
            last_price[fill.pair] = fill.price
        rejections: dict[str, int] = {}
        for (data,) in db.execute("SELECT data FROM events WHERE kind = 'rejection'"):
            reason = json.loads(data).get("reason", "?")
            rejections[reason] = rejections.get(reason, 0) + 1
        risk_changes = [{"ts_us": ts, **json.loads(d)} for ts, d in
                        db.execute("SELECT ts_us, data FROM events WHERE kind = 'risk_state' ORDER BY id")]
        return {
            "journal": self.path,
            "sessions": db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0],
            "events": dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind").fetchall()),
            "orders": dict(db.execute("SELECT state, COUNT(*) FROM orders GROUP BY state ORDER BY state").fetchall()),
            "fills": db.execute("SELECT COUNT(*) FROM fills").fetchone()[0],
            "fees": db.execute("SELECT COALESCE(SUM(fee), 0) FROM fills").fetchone()[0],
            "rejections": dict(sorted(rejections.items())),
            "risk_state_changes": risk_changes,
            # Marked at each pair's last fill price: the journal holds no market data.
            "positions": book.per_pair(last_price),
            "source_pnl": ledger.pnl(last_price),
            "source_orders": dict(sorted(ledger.orders.items())),
        }

    def _table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if table not in JOURNAL_TABLES:
            raise ValueError(f"unknown journal table {table!r}; expected one of {', '.join(JOURNAL_TABLES)}")
        cursor = self.db.execute(f"SELECT * FROM {table} ORDER BY {_TABLE_ORDER[table]}")
        return [d[0] for d in cursor.description], cursor.fetchall()

    def export_csv(self, table: str, out: io.TextIOBase) -> int:
        """Write one table as CSV (header first); returns the row count."""
        columns, rows = self._table_rows(table)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return len(rows)

    def export_json(self, tables: Iterable[str], out: io.TextIOBase) -> int:
        """Write tables as one JSON object ``{table: [row objects]}``; returns the row count."""
        document: dict[str, list[dict[str, Any]]] = {}
        count = 0
        for table in tables:
            columns, rows = self._table_rows(table)
            items = []
            for row in rows:
                item = dict(zip(columns, row))
                for key in ("data", "info", "sources"):
                    if isinstance(item.get(key), str):
                        item[key] = json.loads(item[key])
                items.append(item)
            document[table] = items
            count += len(items)
        json.dump(document, out, indent=1, default=str)
        out.write("\n")
        return count
