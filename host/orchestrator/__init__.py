"""Orchestration: signal sources, the fusion loop, health monitor, performance optimizer, metrics and the demo."""
