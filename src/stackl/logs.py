"""Structured logging for every process: structlog + stdlib bridge + secret redaction.

One ``configure_logging`` call per process. Console output on a terminal, JSON lines otherwise. The ``redact``
processor is the safety net that masks secret-looking keys and registered secret values; code never hands a
secret to a logger in the first place.
"""

import logging
import sys
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

from stackl.config import LoggingSettings
from stackl.domain.secrets import MASK, is_secret_key, secret_forms

_secret_values: ContextVar[tuple[str, ...]] = ContextVar("stackl_secret_values", default=())


def register_secret_values(values: Iterable[str]) -> None:
    """Mask these values, in every encoding of ``secret_forms``, in every log line of the current context."""
    forms = {form for v in values if isinstance(v, str) and len(v) >= 4 for form in secret_forms(v)}
    _secret_values.set(tuple(sorted(forms, key=lambda f: (-len(f), f))))  # longest first


def _mask_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, MASK)
        return value
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(str(k)) else _mask_value(v, secrets)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v, secrets) for v in value]
    return value


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask secret-looking keys and registered secret values in a log event."""
    secrets = _secret_values.get()
    for key in list(event_dict):
        if is_secret_key(key):
            event_dict[key] = MASK
        else:
            event_dict[key] = _mask_value(event_dict[key], secrets)
    return event_dict


def configure_logging(settings: LoggingSettings) -> None:
    """Route structlog and stdlib logging through the same processors and renderer."""
    level = getattr(logging, settings.level.upper())
    use_console = settings.format == "console" or (settings.format == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    # Tracebacks never show local variables: they hold request bodies, settings and secrets, and are rendered
    # after the redaction processor has run.
    renderer: Any = (
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    dict_tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if use_console else [dict_tracebacks]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "sqlalchemy.engine", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
