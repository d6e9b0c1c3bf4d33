"""Configuration: YAML validated by pydantic, one model per section.

The defaults reproduce the numbers sigfuse was specified with (fusion weights 0.35/0.25/0.20/
0.10/0.05/0.03/0.02, θ = 0.75, concurrency 50, CPU 70 %, memory 75 %, latency 100 ms, ...).
Unknown keys are errors everywhere.  Environment variables ``SIGFUSE_<SECTION>__<KEY>`` (more
``__`` for deeper keys) override the file; their values are read as YAML scalars, so
``SIGFUSE_FUSION__CONSENSUS_THRESHOLD=0.8`` is a number and ``SIGFUSE_FUSION__PAIRS='[BTC/USDT]'``
a list.

Every problem is reported as one :class:`ConfigProblem` line: the dotted key path, what is
wrong, and the offending value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)

from .orchestrator.settings import OrchestratorConfig, SourcesConfig
from .contract import (BOOST_MAX, BOOST_ONE, DEFAULT_BOOST, DEFAULT_WEIGHTS, DURATION_MAX,
                       PAIR_SLOTS_MAX, SOURCE_SLOTS, FusionParams, PairTable, Source)

__all__ = ["SigfuseConfig", "ConfigError", "ConfigProblem", "load_config", "ENV_PREFIX"]

ENV_PREFIX = "SIGFUSE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)



def _default_weights() -> dict[str, float]:
    return {s.wire_name: w for s, w in zip(Source, DEFAULT_WEIGHTS)}


class FusionConfig(_Section):
    """Weighted-consensus fusion (the runtime registers of the fusion pipeline)."""
    weights: dict[str, float] = Field(default_factory=_default_weights,
                                      description="weight per source, each in [0, 1]")
    consensus_threshold: float = Field(0.75, ge=0.0, le=1.0)
    quorum: float = Field(0.50, ge=0.0, le=1.0, description="minimum summed weight of agreeing sources")
    min_confidence: float = Field(0.60, ge=0.0, le=1.0)
    vote_ttl_us: int = Field(500_000, ge=0, le=DURATION_MAX)
    cooldown_us: int = Field(100_000, ge=0, le=DURATION_MAX)
    boost: list[float] = Field(default_factory=lambda: list(DEFAULT_BOOST),
                               description="confidence multiplier for n = 1..8 agreeing sources")
    pair_slots: int = Field(64, ge=1, le=PAIR_SLOTS_MAX, description="pair slots on the fusion engine")
    pairs: list[str] = Field(default_factory=list, description="pairs given slots up front, in order")

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        merged = _default_weights()
        for name, value in weights.items():
            try:
                Source.from_wire(name)
            except ValueError as error:
                raise ValueError(str(error)) from None
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"weight of {name} must be within [0, 1], not {value}")
            merged[name] = value
        return merged

    @field_validator("boost")
    @classmethod
    def _check_boost(cls, boost: list[float]) -> list[float]:
        if len(boost) != SOURCE_SLOTS:
            raise ValueError(f"needs {SOURCE_SLOTS} entries (n = 1..{SOURCE_SLOTS}), got {len(boost)}")
        top = BOOST_MAX / BOOST_ONE
        for i, b in enumerate(boost):
            if not 0.0 <= b <= top:
                raise ValueError(f"entry {i} (n = {i + 1}) must be within [0, {top:.5f}], not {b}")
        return boost

    @model_validator(mode="after")
    def _check_pairs(self) -> "FusionConfig":
        if len(set(self.pairs)) != len(self.pairs):
            raise ValueError("pairs: duplicate pair names")
        if len(self.pairs) > self.pair_slots:
            raise ValueError(f"pairs: {len(self.pairs)} pairs listed but only {self.pair_slots} pair slots")
        return self

    def params(self) -> FusionParams:
        """The fixed-point parameters these settings stand for."""
        return FusionParams.from_real(
            weights=[self.weights[s.wire_name] for s in Source],
            consensus_threshold=self.consensus_threshold, quorum=self.quorum,
            min_confidence=self.min_confidence, vote_ttl_us=self.vote_ttl_us,
            cooldown_us=self.cooldown_us, boost=self.boost)

    def pair_table(self) -> PairTable:
        return PairTable(self.pair_slots, self.pairs)


class QueueConfig(_Section):
    """Execution-request priority queue."""
    capacity: int = Field(256, ge=1, le=65536, description="entries; a build parameter on a board")


class ExecutionConfig(_Section):
    """Execution coordinator."""
    max_concurrent: int = Field(50, ge=1, le=10_000, description="orders in flight at most")
    order_ttl_ms: int = Field(2_000, ge=1, description="requests older than this are dropped")
    notional_per_tier: dict[str, float] = Field(
        default_factory=lambda: {"low": 1_000.0, "medium": 2_500.0, "high": 5_000.0},
        description="order notional (quote currency) by confidence tier")
    tier_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"medium": 0.75, "high": 0.90},
        description="confidence at which each tier starts")
    venue_orders_per_second: float = Field(20.0, gt=0)
    order_expiry_ms: int = Field(5_000, ge=1, description="a resting order expires at the venue after this")
    max_slippage_bps: float = Field(25.0, ge=0, description="limit price offset from the arrival quote")
    submit_timeout_ms: int = Field(500, ge=1, description="a venue ack slower than this is a timeout")
    submit_retries: int = Field(3, ge=0, description="resubmissions (same client order id) after a timeout")
    journal_path: Path = Field(Path("sigfuse-journal.sqlite"), description="SQLite audit journal (WAL)")
    journal_synchronous: Literal["normal", "full"] = Field(
        "normal", description="normal survives a process crash; full also survives power loss")


class RiskConfig(_Section):
    """Pre-trade risk limits."""
    max_order_notional: float = Field(25_000.0, gt=0)
    max_position_per_pair: float = Field(50_000.0, gt=0)
    max_gross_exposure: float = Field(250_000.0, gt=0)
    max_orders_per_second: float = Field(100.0, gt=0)
    daily_loss_limit: float = Field(5_000.0, gt=0)
    reduce_at_loss_fraction: float = Field(
        0.8, gt=0, le=1, description="daily loss (fraction of the limit) at which only reducing orders pass")


class HealthConfig(_Section):
    """Component health monitor."""
    interval_s: float = Field(1.0, gt=0)
    heartbeat_timeout_s: float = Field(5.0, gt=0)
    warn_score: float = Field(0.70, ge=0.0, le=1.0)
    critical_score: float = Field(0.40, ge=0.0, le=1.0)
    max_consecutive_failures: int = Field(3, ge=1)
    prediction_horizon_s: float = Field(30.0, gt=0)
    restart_backoff_s: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0, 5.0, 10.0])
    webhook_url: SecretStr | None = Field(None, description="alerts are POSTed here when set")
    window: int = Field(50, ge=1, description="recent outcomes the error rate is computed over")
    latency_budget_ms: float = Field(50.0, gt=0, description="default latency budget of a component")
    error_rate_warn: float = Field(0.2, gt=0, le=1, description="error rate the trend alert watches for")
    error_rate_critical: float = Field(0.5, gt=0, le=1, description="error rate at which the error score is 0")
    prediction_samples: int = Field(20, ge=3, description="readings the trend line is fitted to")


class OptimizerConfig(_Section):
    """Performance optimizer."""
    interval_s: float = Field(5.0, gt=0)
    cpu_warn_percent: float = Field(70.0, gt=0, le=100)
    memory_warn_percent: float = Field(75.0, gt=0, le=100)
    latency_warn_ms: float = Field(100.0, gt=0)
    hysteresis_cycles: int = Field(3, ge=1, description="consecutive readings before acting or reverting")
    release_fraction: float = Field(0.85, gt=0, lt=1, description="pressure is gone below this x the warn level")
    cpu_scope: Literal["system", "process"] = Field(
        "system", description="system: whole-machine CPU; process: this process's share of all cores")
    reduced_concurrency_fraction: float = Field(0.5, gt=0, lt=1, description="task reduction: in-flight orders x this")
    reduced_poll_fraction: float = Field(0.5, gt=0, lt=1, description="polling adjustment: source rates x this")
    batched_journal_window_ms: float = Field(10.0, gt=0, description="journal group-commit window while batching")
    performance_batch_cycles: int = Field(4, ge=2, description="loop cycles coalesced into one fusion batch")


class LinkConfig(_Section):
    """Host-board link."""
    url: str | None = Field(None, description="serial URL: /dev/ttyUSB1, socket://..., loop://, ftdi://...")
    baudrate: int = Field(3_000_000, gt=0)
    timeout_s: float = Field(0.5, gt=0)
    retries: int = Field(3, ge=0)
    signal_batch: int = Field(32, ge=1, le=255, description="signals per push frame")


class BoardConfig(_Section):
    """Target board."""
    name: Literal["icebreaker", "ulx3s"] = "icebreaker"
    clock_hz: int | None = Field(None, gt=0, description="datapath clock; the board's default when unset")


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    file: Path | None = Field(None, description="JSON-lines log file, rotated")
    max_bytes: int = Field(10 * 1024 * 1024, gt=0)
    backups: int = Field(5, ge=0)
    console: Literal["auto", "json", "text", "off"] = "auto"


class MetricsConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class DemoConfig(_Section):
    duration_s: float = Field(60.0, gt=0)
    frequency_hz: float = Field(5.0, gt=0, description="signals per source per second")
    pairs: int = Field(10, ge=1, le=PAIR_SLOTS_MAX)
    seed: int = 1
    backend: Literal["auto", "software", "sim", "board"] = "auto"
    out_dir: Path | None = Field(None, description="where summary, journal and report go (default runs/<timestamp>)")
    dashboard: Literal["auto", "live", "plain"] = Field(
        "auto", description="auto: the live dashboard on a terminal, plain periodic lines otherwise")
    status_interval_s: float = Field(5.0, gt=0, description="seconds between plain status lines")


class SigfuseConfig(_Section):
    """The whole configuration file."""
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    link: LinkConfig = Field(default_factory=LinkConfig)
    board: BoardConfig = Field(default_factory=BoardConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets shown as ``***``."""
        def walk(value: Any) -> Any:
            if isinstance(value, SecretStr):
                return "***"
            if isinstance(value, BaseModel):
                return {k: walk(getattr(value, k)) for k in type(value).model_fields}
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, Path):
                return str(value)
            return value
        return walk(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.redacted(), sort_keys=False, default_flow_style=None)


# --- loading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str
    value: Any = None
    has_value: bool = False

    def __str__(self) -> str:
        shown = f" (got {_show(self.value)})" if self.has_value else ""
        return f"{self.path or '<top>'}: {self.message}{shown}"


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "'***'"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` has one entry per fault."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[ConfigProblem],
                                                      dict[tuple[str, ...], str]]:
    """Overrides as nested data, problems with their names, and which variable set each key."""
    data: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    origins: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX):]:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        if not all(keys):
            problems.append(ConfigProblem(name, "malformed override name"))
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                problems.append(ConfigProblem(name, "conflicts with another override"))
                break
        else:
            node[keys[-1]] = value
            origins[tuple(keys)] = name
    return data, problems, origins


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _problems_from(error: ValidationError,
                   origins: Mapping[tuple[str, ...], str] | None = None) -> list[ConfigProblem]:
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(str(p) for p in item["loc"])
        path = ".".join(loc)
        # Name the environment variable when an override, not the file, set the bad value.
        for depth in range(len(loc), 0, -1):
            variable = (origins or {}).get(loc[:depth])
            if variable:
                path += f" (from {variable})"
                break
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        problems.append(ConfigProblem(path, message, item.get("input"), "input" in item))
    return problems


def load_config(path: str | Path | None = None, *,
                environ: Mapping[str, str] | None = None) -> SigfuseConfig:
    """Load the configuration from ``path`` (defaults only when None) plus environment overrides.

    Raises :class:`ConfigError` listing every problem found.
    """
    source = str(path) if path is not None else "<defaults>"
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(source, [ConfigProblem("", f"cannot read file: {error.strerror}")]) from None
        except UnicodeDecodeError as error:
            raise ConfigError(source, [ConfigProblem("", f"not valid UTF-8 (byte {error.start + 1})")]) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(error, "problem", None) or str(error)
            raise ConfigError(source, [ConfigProblem("", f"{where}not valid YAML: {problem}")]) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(source, [ConfigProblem("", "the file must hold a mapping of sections",
                                                     data, True)])
    overrides, problems, origins = _env_overrides(os.environ if environ is None else environ)
    if problems:
        raise ConfigError(source, problems)
    try:
        return SigfuseConfig.model_validate(_merge(data, overrides))
    except ValidationError as error:
        raise ConfigError(source, _problems_from(error, origins)) from None
