"""place(): choose a target for every replica of every alias, and explain why (lifecycle.md §3.1 steps 4-7).

The order is the contract's: native checks per alias and candidate (resources, tags, packages, first failure
rejects); SAT policies in declared order, each narrowing its alias's candidates and recording outputs; replicas
(the first N remaining candidates, existing replicas kept on update); SIT policies once per distinct chosen
target. Candidates keep the SIT order throughout. User templates named ``orchestration`` and ``replicas``
replace the native steps 4 and 6 under the STACKL 0.5 contract.

The function is pure: documents come in already resolved (targets merged, parameters layered, policies
loaded), the clock's reading comes in as ``evaluated_at``, and policies run through the `PolicyEngine` port.
Every failure carries the explanation so far; the explanation is read-only (see `placement.explanation`).
"""

import gc
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from stackl import errors
from stackl.placement import rules
from stackl.placement.explanation import AliasView, Explainer, services_text
from stackl.placement.index import Profile, Screener, Screening, TargetIndex
from stackl.policy.base import DEFAULT_TIMEOUT_S, Policy, PolicyDecision, PolicyEngine

UPDATE_IMPOSSIBLE = "Update impossible. Target in service definition not in service_targets"
ORCHESTRATION = "orchestration"
REPLICAS = "replicas"


@dataclass(frozen=True)
class ServiceSpec:
    """One alias of the instance, in alias order (SAT services, then the request's extras)."""

    alias: str
    service: str
    resource_requirements: Mapping[str, Any]
    functional_requirements: Sequence[str]  # FR names, declared order
    invocations: Mapping[str, Mapping[str, Any]]  # FR → {cloud_provider: invocation} (policy input, §3.5)
    params: Mapping[str, Any]  # layers 4-7 of §2: the policy input's services[alias].params


@dataclass(frozen=True)
class SatPolicyUse:
    """One attribute dict of one SAT policy; ``attributes["service"]`` names the alias it narrows."""

    policy: Policy
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class PlacementRequest:
    """Everything placement reads, resolved by the caller."""

    stack_instance: str
    services: Sequence[ServiceSpec]
    targets: Mapping[str, Mapping[str, Any]]  # name → capability (domain.targets), SIT order
    required_tags: Mapping[str, Any]
    replicas: Mapping[str, int]  # alias → count; a missing alias has 1
    sat_policies: Sequence[SatPolicyUse]  # SAT declared order, each attribute dict in list order
    policies: Mapping[str, Policy]  # every policy template by name (SIT policies are looked up here)
    user_parameters: Mapping[str, Any]  # instance params (on update: stored ⊕ body)
    existing: Mapping[str, Sequence[str]] = field(default_factory=dict)  # update: alias → targets by replica
    overrides: Mapping[str, Policy] = field(default_factory=dict)  # user "orchestration" / "replicas"
    inputs_meta: Mapping[str, Any] = field(default_factory=dict)  # copied into explanation["inputs"]
    evaluated_at: str = ""
    policy_timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Placement:
    """The outcome: targets per alias by replica index, SAT policy outputs per (alias, target), explanation."""

    targets: dict[str, list[str]]
    outputs: dict[str, dict[str, dict[str, Any]]]
    explanation: dict[str, Any]


def _target_input(name: str, capability: Mapping[str, Any]) -> dict[str, Any]:
    environment, location, zone = ([*name.split(".", 2), "", ""])[:3]
    return {
        "resources": capability.get("resources") or {},
        "tags": capability.get("tags") or {},
        "params": capability.get("provisioning_parameters") or {},
        "packages": capability.get("packages") or [],
        "cloud_provider": capability.get("cloud_provider"),
        "agent": capability.get("agent"),
        "environment": environment,
        "location": location,
        "zone": zone,
    }


def policy_input_base(request: PlacementRequest) -> dict[str, Any]:
    """The base input of SAT, SIT, ``orchestration`` and ``replicas`` policies (§3.5); it holds no secrets.

    ``infrastructure_targets`` holds every target, not only the current candidates. Values are shared with
    the request, not copied: the input is handed to the engine and never changed.
    """
    return {
        "required_tags": request.required_tags,
        "stack_instance": request.stack_instance,
        "services": {
            spec.alias: {
                "service": spec.service,
                "functional_requirements": {
                    fr: spec.invocations.get(fr, {}) for fr in spec.functional_requirements
                },
                "resource_requirements": spec.resource_requirements,
                "params": spec.params,
            }
            for spec in request.services
        },
        "infrastructure_targets": {name: _target_input(name, cap) for name, cap in request.targets.items()},
    }


def _replica_count(request: PlacementRequest, alias: str) -> int:
    count = request.replicas.get(alias, 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise errors.InvalidDocument(
            errors=[{"loc": ["body", "replicas", alias], "msg": "must be an integer ≥ 0", "type": "range"}]
        )
    return count


class _Placer:
    """One run of place(): the alias views and the lazily built policy input."""

    def __init__(self, request: PlacementRequest, engine: PolicyEngine) -> None:
        self.request = request
        self.engine = engine
        self.index = TargetIndex.build(request.targets)
        self.explainer = Explainer(self.index.names, self.index.position)
        self.notes: list[str] = []
        self.views: list[AliasView] = []
        self._base: dict[str, Any] | None = None
        self.counts = {spec.alias: _replica_count(request, spec.alias) for spec in request.services}

    @property
    def base(self) -> dict[str, Any]:
        if self._base is None:
            self._base = policy_input_base(self.request)
        return self._base

    def explain(self) -> dict[str, Any]:
        inputs = {**self.request.inputs_meta, "required_tags": dict(self.request.required_tags)}
        inputs["replicas"] = dict(self.counts)
        return self.explainer.document(
            self.views, evaluated_at=self.request.evaluated_at, inputs=inputs, notes=self.notes
        )

    def evaluate(self, policy: Policy, rule: str, input_doc: Mapping[str, Any]) -> PolicyDecision:
        try:
            return self.engine.evaluate(policy, rule, input_doc, timeout_s=self.request.policy_timeout_s)
        except errors.PolicyError as exc:
            # The engine names the policy; lifecycle.md §3.13 adds the kind and, for an overrun, the input size.
            prefix = f"policy {policy.name} "
            if not exc.message.startswith(prefix) or exc.message.startswith(f"{prefix}({rule})"):
                raise
            rest = exc.message[len(prefix) :]
            if rest.startswith("did not finish"):
                rest += f" on {len(self.request.targets)} targets"
            raise errors.PolicyError(
                f"{prefix}({rule}) {rest}", policy=policy.name, errors=exc.errors
            ) from None

    # --- step 4: native checks, or the user's orchestration policy ---------------------------------------

    def screen(self) -> None:
        override = self.request.overrides.get(ORCHESTRATION)
        screenings = self._orchestration(override) if override else None
        screener = Screener(self.index, self.request.required_tags)
        for spec in self.request.services:
            if screenings is None:
                screening = screener.screen(
                    Profile.of(self.index, spec.resource_requirements, spec.functional_requirements)
                )
            else:
                screening = screenings[spec.alias]
            view = AliasView(
                spec.alias, spec.service, self.counts[spec.alias], screening, screening.candidates
            )
            self.views.append(view)
        empty = [view.alias for view in self.views if not view.candidates and view.replicas > 0]
        if empty:
            raise errors.PlacementFailed(f"Could not find a target for services {services_text(empty)}")

    def _orchestration(self, policy: Policy) -> dict[str, Screening]:
        decision = self.evaluate(policy, "solutions", self.base)
        if not decision.defined:
            raise rules.invalid(policy.name, "solutions is undefined")
        if not isinstance(decision.value, Mapping):
            raise rules.invalid(policy.name, "expected an object of service → targets")
        passed = rules.check(f"policy:{policy.name}", True)
        failed = rules.check(f"policy:{policy.name}", False, ["not among the policy's targets"])
        shared: dict[frozenset[str], Screening] = {}
        result: dict[str, Screening] = {}
        for spec in self.request.services:
            listed = decision.value.get(spec.alias) or []
            if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
                raise rules.invalid(policy.name, f"solutions[{spec.alias}] is not a list of target names")
            names = frozenset(listed)
            if names not in shared:
                group_of = [0 if name in names else 1 for name in self.index.names]
                candidates = [name for name in self.index.names if name in names]
                shared[names] = Screening(group_of, [True, False], [[passed], [failed]], candidates)
            result[spec.alias] = shared[names]
        return result

    # --- step 5: SAT policies ------------------------------------------------------------------------------

    def sat_policies(self) -> None:
        views = {view.alias: view for view in self.views}
        for use in self.request.sat_policies:
            name, alias = use.policy.name, use.attributes.get("service")
            view = views.get(alias) if isinstance(alias, str) else None
            if view is None:
                self.notes.append(f"policy {name}: service {alias} is not part of this instance, skipped")
                continue
            input_doc = {
                **self.base,
                "parameters": use.attributes,
                "user_parameters": self.request.user_parameters,
                "replicas": self.request.replicas,
                "candidates": list(view.candidates),
            }
            decision = self.evaluate(use.policy, "solutions", input_doc)
            try:
                listed = rules.read_solutions(name, decision, use.policy.outputs)
            except errors.PlacementFailed as exc:
                refused = rules.check(f"policy:{name}", False, [exc.message])
                self._narrow(view, [], refused, refused)
                raise
            self._narrow(
                view,
                listed,
                rules.check(f"policy:{name}", True),
                rules.check(f"policy:{name}", False, ["not among the policy's targets"]),
            )

    @staticmethod
    def _narrow(
        view: AliasView,
        listed: Sequence[tuple[str, Mapping[str, Any]]],
        passed: rules.Check,
        failed: rules.Check,
    ) -> None:
        names = {target for target, _ in listed}
        kept: list[str] = []
        for target in view.candidates:
            keep = target in names
            view.extra.setdefault(target, []).append(passed if keep else failed)
            if keep:
                kept.append(target)
            else:
                view.removed.add(target)
        current = set(kept)
        for target, outputs in listed:
            if target in current and outputs:
                view.outputs.setdefault(target, {}).update(outputs)  # a later policy wins per key
        view.candidates = kept

    # --- step 6: replicas, or the user's replicas policy ---------------------------------------------------

    def replicas(self) -> None:
        override = self.request.overrides.get(REPLICAS)
        if override is not None:
            self._replicas_policy(override)
            return
        short: list[str] = []
        impossible: list[AliasView] = []
        for view in self.views:
            wanted = view.replicas
            keep = list(self.request.existing.get(view.alias, ()))[:wanted]
            if keep:
                current = set(view.candidates)
                view.invalid = [{"replica": i, "target": t} for i, t in enumerate(keep) if t not in current]
                if view.invalid:
                    impossible.append(view)
                    continue
            kept = set(keep)
            fresh = (t for t in view.candidates if t not in kept)
            chosen = keep + list(islice(fresh, wanted - len(keep)))
            if len(chosen) < wanted:
                view.short = True
                short.append(view.alias)
            else:
                view.chosen = chosen
        if impossible:
            raise errors.PlacementFailed(UPDATE_IMPOSSIBLE)
        if short:
            raise errors.PlacementFailed(f"Not enough targets for services {services_text(short)}")

    def _replicas_policy(self, policy: Policy) -> None:
        input_doc = {
            "parameters": {"services": {view.alias: view.replicas for view in self.views}},
            "services": {
                view.alias: {"service": view.service, "targets": view.candidates} for view in self.views
            },
        }
        value = self.evaluate(policy, "solutions", input_doc)
        if not value.defined or not isinstance(value.value, Mapping):
            raise rules.invalid(policy.name, "expected an object with fulfilled")
        fulfilled = value.value.get("fulfilled")
        if not isinstance(fulfilled, bool):
            raise rules.invalid(policy.name, "fulfilled is missing or not a boolean")
        if not fulfilled:
            raise errors.PlacementFailed(rules.as_text(value.value.get("msg", "")))
        services = value.value.get("services")
        if not isinstance(services, Mapping):
            raise rules.invalid(policy.name, "services is not an object of service → targets")
        chosen_check = rules.check("replicas", True, [f"chosen by policy {policy.name}"])
        for view in self.views:
            listed = services.get(view.alias) or []
            if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
                raise rules.invalid(policy.name, f"services[{view.alias}] is not a list of target names")
            current = set(view.candidates)
            view.chosen = [t for t in dict.fromkeys(listed) if t in current]
            view.spare = f"not chosen by policy {policy.name}"
            for target in view.chosen:
                view.extra.setdefault(target, []).append(chosen_check)

    # --- step 7: SIT policies ------------------------------------------------------------------------------

    def sit_policies(self) -> None:
        chosen = dict.fromkeys(target for view in self.views for target in view.chosen or ())
        messages: list[str] = []
        for target in chosen:
            policies = self.request.targets[target].get("policies") or {}
            found_checks: list[rules.Check] = []
            for name, attributes in policies.items():
                policy = self.request.policies.get(name)
                if policy is None:
                    raise errors.PolicyError(
                        f"policy {name} (infringement) failed: it does not exist", policy=name
                    )
                input_doc = {
                    **self.base,
                    "parameters": attributes,
                    "stack_instance_params": self.request.user_parameters,
                    "target": target,
                }
                found = rules.read_infringements(name, self.evaluate(policy, "infringement", input_doc))
                found_checks.append(rules.check(f"sit_policy:{name}", not found, found or None))
                messages.extend(found)
            for view in self.views:
                if target in (view.chosen or ()):
                    view.sit[target] = found_checks
        if messages:
            raise errors.PlacementFailed("\n".join(dict.fromkeys(messages)))

    def result(self) -> Placement:
        targets = {view.alias: list(view.chosen or ()) for view in self.views}
        outputs: dict[str, dict[str, dict[str, Any]]] = {}
        for view in self.views:
            for target in view.chosen or ():
                if view.outputs.get(target):
                    outputs.setdefault(view.alias, {})[target] = dict(view.outputs[target])
        return Placement(targets=targets, outputs=outputs, explanation=self.explain())


def place(request: PlacementRequest, engine: PolicyEngine) -> Placement:
    """Place every replica of every alias of `request` (lifecycle.md §3.1 steps 4-7).

    Args:
        request: the resolved documents and parameters of the instance.
        engine: evaluates the SAT, SIT and override policies.

    Returns:
        Targets per alias (by replica index), SAT policy outputs per (alias, target) of the chosen targets,
        and the explanation of §3.10.

    Raises:
        PlacementFailed: no valid placement; the detail is one of §3.11, the explanation is attached.
        PolicyError: a policy failed or returned an invalid result; the explanation so far is attached.
        InvalidDocument: a replica count is negative or not an integer.
    """
    with _cyclic_gc_paused():
        return _place(request, engine)


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = True


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the explanation is built.

    The explanation of 100 services x 10,000 targets holds about a million small, acyclic objects; the
    collector would rescan them over and over as they are allocated (most of the time of a large placement)
    while reference counting frees them anyway. Nested and concurrent placements share one pause.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        _gc_pausers += 1
        if _gc_pausers == 1:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _place(request: PlacementRequest, engine: PolicyEngine) -> Placement:
    placer = _Placer(request, engine)
    try:
        placer.screen()
        placer.sat_policies()
        placer.replicas()
        placer.sit_policies()
    except errors.PlacementFailed as exc:
        exc.explanation = exc.explanation or placer.explain()
        raise
    except errors.PolicyError as exc:
        if exc.explanation is None:
            exc.explanation = placer.explain()
        raise
    return placer.result()
