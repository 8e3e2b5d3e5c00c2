"""The policy corpus (issue 13) on every engine: per-group pass counts, and no case wrong but the listed ones.

Each engine must give OPA's answer on every case except those it is known to get wrong (``KNOWN_WRONG``, each
with the reason, listed in docs/policies.md); a known-wrong case that starts passing fails the test too, so the
list stays true. Run with ``-s`` (or look at the captured output) for the table.
"""

import sys
from collections import Counter
from typing import Any

import pytest
from tests.integration.policy.corpus import UNDEFINED, Case, canonical, gatekeeper, language, stackl05
from tests.integration.policy.test_rego_engine import ENGINES, make_engine

from stackl.errors import PolicyError
from stackl.policy.base import Policy

CASES: list[Case] = [*stackl05.CASES, *gatekeeper.CASES, *language.CASES]

# Cases an engine gets wrong and STACKL cannot fix, with the reason (docs/policies.md lists them).
_QUOTES = (
    "regopy 1.5.2 sprintf %v quotes a string that comes from a literal or a builtin's result, which makes the "
    "answer invalid JSON"
)
KNOWN_WRONG: dict[str, dict[str, str]] = {
    "opa": {},
    "regopy": {
        "gatekeeper/block-wildcard-ingress/wildcard-and-missing-host": _QUOTES,
        "gatekeeper/disallowanonymous/authenticated-too": _QUOTES,
        "gatekeeper/storageclass/unknown-class": _QUOTES,
        "language/format-int": "regopy 1.5.2 format_int(5, 2) gives 01 (OPA: 101)",
        "language/sprintf-numbers": "regopy 1.5.2 sprintf %d truncates to 32 bits",
        "language/upper-lower-unicode": "regopy 1.5.2 upper/lower change ASCII letters only",
    },
}


def _run(engine: Any, case: Case, revision: int) -> tuple[bool, str]:
    policy = Policy(case.package, revision, case.source)
    try:
        decision = engine.evaluate(policy, case.rule, case.input, data=case.data or None, timeout_s=60)
    except PolicyError as exc:
        return False, f"error: {exc.message}"
    if case.expected is UNDEFINED:
        return (not decision.defined), f"got {decision.value!r}, expected undefined"
    if not decision.defined:
        return False, "undefined"
    got, want = canonical(case, decision.value), canonical(case, case.expected)
    return got == want, f"got {got!r}"


def test_the_corpus_is_large_enough() -> None:
    groups = Counter(case.group for case in CASES)
    assert len(CASES) >= 60
    assert len({case.name.split("/")[0] for case in gatekeeper.CASES}) >= 20
    assert set(groups) == {"stackl05", "gatekeeper", "language"}
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("kind", ENGINES)
def test_corpus(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(kind)
    passed: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    wrong: dict[str, str] = {}
    try:
        for revision, case in enumerate(CASES, start=1):
            ok, detail = _run(engine, case, revision)
            totals[case.group] += 1
            if ok:
                passed[case.group] += 1
            else:
                wrong[case.id] = detail
    finally:
        engine.close()
    counts = ", ".join(f"{g} {passed[g]}/{totals[g]}" for g in totals)
    report = f"\ncorpus on {kind}: {counts} (total {sum(passed.values())}/{len(CASES)})\n"
    report += "".join(f"  {case_id}: {detail[:300]}\n" for case_id, detail in sorted(wrong.items()))
    with capsys.disabled():
        sys.stdout.write(report)
    known = KNOWN_WRONG[kind]
    assert {k: v for k, v in wrong.items() if k not in known} == {}, "cases an engine got wrong"
    assert sorted(set(known) - set(wrong)) == [], (
        "known-wrong cases that now pass: update KNOWN_WRONG and the docs"
    )
