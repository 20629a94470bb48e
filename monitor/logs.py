"""structlog set-up: JSON lines when stdout is not a terminal, console rendering when it is; secrets redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .redact import REDACTED, is_secret_name, redact_headers


def _redact_secrets(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Defence in depth: a header mapping or a string under a credential-like key never reaches a log line."""
    for key, value in event.items():
        if isinstance(value, dict):
            event[key] = redact_headers(value)
        elif isinstance(value, str) and key != "event" and is_secret_name(key):
            event[key] = REDACTED
    return event


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """`fmt`: json, console, or auto (console on a TTY). Also routes stdlib logging (uvicorn, apscheduler) through it."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
