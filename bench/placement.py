"""Native placement vs the STACKL 0.5 ``orchestration`` Rego policy in real OPA, on the same input.

For 100 services over 1,000, 10,000 and 50,000 targets (seeded, default constraints only: resources, tags,
packages) it times `placement.engine.place` twice: realistic data (targets drawn from 50 zone profiles,
services from 10 requirement profiles) and the worst case for the index (every target distinct). The baseline,
in the same run and on the same policy input, is the shipped 0.5 ``orchestration`` policy evaluated in real OPA
(the engine STACKL 0.5 used; in-process, the default engine), measured at every size on the whole input.

``--baseline-engine regopy`` measures the embedded rego-cpp engine instead. That engine fails on large inputs
(a bare error at 100 services x 1,000 targets), so where the whole input fails it is measured one service at a
time and summed; above 1,000 targets it takes many minutes, so its baseline there is the 1,000-target time
scaled linearly (a lower bound) unless --baseline-all is given. The table says which.

    python -m bench.placement [--quick] [--baseline-engine opa|regopy]   # --quick: 10 services x 1,000 targets
"""

import argparse
import random
from collections.abc import Callable, Mapping
from typing import Any

from bench.harness import Timing, header, measure, table
from stackl.placement.engine import PlacementRequest, ServiceSpec, place, policy_input_base
from stackl.policy.base import Policy, PolicyDecision, PolicyEngine, PolicyInfo

PACKAGES = ["vm", "nginx", "postgres", "redis", "haproxy", "java", "python", "docker"]
TIERS = ["gold", "silver", "bronze"]


class NoPolicies(PolicyEngine):
    """Default constraints only: placement must never call the engine."""

    def check(self, name: str, source: str) -> PolicyInfo:
        raise AssertionError("no policy expected")

    def evaluate(self, policy: Policy, rule: str, input_doc: Mapping[str, Any], **_: Any) -> PolicyDecision:
        raise AssertionError("no policy expected")

    def query(self, policy: Policy, query: str, input_doc: Mapping[str, Any], **_: Any) -> PolicyDecision:
        raise AssertionError("no policy expected")


def _capability(rng: random.Random) -> dict[str, Any]:
    return {
        "provisioning_parameters": {"vlan": rng.randint(1, 4000)},
        "cloud_provider": "generic",
        "secrets": {},
        "resources": {
            "cpu": rng.choice([8, 16, 32, 64, 128]),
            "memory": f"{rng.choice([16, 32, 64, 128, 256, 512])}GiB",
            "disk": f"{rng.choice([1, 2, 5, 10])}TB",
        },
        "tags": {"environment": rng.choice(["prod", "prod", "test"]), "tier": rng.choice(TIERS)},
        "policies": {},
        "agent": "common",
        "packages": sorted(rng.sample(PACKAGES, rng.randint(5, len(PACKAGES)))),
    }


def _distinct(rng: random.Random, i: int) -> dict[str, Any]:
    capability = _capability(rng)
    capability["resources"] = {
        "cpu": rng.randint(1, 128),
        "memory": f"{rng.randint(1, 1024)}GiB",
        "disk": f"{rng.randint(1, 50_000)}GB",
        "gpu": i,  # nothing else repeats either
    }
    return capability


def make_request(services: int, targets: int, *, seed: int = 42, distinct: bool = False) -> PlacementRequest:
    """A seeded request: `services` aliases over `targets` targets, default constraints only."""
    rng = random.Random(seed)
    zones = [_capability(rng) for _ in range(50)]
    capabilities = {
        f"env{i % 3}.loc{i % 17}.zone{i}": (_distinct(rng, i) if distinct else dict(rng.choice(zones)))
        for i in range(targets)
    }
    profiles = [
        (
            {
                "cpu": str(rng.choice([1, 2, 4, "500m"])),
                "memory": f"{rng.choice([2, 4, 8, 16])}GiB",
                "disk": f"{rng.choice([10, 100])}GB",
            },
            sorted(rng.sample(PACKAGES[:5], rng.randint(1, 2))),
        )
        for _ in range(10)
    ]
    specs = []
    for i in range(services):
        needs, frs = profiles[i % len(profiles)]
        invocations = {
            fr: {"generic": {"tool": "shell", "image": f"registry.example.com/{fr}:1"}} for fr in frs
        }
        specs.append(ServiceSpec(f"svc{i}", f"service{i % 10}", needs, frs, invocations, {"size": "m"}))
    return PlacementRequest(
        stack_instance="bench",
        services=specs,
        targets=capabilities,
        required_tags={"environment": "prod"},
        replicas={},
        sat_policies=(),
        policies={},
        user_parameters={},
        evaluated_at="2025-01-01T00:00:00Z",
    )


def _baseline(kind: str) -> tuple[PolicyEngine, Policy] | str:
    """The policy engine ``kind`` and the shipped 0.5 orchestration policy, or why they are not available."""
    try:
        from stackl.policy.defaults_loader import reference_policy

        if kind == "regopy":
            from stackl.policy.rego import RegoPolicyEngine

            return RegoPolicyEngine(), reference_policy("orchestration")
        from stackl.policy.opa import OpaPolicyEngine

        return OpaPolicyEngine(max_workers=1), reference_policy("orchestration")
    except (ImportError, OSError, ValueError) as exc:
        return f"baseline unavailable ({exc.__class__.__name__}: {exc})"


def _rego(
    engine: PolicyEngine, policy: Policy, request: PlacementRequest
) -> tuple[Callable[[], object], str]:
    """A callable evaluating the 0.5 policy on `request`: the whole input, or per service when that fails."""
    whole = policy_input_base(request)

    def run_whole() -> object:
        return engine.evaluate(policy, "solutions", whole, timeout_s=3600)

    try:
        run_whole()
    except Exception as exc:
        broke = f"whole input failed ({str(exc)[:60]}); per service, summed"
    else:
        return run_whole, "whole input"
    inputs = [{**whole, "services": {alias: body}} for alias, body in whole["services"].items()]

    def run_each() -> object:
        return [engine.evaluate(policy, "solutions", doc, timeout_s=3600) for doc in inputs]

    return run_each, broke


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 services x 1,000 targets only")
    parser.add_argument(
        "--baseline-all",
        action="store_true",
        help="with regopy: measure its baseline above 1,000 targets too (hours)",
    )
    parser.add_argument(
        "--baseline-engine",
        choices=["opa", "regopy"],
        default="opa",
        help="the engine that runs the 0.5 policy (default: real OPA, as STACKL 0.5 did)",
    )
    args = parser.parse_args()
    header(f"placement: native place() vs the STACKL 0.5 orchestration policy ({args.baseline_engine})")
    sizes = [(10, 1_000)] if args.quick else [(100, 1_000), (100, 10_000), (100, 50_000)]
    repeat = 3 if args.quick else 5
    baseline = _baseline(args.baseline_engine)
    estimate = args.baseline_engine == "regopy" and not args.baseline_all
    rows: list[list[object]] = []
    measured_1k: Timing | None = None
    for services, targets in sizes:
        for distinct in (False, True):
            request = make_request(services, targets, distinct=distinct)
            native = measure(lambda r=request: place(r, NoPolicies()), repeat=repeat)  # type: ignore[misc]
            case = f"{services} x {targets:,}" + (" all-distinct" if distinct else "")
            rego: Timing | None = None
            how = baseline if isinstance(baseline, str) else ""
            if not isinstance(baseline, str) and not distinct:
                if targets > 1_000 and estimate and measured_1k is not None:
                    # The engine's cost grows faster than linearly in targets (minutes at 10,000): scale the
                    # 1,000-target time linearly, which underestimates the baseline and so the ratio.
                    rego = Timing([t * targets / 1_000 for t in measured_1k.samples])
                    how = f"estimated: the 1,000-target time x {targets // 1_000} (a lower bound)"
                else:
                    run, how = _rego(*baseline, request)
                    rego = measure(run, repeat=1 if targets > 1_000 or not args.quick else 2, warmup=0)
                    if targets == 1_000 and services == sizes[0][0]:
                        measured_1k = rego
            rows.append(
                [
                    case,
                    native.best * 1000,
                    native.median * 1000,
                    rego.best * 1000 if rego else "-",
                    f"{rego.best / native.best:.0f}x" if rego else "-",
                    how,
                ]
            )
            print(f"# measured {case}: " + " | ".join(str(cell) for cell in rows[-1][1:]), flush=True)
    table(
        rows,
        [
            "case",
            "native best ms",
            "native median ms",
            f"0.5 policy in {args.baseline_engine} ms",
            "ratio",
            "baseline",
        ],
    )


if __name__ == "__main__":
    main()
