"""The step plan: an operation expanded into ordered groups of steps (lifecycle.md §4.1).

A step is (alias, replica, functional requirement, action) with id ``<alias>/<replica>/<fr>``. Groups run one
after another: one per stage (request stages, else the SAT's, then an implicit final stage for aliases in no
stage), or one per alias in declared order without stages. Inside a group replicas run in parallel and each
replica's FRs in declared order. An ``as_group`` FR runs once per alias on replica 0's agent after every
replica's earlier FRs, with the comma-joined targets. This module only orders and labels steps; what each step
receives is resolved elsewhere.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stackl import errors

IMPLICIT_STAGE = "implicit"


@dataclass(frozen=True, slots=True)
class ReplicaPlacement:
    """Where one replica of an alias runs."""

    target: str
    agent: str
    cloud_provider: str


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One step of the plan, as ``POST /stack_instances/plan`` shows it."""

    id: str
    service: str
    replica: int
    infrastructure_target: str
    functional_requirement: str
    action: str
    tool: str | None
    agent: str
    decision: str  # run | unchanged | skip
    reason: str

    def view(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StepGroup:
    """Steps that may run together; groups run in order."""

    stage: str
    steps: list[PlannedStep]

    def view(self) -> dict[str, Any]:
        return {"stage": self.stage, "steps": [step.view() for step in self.steps]}


def stage_groups(
    aliases: Sequence[str], stages: Sequence[tuple[str, Sequence[str]]]
) -> list[tuple[str, list[str]]]:
    """Aliases grouped in execution order: the stages, then the implicit stage; or one group per alias.

    Raises:
        InvalidDocument: a stage names an unknown alias, or an alias appears in two stages.
    """
    if not stages:
        return [(alias, [alias]) for alias in aliases]
    problems: list[errors.ErrorItem] = []
    placed: dict[str, str] = {}
    groups: list[tuple[str, list[str]]] = []
    for index, (name, members) in enumerate(stages):
        group: list[str] = []
        for position, alias in enumerate(members):
            loc = ["body", "stages", index, "services", position]
            if alias not in aliases:
                problems.append(
                    {"loc": loc, "msg": f"unknown service alias {alias!r}", "type": "unknown_alias"}
                )
            elif alias in placed:
                problems.append(
                    {
                        "loc": loc,
                        "msg": f"{alias!r} is already in stage {placed[alias]!r}",
                        "type": "duplicate",
                    }
                )
            else:
                placed[alias] = name
                group.append(alias)
        groups.append((name, group))
    if problems:
        raise errors.InvalidDocument(f"stages: {'; '.join(p['msg'] for p in problems)}", errors=problems)
    rest = [alias for alias in aliases if alias not in placed]
    if rest:
        groups.append((IMPLICIT_STAGE, rest))
    return groups


ToolOf = Callable[[str, str], str | None]
"""(functional requirement, cloud provider) → the invocation's tool, or None when there is no invocation."""

Decide = Callable[[str, int, str], tuple[str, str]]
"""(alias, replica, functional requirement) → (decision, reason) for the step."""


def create_plan(
    groups: Sequence[tuple[str, Sequence[str]]],
    replicas: Mapping[str, Sequence[ReplicaPlacement]],
    functional_requirements: Mapping[str, Sequence[str]],
    as_group: Mapping[str, bool],
    tool_of: ToolOf,
    decide: Decide,
    *,
    action: str = "create",
) -> list[StepGroup]:
    """The plan of an operation that runs every step with one action (create, or a forced re-run).

    Args:
        groups: aliases by group, in order (see `stage_groups`).
        replicas: alias → its replicas' placements, by replica index.
        functional_requirements: alias → its service's FR names in declared order.
        as_group: FR name → whether it runs once for all replicas.
        tool_of: the tool a step runs with.
        decide: the decision and reason for a step (``run``, or ``skip`` by a service policy).
        action: the action of every step.
    """
    plan: list[StepGroup] = []
    for stage, aliases in groups:
        steps: list[PlannedStep] = []
        for alias in aliases:
            placed = list(replicas.get(alias, ()))
            if not placed:
                continue
            for index, replica in enumerate(placed):
                for fr in functional_requirements.get(alias, ()):
                    if as_group.get(fr, False) and index > 0:
                        continue
                    target = ",".join(r.target for r in placed) if as_group.get(fr, False) else replica.target
                    tool = tool_of(fr, replica.cloud_provider)
                    decision, reason = decide(alias, index, fr)
                    if tool is None and decision == "run":
                        reason = f"no invocation for cloud provider {replica.cloud_provider}"
                    steps.append(
                        PlannedStep(
                            id=f"{alias}/{index}/{fr}",
                            service=alias,
                            replica=index,
                            infrastructure_target=target,
                            functional_requirement=fr,
                            action=action,
                            tool=tool,
                            agent=replica.agent,
                            decision=decision,
                            reason=reason,
                        )
                    )
        if steps:
            plan.append(StepGroup(stage, steps))
    return plan
