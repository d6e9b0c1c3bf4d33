"""Execution: coordinator, risk engine, venues, market data and the audit journal.

See ``docs/execution.md``.  Modules: :mod:`.sources` (decision sources, attribution),
:mod:`.coordinator`, :mod:`.orders` (state machine), :mod:`.risk`, :mod:`.venue` (interface and
paper venue), :mod:`.marketdata` (synthetic generator, CSV replay), :mod:`.ledger` (positions,
P&L, figures), :mod:`.journal` (SQLite WAL), :mod:`.recovery` (restart reconciliation),
:mod:`.runner` (paper session), :mod:`.cli`, :mod:`.bench`.
"""
