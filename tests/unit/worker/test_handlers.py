"""The dispatch table, and the worker settings that size the runner."""

import pytest

from stackl.config import Settings
from stackl.usecases import operations
from stackl.worker import handlers


def test_instance_kinds_go_to_the_operations_use_case() -> None:
    table = handlers.default_handlers()
    assert table == {
        "noop": handlers.noop,
        "create": operations.run_task,
        "update": operations.run_task,
        "delete": operations.run_task,
        "restore": operations.run_task,
        "document_update": operations.document_update,
    }
    assert handlers.default_give_up() == dict.fromkeys(handlers.INSTANCE_KINDS, operations.give_up)


def test_worker_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.worker.concurrency, defaults.worker.lease_s, defaults.tasks.max_lease_expiries) == (
        4,
        30,
        5,
    )
    assert defaults.server.worker is True
    monkeypatch.setenv("STACKL_WORKER__CONCURRENCY", "16")
    monkeypatch.setenv("STACKL_WORKER__LEASE_S", "3")
    monkeypatch.setenv("STACKL_TASKS__MAX_LEASE_EXPIRIES", "2")
    settings = Settings()
    assert (settings.worker.concurrency, settings.worker.lease_s, settings.tasks.max_lease_expiries) == (
        16,
        3,
        2,
    )
