"""Orchestration: signal sources, the fusion loop with failover, health monitor, performance
optimizer, metrics and the demo.  See ``docs/orchestrator.md``.

Modules: :mod:`.settings` (the ``orchestrator`` and ``sources`` sections), :mod:`.feeds`,
:mod:`.sources`, :mod:`.backend` (failover, the stand-in primary), :mod:`.loop`, :mod:`.health`,
:mod:`.optimizer`, :mod:`.metrics`, :mod:`.demo`, :mod:`.report`, :mod:`.cli`, :mod:`.bench`.
Nothing is imported here: :mod:`sigfuse.config` imports :mod:`.settings`, and must stay cheap.
"""
