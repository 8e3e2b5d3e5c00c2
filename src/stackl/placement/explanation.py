"""The placement explanation: per alias and target, which check accepted or rejected it, and why (§3.10).

Every candidate of every alias is listed, so the explanation of 100 services over 10,000 targets holds a
million entries. Most of them are equal: a rejected target's entry depends only on its group and the service's
profile, and so does a spare one's. Those entries are built once per (screening, note) as a name → entry dict
that each alias copies (a C-level copy) before replacing the few entries that are its own: chosen targets,
targets a policy touched, and a shortage. Entries and check lists are therefore shared between aliases and
targets: the document is read-only (serialise or deep-copy it before changing anything).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackl.placement.index import Screening
from stackl.placement.rules import Check

Entry = dict[str, Any]


def plural(count: int, word: str) -> str:
    """``1 replica``, ``2 replicas``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def spare_note(replicas: int) -> str:
    """The detail of a candidate that passed everything but was not needed."""
    return f"not needed for {plural(replicas, 'replica')}"


def services_text(aliases: Iterable[str]) -> str:
    """``{"db", "web"}``: the aliases of a failure message, sorted."""
    return "{" + ", ".join(f'"{alias}"' for alias in sorted(set(aliases))) + "}"


@dataclass(slots=True)
class AliasView:
    """What placement decided so far for one alias; the explanation is rendered from it."""

    alias: str
    service: str
    replicas: int
    screening: Screening
    candidates: list[str]  # the current candidates, in candidate order
    extra: dict[str, list[Check]] = field(default_factory=dict)  # policy checks after the native ones
    removed: set[str] = field(default_factory=set)  # passed natively, then narrowed out by a policy
    chosen: list[str] | None = None  # None until the replicas step ran
    short: bool = False  # fewer candidates than replicas
    spare: str | None = None  # the spare detail when not the default one
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # SAT policy outputs per target
    sit: dict[str, list[Check]] = field(default_factory=dict)  # SIT policy checks per chosen target
    invalid: list[dict[str, Any]] = field(default_factory=list)  # update: replicas no longer placeable


class Explainer:
    """Renders alias views over one index's target names, sharing the entries they have in common."""

    def __init__(self, names: Sequence[str], position: Mapping[str, int]) -> None:
        self.names = names
        self.position = position
        self._bases: dict[tuple[int, str | None], dict[str, Entry]] = {}
        self._keep: list[Screening] = []  # keeps id() keys alive and unique

    def _base(self, screening: Screening, note: str | None) -> dict[str, Entry]:
        key = (id(screening), note)
        base = self._bases.get(key)
        if base is None:
            self._keep.append(screening)
            shared: dict[tuple[int, bool], Entry] = {}  # groups with the same checks share one entry
            entries: list[Entry] = []
            for ok, checks in zip(screening.passed, screening.checks, strict=True):
                entry = shared.get((id(checks), ok))
                if entry is None:
                    entry = {"result": "spare" if ok else "rejected", "checks": checks}
                    if ok and note is not None:
                        entry["details"] = [note]
                    shared[id(checks), ok] = entry
                entries.append(entry)
            base = self._bases[key] = dict(
                zip(self.names, map(entries.__getitem__, screening.group_of), strict=True)
            )
        return base

    def candidates(self, view: AliasView) -> dict[str, Entry]:
        """Target → entry for every target, in candidate order."""
        reached = view.chosen is not None and not view.short
        note = (view.spare or spare_note(view.replicas)) if reached else None
        result = self._base(view.screening, note).copy()
        chosen = {target: i for i, target in enumerate(view.chosen or ())}
        touched = set(view.extra) | view.removed | set(chosen)
        if view.short:
            touched.update(view.candidates)
        shortage = check_shortage(view.replicas, len(view.candidates))
        for target in touched:
            group = view.screening.group_of[self.position[target]]
            checks = view.screening.checks[group] + view.extra.get(target, [])
            entry: Entry
            if not view.screening.passed[group] or target in view.removed:
                entry = {"result": "rejected", "checks": checks}
            elif target in chosen:
                entry = {
                    "result": "chosen",
                    "replica": chosen[target],
                    "checks": checks + view.sit.get(target, []),
                }
                if view.outputs.get(target):
                    entry["outputs"] = dict(view.outputs[target])
            elif view.short:
                entry = {"result": "rejected", "checks": [*checks, shortage]}
            else:
                entry = {"result": "spare", "checks": checks}
                if note is not None:
                    entry["details"] = [note]
            result[target] = entry
        return result

    def service(self, view: AliasView) -> dict[str, Any]:
        """The explanation of one alias."""
        entry: dict[str, Any] = {
            "service": view.service,
            "replicas": view.replicas,
            "targets": list(view.chosen or ()),
            "candidates": self.candidates(view),
        }
        if view.invalid:
            entry["update_impossible"] = list(view.invalid)
        return entry

    def document(
        self,
        views: Iterable[AliasView],
        *,
        evaluated_at: str,
        inputs: Mapping[str, Any],
        notes: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The whole explanation: ``evaluated_at``, ``inputs``, ``services`` and, when any, ``notes``."""
        document: dict[str, Any] = {
            "evaluated_at": evaluated_at,
            "inputs": dict(inputs),
            "services": {view.alias: self.service(view) for view in views},
        }
        if notes:
            document["notes"] = list(notes)
        return document


def check_shortage(replicas: int, left: int) -> Check:
    """The ``replicas`` check of the candidates of an alias that has fewer candidates than replicas."""
    return {
        "check": "replicas",
        "result": "fail",
        "details": [f"needs {plural(replicas, 'replica')}, {plural(left, 'candidate')} left"],
    }
