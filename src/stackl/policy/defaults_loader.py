"""The reference policies shipped with STACKL (``policy/defaults/*.rego``), loaded as package data.

They state STACKL 0.5's ``orchestration`` and ``replicas`` contracts in Rego v0; tests and benchmarks compare
the native placement against them (spec/lifecycle.md §3.1). They are not policy template documents.
"""

from importlib import resources

from stackl.policy.base import Policy

REFERENCE_POLICIES = ("orchestration", "replicas")


def reference_policy(name: str) -> Policy:
    """The shipped reference policy ``name`` (revision 0).

    Raises:
        ValueError: no reference policy has this name.
    """
    if name not in REFERENCE_POLICIES:
        raise ValueError(f"no reference policy {name!r}; known: {', '.join(REFERENCE_POLICIES)}")
    source = (resources.files("stackl.policy") / "defaults" / f"{name}.rego").read_text(encoding="utf-8")
    return Policy(name=name, revision=0, source=source)
