import pytest

from stackl.bootstrap import policy_engine
from stackl.config import Settings
from stackl.policy.opa import OpaPolicyEngine
from stackl.policy.rego import RegoPolicyEngine


@pytest.mark.parametrize(
    ("setting", "engine"), [(None, OpaPolicyEngine), ("opa", OpaPolicyEngine), ("regopy", RegoPolicyEngine)]
)
def test_the_setting_picks_the_engine(
    setting: str | None, engine: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    if setting is not None:
        monkeypatch.setenv("STACKL_POLICY__ENGINE", setting)
    chosen = policy_engine(Settings())
    try:
        assert type(chosen) is engine
    finally:
        chosen.close()


def test_an_unknown_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKL_POLICY__ENGINE", "wasm")
    with pytest.raises(ValueError, match="engine"):
        Settings()
