"""Structured logging: JSON lines for machines, readable lines on a terminal.

Logs go to stderr so that command output on stdout stays clean for scripts.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from reconciler.redaction import Redactor

__all__ = ["setup_logging"]


def setup_logging(level: str = "warning", fmt: Literal["auto", "json", "console"] = "auto", *,
                  redactor: Redactor | None = None) -> None:
    """``redactor``: known secret values are masked in every event before it is written."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([redactor.processor] if redactor is not None else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
