from typing import Any

import pytest

from stackl.errors import PolicyError
from stackl.policy.base import Policy
from stackl.policy.static import UNDEFINED, StaticPolicyEngine


def _naming(rule: str, input_doc: Any) -> Any:
    return {"fulfilled": True, "targets": ["a"]} if rule == "solutions" else UNDEFINED


def test_evaluate_answers_from_the_function_and_records_calls() -> None:
    engine = StaticPolicyEngine({"naming": _naming})
    policy = Policy("naming", 2, "package naming")
    decision = engine.evaluate(policy, "solutions", {"x": 1})
    assert decision.defined
    assert decision.value == {"fulfilled": True, "targets": ["a"]}
    assert not engine.evaluate(policy, "other", {}).defined
    assert not engine.query(Policy("unknown", 1, ""), "1 + 1", {}).defined
    assert [(c.policy, c.revision, c.rule) for c in engine.calls] == [
        ("naming", 2, "solutions"),
        ("naming", 2, "other"),
        ("unknown", 1, "1 + 1"),
    ]


def test_check_package_and_entry_rule() -> None:
    engine = StaticPolicyEngine()
    info = engine.check("naming", "package naming\ndefault allow = false\n")
    assert "allow" in info.rules
    with pytest.raises(PolicyError, match="package other must be the template name naming"):
        engine.check("naming", "package other\nallow = true\n")
    with pytest.raises(PolicyError, match="defines none of"):
        engine.check("naming", "package naming\nx = 1\n")
    with pytest.raises(PolicyError, match="no package") as caught:
        engine.check("naming", "allow = true\n")
    assert caught.value.errors[0]["loc"] == ["body", "policy"]
