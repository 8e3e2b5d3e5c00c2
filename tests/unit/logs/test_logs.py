"""Logs never carry secrets: not in event fields, not in the local variables of a traceback."""

import logging

import pytest
import structlog

from stackl.config import LoggingSettings
from stackl.logs import configure_logging


def _fail_with_a_secret_in_scope() -> None:
    body = {"secrets": {"db_password": "hunter2-SECRET"}}  # a local variable a traceback could show
    raise ValueError(f"boom ({len(body)} keys)")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_logged_exception_shows_no_local_variables(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings.model_validate({"format": fmt, "level": "info"}))
    try:
        try:
            _fail_with_a_secret_in_scope()
        except ValueError as exc:
            structlog.get_logger("test").error("request_failed", exc_info=exc, password="also-secret")
        err = capsys.readouterr().err
        assert "boom (1 keys)" in err  # the traceback is there ...
        assert "hunter2-SECRET" not in err  # ... without the frame's locals
        assert "also-secret" not in err  # secret-looking keys are masked
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
