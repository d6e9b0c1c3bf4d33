"""Configuration: defaults, validation with key paths, environment overrides, redaction, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sigfuse import cli
from sigfuse.config import ConfigError, SigfuseConfig, load_config
from sigfuse.contract import FusionParams


@pytest.fixture(autouse=True)
def _no_config_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGFUSE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "sigfuse.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path | None = None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems)
    return lines


# --- defaults -----------------------------------------------------------------------------------

def test_defaults_reproduce_the_seed_numbers() -> None:
    cfg = load_config(None, environ={})
    assert cfg.fusion.weights == {"arbitrage": 0.35, "momentum": 0.25, "mean_reversion": 0.20,
                                  "volatility": 0.10, "sentiment": 0.05, "news": 0.03,
                                  "whale": 0.02, "custom": 0.0}
    assert cfg.fusion.consensus_threshold == 0.75
    assert cfg.fusion.quorum == 0.5
    assert cfg.fusion.min_confidence == 0.6
    assert cfg.fusion.vote_ttl_us == 500_000
    assert cfg.fusion.cooldown_us == 100_000
    assert cfg.fusion.boost == [1.00, 1.00, 1.05, 1.10, 1.15, 1.20, 1.25, 1.30]
    assert cfg.execution.max_concurrent == 50
    assert cfg.optimizer.cpu_warn_percent == 70
    assert cfg.optimizer.memory_warn_percent == 75
    assert cfg.optimizer.latency_warn_ms == 100
    assert cfg.queue.capacity == 256
    assert cfg.health.webhook_url is None
    # The real numbers become exactly the contract's default registers.
    assert cfg.fusion.params() == FusionParams()
    assert cfg.fusion.params().weights == (11469, 8192, 6554, 3277, 1638, 983, 655, 0)


@pytest.mark.parametrize("text", ["", "# nothing configured\n", "{}\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text), environ={}) == SigfuseConfig()


def test_file_values_and_params(tmp_path: Path) -> None:
    path = write(tmp_path, """
fusion:
  weights: {custom: 1.0}
  consensus_threshold: 0.8
  vote_ttl_us: 1234
  pair_slots: 3
  pairs: [ETH/USD, BTC/USD]
queue: {capacity: 8}
""")
    cfg = load_config(path, environ={})
    params = cfg.fusion.params()
    # Sources not named keep their defaults.
    assert params.weights == (11469, 8192, 6554, 3277, 1638, 983, 655, 32768)
    assert params.consensus_threshold == round(0.8 * 2**15) == 26214
    assert params.vote_ttl_us == 1234
    pairs = cfg.fusion.pair_table()
    assert (pairs.slots, pairs.names) == (3, ("ETH/USD", "BTC/USD"))
    assert cfg.queue.capacity == 8


# --- unknown keys and bad values ----------------------------------------------------------------

def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "fusoin: {quorum: 0.5}\n")) == [
        f"{tmp_path / 'sigfuse.yaml'}: fusoin: unknown key (got {{'quorum': 0.5}})"]


@pytest.mark.parametrize("section", sorted(SigfuseConfig.model_fields))
def test_unknown_key_in_every_section(tmp_path: Path, section: str) -> None:
    lines = problems(write(tmp_path, f"{section}:\n  not_a_key: 7\n"))
    assert len(lines) == 1
    assert f": {section}.not_a_key: unknown key (got 7)" in lines[0]


@pytest.mark.parametrize("name", ["oracle", "MOMENTUM", "Momentum"])
def test_unknown_weight_source(tmp_path: Path, name: str) -> None:
    # Source names are exact: a differently cased name must not be accepted and then ignored.
    lines = problems(write(tmp_path, f"fusion:\n  weights: {{{name}: 0.9}}\n"))
    assert len(lines) == 1
    assert "fusion.weights: unknown source" in lines[0] and repr(name) in lines[0]


@pytest.mark.parametrize("text, path, shown", [
    ("queue: {capacity: 0}", "queue.capacity", "(got 0)"),
    ("fusion: {consensus_threshold: 1.5}", "fusion.consensus_threshold", "(got 1.5)"),
    ("fusion: {quorum: -0.1}", "fusion.quorum", "(got -0.1)"),
    ("fusion: {vote_ttl_us: 1.5}", "fusion.vote_ttl_us", "(got 1.5)"),
    ("fusion: {cooldown_us: 4294967296}", "fusion.cooldown_us", "(got 4294967296)"),
    ("fusion: {weights: {momentum: 1.5}}", "fusion.weights", "1.5"),
    ("fusion: {boost: [1, 1, 1]}", "fusion.boost", "needs 8 entries"),
    ("fusion: {boost: [1, 1, 1, 1, 1, 1, 1, 4.5]}", "fusion.boost", "4.5"),
    ("fusion: {pair_slots: 0}", "fusion.pair_slots", "(got 0)"),
    ("fusion: {pairs: [A, A]}", "fusion", "duplicate"),
    ("fusion: {pair_slots: 1, pairs: [A, B]}", "fusion", "only 1 pair slots"),
    ("fusion: 5", "fusion", "(got 5)"),
    ("execution: {max_concurrent: many}", "execution.max_concurrent", "(got 'many')"),
    ("board: {name: zedboard}", "board.name", "(got 'zedboard')"),
    ("logging: {level: loud}", "logging.level", "(got 'loud')"),
    ("metrics: {port: 70000}", "metrics.port", "(got 70000)"),
    ("optimizer: {cpu_warn_percent: 150}", "optimizer.cpu_warn_percent", "(got 150)"),
])
def test_bad_value_names_path_and_value(tmp_path: Path, text: str, path: str, shown: str) -> None:
    lines = problems(write(tmp_path, text + "\n"))
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'sigfuse.yaml'}: {path}: ")
    assert shown in lines[0]


def test_several_problems_give_several_lines(tmp_path: Path) -> None:
    lines = problems(write(tmp_path, """
fusion: {consensus_threshold: 2, bogus: 1}
queue: {capacity: 0}
nope: 1
"""))
    assert len(lines) == 4
    assert {line.split(": ")[1] for line in lines} == {
        "fusion.consensus_threshold", "fusion.bogus", "queue.capacity", "nope"}


def test_invalid_yaml(tmp_path: Path) -> None:
    lines = problems(write(tmp_path, "fusion:\n  weights: [1, 2\n"))
    assert len(lines) == 1
    assert "not valid YAML" in lines[0] and "line 3" in lines[0]


@pytest.mark.parametrize("text", ["- fusion\n- queue\n", "just a string\n", "42\n"])
def test_file_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    lines = problems(write(tmp_path, text))
    assert len(lines) == 1
    assert "must hold a mapping of sections" in lines[0]


def test_missing_file(tmp_path: Path) -> None:
    lines = problems(tmp_path / "absent.yaml")
    assert lines == [f"{tmp_path / 'absent.yaml'}: <top>: cannot read file: No such file or directory"]


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("fusion:\n  pairs: [BTC/EUR\u20ac]\n".encode("cp1252"))
    try:
        load_config(path, environ={})
    except ConfigError as error:
        assert str(path) in str(error)
    except UnicodeDecodeError as error:
        pytest.fail(f"bug: a non-UTF-8 config file escapes as UnicodeDecodeError ({error}) "
                    "instead of a ConfigError")
    else:
        pytest.fail("a non-UTF-8 config file was accepted")


# --- environment overrides ----------------------------------------------------------------------

def test_env_override_of_a_number() -> None:
    cfg = load_config(None, environ={"SIGFUSE_FUSION__CONSENSUS_THRESHOLD": "0.8"})
    assert cfg.fusion.consensus_threshold == 0.8
    assert cfg.fusion.params().consensus_threshold == 26214


def test_env_override_nested_and_list() -> None:
    cfg = load_config(None, environ={"SIGFUSE_FUSION__WEIGHTS__MOMENTUM": "0.3",
                                     "SIGFUSE_FUSION__PAIRS": "[BTC/USDT, ETH/USDT]",
                                     "SIGFUSE_HEALTH__WEBHOOK_URL": "https://hooks.example/t0k3n"})
    assert cfg.fusion.weights["momentum"] == 0.3
    assert cfg.fusion.weights["arbitrage"] == 0.35
    assert cfg.fusion.pairs == ["BTC/USDT", "ETH/USDT"]
    assert cfg.health.webhook_url.get_secret_value() == "https://hooks.example/t0k3n"


def test_env_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path, "fusion: {consensus_threshold: 0.7, quorum: 0.6}\n")
    cfg = load_config(path, environ={"SIGFUSE_FUSION__CONSENSUS_THRESHOLD": "0.8",
                                     "SIGFUSE_TOOLCHAIN": "system",   # not a config override
                                     "HOME": "/nowhere"})
    assert (cfg.fusion.consensus_threshold, cfg.fusion.quorum) == (0.8, 0.6)


def test_bad_env_value_names_the_key_path_and_value() -> None:
    lines = problems(environ={"SIGFUSE_QUEUE__CAPACITY": "lots"})
    assert len(lines) == 1
    assert "queue.capacity" in lines[0] and "'lots'" in lines[0]


def test_unknown_env_key() -> None:
    lines = problems(environ={"SIGFUSE_FUSION__THRESHOLD": "0.8"})
    assert lines == ["<defaults>: fusion.threshold (from SIGFUSE_FUSION__THRESHOLD): unknown key (got 0.8)"]


@pytest.mark.parametrize("environ, text", [
    ({"SIGFUSE_FUSION____QUORUM": "0.5"}, "SIGFUSE_FUSION____QUORUM: malformed override name"),
    ({"SIGFUSE_FUSION__WEIGHTS": "0.5", "SIGFUSE_FUSION__WEIGHTS__MOMENTUM": "0.3"},
     "SIGFUSE_FUSION__WEIGHTS__MOMENTUM: conflicts with another override"),
])
def test_malformed_env_overrides(environ: dict[str, str], text: str) -> None:
    assert problems(environ=environ) == [f"<defaults>: {text}"]


def test_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGFUSE_QUEUE__CAPACITY", "17")
    assert load_config(None).queue.capacity == 17


# --- show and validate --------------------------------------------------------------------------

SECRET = "https://hooks.example/services/T000/very-secret-token"


def test_redacted_and_yaml_hide_the_secret(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, f"health: {{webhook_url: '{SECRET}'}}\n"), environ={})
    assert cfg.health.webhook_url.get_secret_value() == SECRET
    assert cfg.redacted()["health"]["webhook_url"] == "***"
    assert SECRET not in cfg.to_yaml()
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)


def test_config_show_redacts_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f"health:\n  webhook_url: {SECRET}\nqueue: {{capacity: 9}}\n")
    assert cli.main(["config", "show", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "very-secret-token" not in out
    shown = yaml.safe_load(out)
    assert shown["health"]["webhook_url"] == "***"
    assert shown["queue"]["capacity"] == 9
    assert shown["fusion"]["weights"]["arbitrage"] == 0.35
    # Also when the secret comes from the environment.
    monkeypatch.setenv("SIGFUSE_HEALTH__WEBHOOK_URL", SECRET)
    assert cli.main(["config", "show"]) == 0
    assert SECRET not in capsys.readouterr().out


def test_config_show_output_is_a_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "fusion: {quorum: 0.55, pairs: [A/B]}\nlogging: {file: /tmp/x.log}\n")
    assert cli.main(["config", "show", "--config", str(path)]) == 0
    shown = write(tmp_path, capsys.readouterr().out, "shown.yaml")
    assert load_config(shown, environ={}) == load_config(path, environ={})


def test_config_validate_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "fusion: {quorum: 0.55}\n")
    assert cli.main(["config", "validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_config_validate_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "fusion: {quorum: 2, bogus: 1}\nqueue: {capacity: 0}\n")
    assert cli.main(["config", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"sigfuse config: {path}: ") for line in lines)
    assert "Traceback" not in captured.err


def test_trace_with_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "fusion: {min_confidence: yes please}\n")
    assert cli.main(["trace", "--config", str(path), "--in", "-"]) == 2
    assert "fusion.min_confidence" in capsys.readouterr().err


def test_config_validate_in_a_subprocess(tmp_path: Path) -> None:
    good = write(tmp_path, "queue: {capacity: 4}\n", "good.yaml")
    bad = write(tmp_path, "queue: {capacity: -4}\nwhat: 1\n", "bad.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGFUSE_")}
    run = [sys.executable, "-m", "sigfuse.cli", "config", "validate"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, env=env, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, f"{good}: ok\n")
    proc = subprocess.run([*run, str(bad)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 2
    assert "queue.capacity" in proc.stderr and "what: unknown key" in proc.stderr
