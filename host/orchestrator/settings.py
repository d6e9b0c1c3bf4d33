"""Configuration of the orchestrator loop, the failover wrapper and the signal sources.

Two sections, ``orchestrator`` and ``sources``, validated like every other section (pydantic,
unknown keys are errors, defaults are the specified numbers).  They are defined here, beside the
code that reads them, and imported by :mod:`sigfuse.config`; this module must therefore not
import :mod:`sigfuse.config` itself.

Every source's parameters live under ``sources.<name>``; a plug-in source (entry point group
``sigfuse.sources``) declares its own parameter model and reads ``sources.plugins.<name>``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["OrchestratorConfig", "FailoverConfig", "SourcesConfig", "SourceSettings",
           "ArbitrageParams", "MomentumParams", "MeanReversionParams", "VolatilityParams",
           "SentimentParams", "NewsParams", "WhaleParams", "orchestrator_section", "sources_section"]


class _Section(BaseModel):
    # The same rules as sigfuse.config's sections (kept here to avoid an import cycle).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class FailoverConfig(_Section):
    """Failover from the board (or virtual board) to the software reference engine."""
    probe_interval_s: float = Field(1.0, gt=0, description="how often a restarted board is probed")
    failback_after_probes: int = Field(3, ge=1, description="consecutive good probes before failing back")
    warmup_window_us: int | None = Field(
        None, ge=0, description="signals replayed into a restarted board before it takes over "
                                "(default: vote_ttl_us + cooldown_us)")
    replay_log_events: int = Field(65_536, ge=1024, description="recent signals kept for the warm-up")
    response_timeout_s: float = Field(0.5, gt=0, description="a board that does not answer a batch "
                                                             "within this is dead")


class OrchestratorConfig(_Section):
    """The autonomous loop."""
    frequency_hz: float = Field(100.0, gt=0, le=2_000, description="loop cycles per second")
    source_poll_hz: float = Field(5.0, gt=0, description="evaluations per source per second (the demo's --frequency)")
    max_pops_per_cycle: int = Field(64, ge=1, description="decisions taken from the backend's queue per cycle")
    precise_wake_us: int = Field(
        1_500, ge=0, le=20_000,
        description="the last stretch before a cycle is slept with time.sleep (µs precision) instead of "
                    "the event loop's millisecond timer; 0 turns it off")
    shutdown_timeout_s: float = Field(5.0, gt=0, description="time open orders get to close on shutdown")
    realtime: bool = Field(False, description="run under SCHED_FIFO when permitted (needs CAP_SYS_NICE)")
    failover: FailoverConfig = Field(default_factory=FailoverConfig)


# --- sources ----------------------------------------------------------------------------------

class SourceSettings(_Section):
    """What every source has: on/off and an optional polling rate of its own."""
    enabled: bool = True
    poll_hz: float | None = Field(None, gt=0, description="overrides orchestrator.source_poll_hz")


class ArbitrageParams(SourceSettings):
    """Cross-venue spread net of taker fees."""
    fee_bps: dict[str, float] = Field(default_factory=lambda: {"alpha": 7.5, "beta": 7.5},
                                      description="taker fee per venue; venues not listed use default_fee_bps")
    default_fee_bps: float = Field(7.5, ge=0)
    min_net_bps: float = Field(1.0, ge=0, description="net spread below this is no opportunity")
    fair_tau_s: float = Field(5.0, gt=0, description="time constant of the fair-value EMA that says "
                                                     "which venue is dislocated")
    max_quote_age_ms: float = Field(1_000.0, gt=0, description="older quotes are not traded against")
    confidence_base: float = Field(0.70, ge=0, le=1)
    confidence_per_bps: float = Field(0.02, ge=0, description="confidence added per bp of net spread")


class MomentumParams(SourceSettings):
    """EMA crossover with a breakout check."""
    fast_tau_s: float = Field(1.0, gt=0, description="time constant of the fast EMA")
    slow_tau_s: float = Field(6.0, gt=0)
    crossover_bps: float = Field(2.0, ge=0, description="fast above slow by this much is an up-trend")
    breakout_window: int = Field(40, ge=2, description="evaluations in the Donchian channel")
    confidence_base: float = Field(0.60, ge=0, le=1)
    confidence_per_bps: float = Field(0.02, ge=0)
    breakout_bonus: float = Field(0.10, ge=0, le=1)
    edge_fraction: float = Field(0.5, gt=0, description="edge = this x the EMA gap in bps")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "MomentumParams":
        if self.fast_tau_s >= self.slow_tau_s:
            raise ValueError("fast_tau_s must be below slow_tau_s")
        return self


class MeanReversionParams(SourceSettings):
    """Z-score of the mid against its rolling mean."""
    window: int = Field(30, ge=5, description="evaluations in the rolling mean and deviation")
    z_entry: float = Field(2.0, gt=0)
    min_deviation_bps: float = Field(1.0, ge=0, description="ignore z-scores of a flat market")
    confidence_base: float = Field(0.55, ge=0, le=1)
    confidence_per_z: float = Field(0.10, ge=0)
    edge_fraction: float = Field(0.5, gt=0, description="edge = this x the distance to the mean in bps")


class VolatilityParams(SourceSettings):
    """Realized-volatility regime change: short-window against long-window volatility."""
    short_window: int = Field(8, ge=3)
    long_window: int = Field(50, ge=10)
    expand_ratio: float = Field(1.8, gt=1, description="short/long above this is a volatility expansion")
    confidence_base: float = Field(0.55, ge=0, le=1)
    confidence_per_ratio: float = Field(0.15, ge=0)
    edge_fraction: float = Field(0.5, gt=0, description="edge = this x the short-window move in bps")

    @model_validator(mode="after")
    def _short_below_long(self) -> "VolatilityParams":
        if self.short_window >= self.long_window:
            raise ValueError("short_window must be below long_window")
        return self


class SentimentParams(SourceSettings):
    """A synthetic social-sentiment feed (clearly labelled so), smoothed and thresholded."""
    smoothing_tau_s: float = Field(2.0, gt=0)
    threshold: float = Field(0.35, gt=0, le=1, description="|smoothed score| that makes a vote")
    edge_bps_at_full: float = Field(12.0, gt=0, description="edge of a vote at |score| = 1")
    confidence_base: float = Field(0.55, ge=0, le=1)
    confidence_per_score: float = Field(0.40, ge=0)
    # The synthetic feed itself.
    feed_kappa: float = Field(0.3, gt=0, description="mean reversion of the raw score, per second")
    feed_noise: float = Field(0.35, gt=0, description="noise of the raw score per sqrt(second)")
    feed_follow_bps: float = Field(20.0, gt=0, description="a move of this many bps pulls the score by 1")


class NewsParams(SourceSettings):
    """A synthetic news feed (clearly labelled so): events arrive, hit, and decay."""
    half_life_s: float = Field(3.0, gt=0, description="half-life of an event's impact")
    threshold: float = Field(0.25, gt=0, description="|summed live impact| that makes a vote")
    edge_bps_per_impact: float = Field(20.0, gt=0)
    confidence_base: float = Field(0.60, ge=0, le=1)
    confidence_per_impact: float = Field(0.30, ge=0)
    # The synthetic feed itself.
    events_per_minute: float = Field(2.0, ge=0, description="arrival rate per pair")
    magnitude_mean: float = Field(0.6, gt=0, description="mean |impact| of an event")


class WhaleParams(SourceSettings):
    """Large-trade detection on a trade tape (the demo's tape is synthetic)."""
    window: int = Field(200, ge=10, description="recent trades per pair the typical size comes from")
    size_multiple: float = Field(8.0, gt=1, description="a trade this many times the median notional is a whale")
    min_notional: float = Field(5_000.0, ge=0)
    min_history: int = Field(10, ge=1, description="trades seen before detection starts")
    edge_bps_per_multiple: float = Field(0.5, gt=0)
    max_edge_bps: float = Field(40.0, gt=0)
    confidence_base: float = Field(0.60, ge=0, le=1)
    confidence_per_multiple: float = Field(0.01, ge=0)
    # The synthetic tape itself.
    trades_per_second: float = Field(4.0, ge=0, description="prints per pair per second")
    whale_probability: float = Field(0.01, ge=0, le=1)


class SourcesConfig(_Section):
    """The seven built-in signal sources, and the settings of plug-in sources by name."""
    arbitrage: ArbitrageParams = Field(default_factory=ArbitrageParams)
    momentum: MomentumParams = Field(default_factory=MomentumParams)
    mean_reversion: MeanReversionParams = Field(default_factory=MeanReversionParams)
    volatility: VolatilityParams = Field(default_factory=VolatilityParams)
    sentiment: SentimentParams = Field(default_factory=SentimentParams)
    news: NewsParams = Field(default_factory=NewsParams)
    whale: WhaleParams = Field(default_factory=WhaleParams)
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings of entry-point sources, validated by each source")

    def for_source(self, name: str) -> Any:
        """The settings of a source by name (a plug-in's raw mapping when it is not built in)."""
        if name in type(self).model_fields and name != "plugins":
            return getattr(self, name)
        return self.plugins.get(name, {})


def orchestrator_section(config: Any) -> OrchestratorConfig:
    """``config.orchestrator`` (the defaults when the configuration has no such section)."""
    section = getattr(config, "orchestrator", None)
    return section if isinstance(section, OrchestratorConfig) else OrchestratorConfig()


def sources_section(config: Any) -> SourcesConfig:
    """``config.sources`` (the defaults when the configuration has no such section)."""
    section = getattr(config, "sources", None)
    return section if isinstance(section, SourcesConfig) else SourcesConfig()
