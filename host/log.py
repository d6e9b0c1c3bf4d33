"""Structured logging: JSON lines with ``ts``, ``level``, ``component``, ``event`` and fields.

Use :func:`get_logger` and log events, not sentences::

    log = get_logger("link")
    log.info("frame_dropped", reason="bad_crc", seq=41)

Records go to a rotating JSON-lines file when one is configured, and to the console -- readable
text on a terminal, JSON lines otherwise (or as configured).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from typing import Any, TextIO

__all__ = ["get_logger", "setup_logging", "EventLogger", "JsonFormatter", "ConsoleFormatter"]

_ROOT = "sigfuse"


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (RFC 3339, UTC), level, component, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": getattr(record, "component", record.name.removeprefix(_ROOT + ".")),
            "event": getattr(record, "event", record.getMessage()),
        }
        for key, value in getattr(record, "fields", {}).items():
            # A field must not overwrite the record's own ts/level/component/event.
            entry["field_" + key if key in entry else key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=_json_default, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """``12:00:01.234 info  link       frame_dropped reason=bad_crc seq=41``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        component = getattr(record, "component", record.name.removeprefix(_ROOT + "."))
        event = getattr(record, "event", record.getMessage())
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        line = f"{stamp} {record.levelname.lower():7} {component:12} {event}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class EventLogger:
    """A logger for one component that records events with keyword fields."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._logger = logging.getLogger(f"{_ROOT}.{component}")

    def log(self, level: int, event: str, /, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"component": self.component, "event": event,
                                                  "fields": fields})

    def debug(self, event: str, /, **fields: Any) -> None:
        self.log(logging.DEBUG, event, **fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self.log(logging.INFO, event, **fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self.log(logging.WARNING, event, **fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self.log(logging.ERROR, event, **fields)

    def hexdump(self, event: str, data: bytes, /, **fields: Any) -> None:
        """Log raw bytes (a frame) at debug level, hex encoded."""
        self.log(logging.DEBUG, event, bytes=bytes(data).hex(" "), length=len(data), **fields)

    def isEnabledFor(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)


def get_logger(component: str) -> EventLogger:
    return EventLogger(component)


def setup_logging(level: str = "info", *, file: str | None = None, max_bytes: int = 10 << 20,
                  backups: int = 5, console: str = "auto", stream: TextIO | None = None) -> None:
    """Configure the ``sigfuse`` logger tree (idempotent: replaces earlier handlers)."""
    root = logging.getLogger(_ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(getattr(logging, level.upper()))
    root.propagate = False
    if file:
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    if console != "off":
        stream = stream or sys.stderr
        handler = logging.StreamHandler(stream)
        use_text = console == "text" or (console == "auto" and stream.isatty())
        handler.setFormatter(ConsoleFormatter() if use_text else JsonFormatter())
        root.addHandler(handler)
    if not root.handlers:
        # Without a handler of its own, logging's last-resort handler would print warnings.
        root.addHandler(logging.NullHandler())


def setup_from_config(cfg: Any) -> None:
    """Configure logging from a :class:`~sigfuse.config.LoggingConfig`."""
    setup_logging(cfg.level, file=str(cfg.file) if cfg.file else None, max_bytes=cfg.max_bytes,
                  backups=cfg.backups, console=cfg.console)
