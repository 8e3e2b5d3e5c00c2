"""The CLI's root app run by CliRunner against the in-memory fake API (tests/unit/client/fakeserver.py)."""

from collections.abc import Callable

import pytest
from tests import factories
from tests.unit.client.fakeserver import FakeServer
from typer.testing import CliRunner, Result

from stackl.cli import context
from stackl.main import app

Invoke = Callable[..., Result]


@pytest.fixture
def server() -> FakeServer:
    """The factory estate: environment, location, zones, FR, service, SAT, SIT, policy template, instance."""
    fake = FakeServer()
    fake.seed(
        factories.environment(),
        factories.location(),
        factories.zone(),
        factories.zone("internal", cloud_provider="", tags={}),
        factories.functional_requirement(),
        factories.service(),
        factories.stack_application_template(),
        factories.stack_infrastructure_template(),
        factories.policy_template(),
        factories.stack_instance(),
    )
    return fake


@pytest.fixture
def cli(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run `stackl ARGS…` in-process; every request goes to `server`."""
    monkeypatch.setattr(context, "TRANSPORT_FACTORY", server.transport)
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    return invoke
