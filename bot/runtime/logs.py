"""Structured JSON logs (structlog), configured once at start by the command line.

Every `logging.getLogger(...)` call of the code and its libraries goes through structlog's
ProcessorFormatter, so all lines come out as one JSON object each, with whatever was bound in
the context (the case a worker or an API handler is busy with). A last processor drops keys
that would hold personal data, as a safety net: nobody should log them, and if someone does they
do not reach the log.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import structlog

from bot.domain.personal import PERSONAL_KEYS

DROPPED = frozenset(PERSONAL_KEYS | {"facts", "children", "arrival", "params", "body"})


def drop_personal_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Take out keys that may hold personal data (initials, details, free texts, bodies)."""
    for key in DROPPED & event_dict.keys():
        del event_dict[key]
    return event_dict


class log_context:
    """`with log_context(case=...):` binds the keys to the log lines written in the block, and
    puts back what was bound under them before. By structlog's tokens: its `bound_contextvars`
    reads the whole context first, which was a per cent of a delivery's CPU (issue 17)."""

    __slots__ = ("_bound", "_tokens")

    def __init__(self, **bound: object) -> None:
        self._bound = bound
        self._tokens: Mapping[str, contextvars.Token[Any]] = {}

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._bound)

    def __exit__(self, *_: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_personal_fields,
    ]


def configure_logging(
    fmt: Literal["json", "console"] = "json", level: int | str = logging.INFO
) -> None:
    """Route structlog and stdlib logging to stderr, one JSON object per line (or readable
    lines for a terminal with `console`)."""
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *_shared(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            drop_personal_fields,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiogram.event", "aiosmtpd", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
