"""Model drift: does a stack instance still match the model it was deployed from? Nothing is written here.

An environment, location, zone, SIT, SAT, service, FR or policy template changed since an instance was
deployed: its placement may no longer hold, or its steps' resolved inputs may differ. ``check`` answers that
for one instance by preparing an update with an empty body (``updates.prepare``, which computes the plan
without writing), and flags the instance ``drifted`` when:

- placement fails: an existing replica's target is no longer a candidate (``Update impossible…``) or no
  placement is feasible; the reason is the placement's message;
- a step would run: its inputs changed (resolved parameters, invocation, hosts…), or a step would be
  created or deleted because a service's functional requirements changed.

The proposed plan is that update's plan. Applying it is an explicit ``PUT /stack_instances`` with the
instance's name (``stackl drift NAME --apply``). ``check_many`` re-evaluates the instances that depend on a
changed document (through the recorded references, transitively: zone → SIT → instance, FR → service → SAT →
instance, policy → whatever names it) or all of them.
"""

from collections.abc import Sequence
from typing import Any

import structlog

from stackl import errors
from stackl.broker.base import State
from stackl.datastore.base import ListQuery, StoredDocument
from stackl.domain.clock import rfc3339
from stackl.domain.instances import parse_request
from stackl.usecases import instances, updates
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

log = structlog.get_logger(__name__)

SI = "stack_instance"
_MAX_DEPTH = 6  # policy → service → SAT → instance is 3; a margin for longer chains


def _reasons(answer: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(drift reasons, ids of steps that would run) from a prepared update's plan."""
    reasons: list[str] = []
    running: list[str] = []
    for group in answer.get("plan") or []:
        for step in group.get("steps") or []:
            if step.get("decision") != "run":
                continue
            reason = str(step.get("reason") or "")
            if reason.startswith("inputs changed") or step.get("action") in ("create", "delete"):
                reasons.append(f"{step['id']}: {reason or step.get('action')}")
                running.append(str(step["id"]))
    return reasons, running


async def _busy(ports: Ports, name: str) -> bool:
    states: tuple[State, ...] = ("queued", "running")
    for state in states:
        if await ports.broker.list(queue=TASKS_QUEUE, state=state, unique_key=instances.unique_key(name)):
            return True
    return False


async def check_stored(ports: Ports, stored: StoredDocument) -> dict[str, Any]:
    """The drift report of one stored instance (see the module docstring)."""
    name = stored.name
    report: dict[str, Any] = {
        "stack_instance": name,
        "revision": stored.revision,
        "checked_at": rfc3339(ports.clock.now()),
        "drifted": False,
        "busy": False,
        "reasons": [],
        "changes": {},
        "plan": [],
    }
    if await _busy(ports, name):
        report["busy"] = True  # a task is changing it: drift is judged once it is done
        return report
    request = parse_request({"stack_instance_name": name}, operation="update", plan=True)
    try:
        prepared = await updates.prepare(ports, request, stored)
    except errors.PlacementFailed as exc:
        report.update(drifted=True, reasons=[f"placement: {exc.message}"])
        return report
    except errors.InvalidInput as exc:  # a template or service it uses is gone or invalid now
        report.update(drifted=True, reasons=[f"model: {exc.message}"])
        return report
    answer = prepared.answer
    report["changes"] = answer.get("changes", {})
    if not answer.get("feasible", True):
        report.update(drifted=True, reasons=[f"placement: {answer.get('detail') or 'no valid placement'}"])
        return report
    reasons, _ = _reasons(answer)
    report.update(drifted=bool(reasons), reasons=reasons, plan=answer.get("plan", []) if reasons else [])
    return report


async def check(ports: Ports, name: str) -> dict[str, Any]:
    """The drift report of one instance.

    Raises:
        InstanceNotFound: no such instance.
    """
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type=SI, name=name)
    if stored is None:
        raise errors.InstanceNotFound(f"Stack instance {name} not found")
    return await check_stored(ports, stored)


async def dependents(ports: Ports, doc_type: str, name: str) -> list[str]:
    """The stack instances that depend on a document, through references, transitively (sorted)."""
    if doc_type == SI:
        return [name]
    found: set[str] = set()
    seen: set[tuple[str, str]] = {(doc_type, name)}
    frontier = [(doc_type, name)]
    async with ports.store.transaction(readonly=True) as tx:
        for _ in range(_MAX_DEPTH):
            following: list[tuple[str, str]] = []
            for key in frontier:
                for ref in await tx.referrers(doc_type=key[0], name=key[1]):
                    source = (ref.type, ref.name)
                    if source in seen:
                        continue
                    seen.add(source)
                    if ref.type == SI:
                        found.add(ref.name)
                    else:
                        following.append(source)
            if not following:
                break
            frontier = following
    return sorted(found)


async def _all_instances(ports: Ports) -> list[StoredDocument]:
    out: list[StoredDocument] = []
    async with ports.store.transaction(readonly=True) as tx:
        cursor: str | None = None
        while True:
            page = await tx.list(ListQuery(types=(SI,), limit=200, cursor=cursor))
            out += page.items
            cursor = page.next_cursor
            if not cursor or not page.items:
                return out


async def check_many(
    ports: Ports,
    *,
    names: Sequence[str] | None = None,
    changed: tuple[str, str] | None = None,
    include_clean: bool = False,
) -> list[dict[str, Any]]:
    """Drift reports of the given instances, of those depending on ``changed``, or of all.

    Only the drifted ones unless ``include_clean``.
    """
    wanted: set[str] | None = set(names) if names else None
    if changed is not None:
        deps = set(await dependents(ports, *changed))
        wanted = deps if wanted is None else wanted & deps
    reports = []
    for stored in await _all_instances(ports):
        if wanted is not None and stored.name not in wanted:
            continue
        if stored.body.get("deleted"):
            continue
        report = await check_stored(ports, stored)
        if report["drifted"] or include_clean:
            reports.append(report)
    if reports:
        log.info("drift_checked", drifted=sum(1 for r in reports if r["drifted"]), checked=len(reports))
    return reports
