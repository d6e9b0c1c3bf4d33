"""Execution: coordinator, risk engine, venues, market data and the audit journal."""
