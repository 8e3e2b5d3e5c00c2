"""Pictures of a stack, drawn on the server as SVG: the topology, a task's timeline, the placement matrix.

People would rather look than read for three questions: what runs where and what feeds what (topology), where
did the time of a deployment go (timeline), and why did a service land on that target (placement matrix). The
pictures are plain SVG built here from the instance's and the explanation's data, so they need no JavaScript,
no library and no network, like the rest of the UI. Colours come from classes in ``stackl.css`` (``st-*``), not
inline styles, so the Content-Security-Policy stays strict; every shape has a ``<title>`` (hover text and an
accessible name) and every picture a ``role="img"`` with a label. Every text that comes from a document is
escaped; sizes are capped (``MAX_*``) so a 1,000-service instance still gives a picture a browser can show.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

MAX_NODES = 300
MAX_BARS = 120
MAX_MATRIX_TARGETS = 60
STATUS_CLASS = {
    "READY": "st-ready",
    "FAILED": "st-failed",
    "in_progress": "st-running",
    "SKIPPED": "st-skipped",
    "chosen": "st-ready",
    "spare": "st-spare",
    "rejected": "st-failed",
}


def _t(value: object) -> str:
    return str(escape(str(value)))


def _svg(width: float, height: float, label: str, body: Iterable[str], css: str) -> Markup:
    return Markup(  # noqa: S704 - every text inside was escaped by _t
        f'<svg class="picture {css}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_t(label)}"'
        f' viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}">'
        f"<title>{_t(label)}</title>" + "".join(body) + "</svg>"
    )


# --- topology -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Node:
    alias: str
    replica: int
    service: str
    target: str
    stage: int
    status: str
    steps: tuple[str, ...]
    outputs: Mapping[str, Any]
    parameters: Mapping[str, Any]


def _replica_status(entries: Sequence[Mapping[str, Any]]) -> str:
    statuses = [str(e.get("status")) for e in entries]
    for status in ("FAILED", "in_progress"):
        if status in statuses:
            return status
    if statuses and all(s == "SKIPPED" for s in statuses):
        return "SKIPPED"
    return "READY" if statuses else "SKIPPED"


def _stages(body: Mapping[str, Any]) -> dict[str, int]:
    aliases = list(body.get("services") or {})
    order: dict[str, int] = {}
    for index, stage in enumerate(body.get("stages") or []):
        for alias in stage.get("services") or []:
            order.setdefault(str(alias), index)
    last = max(order.values(), default=-1)
    for alias in aliases:  # without stages (or aliases outside them): one column each, in template order
        if alias not in order:
            last += 1
            order[alias] = last
    return order


def _nodes(body: Mapping[str, Any]) -> list[_Node]:
    stage_of = _stages(body)
    by_replica: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for entry in body.get("status") or []:
        key = (str(entry.get("service")), int(entry.get("replica") or 0))
        by_replica.setdefault(key, []).append(entry)
    nodes = []
    for alias, replicas in (body.get("services") or {}).items():
        for index, replica in enumerate(replicas):
            entries = by_replica.get((alias, index), [])
            nodes.append(
                _Node(
                    alias=alias,
                    replica=index,
                    service=str(replica.get("service", "")),
                    target=str(replica.get("infrastructure_target", "")),
                    stage=stage_of.get(alias, 0),
                    status=_replica_status(entries),
                    steps=tuple(f"{e.get('functional_requirement')}: {e.get('status')}" for e in entries),
                    outputs=replica.get("outputs") or {},
                    parameters=replica.get("provisioning_parameters") or {},
                )
            )
    return nodes[:MAX_NODES]


def _edges(nodes: Sequence[_Node]) -> list[tuple[_Node, _Node, list[str]]]:
    """A → B when an output of A reached B as a parameter of the same name and value (B in a later stage)."""
    edges = []
    for source in nodes:
        if not source.outputs:
            continue
        for sink in nodes:
            if sink.stage <= source.stage:
                continue
            keys = sorted(
                k
                for k, v in source.outputs.items()
                if k != "stackl_hosts" and k in sink.parameters and sink.parameters[k] == v
            )
            if keys:
                edges.append((source, sink, keys))
    return edges


def _target_key(target: str) -> tuple[str, str, str]:
    parts = [*target.split("."), "", "", ""][:3]
    return parts[0], parts[1], parts[2]


def topology(body: Mapping[str, Any]) -> Markup:
    """Services as nodes in stage order (columns), on their targets (rows grouped by environment).

    Edges are the outputs wired between them; each node is coloured by the status of its steps.
    """
    nodes = _nodes(body)
    if not nodes:
        return Markup('<p class="muted">No services placed.</p>')
    targets = sorted({n.target for n in nodes}, key=_target_key)
    stages = sorted({n.stage for n in nodes})
    column = {stage: i for i, stage in enumerate(stages)}
    node_w, node_h, col_gap, label_w, head_h, pad = 150, 40, 70, 190, 30, 8
    cells: dict[tuple[str, int], list[_Node]] = {}
    for node in nodes:
        cells.setdefault((node.target, column[node.stage]), []).append(node)
    lane_h = {
        t: max(len(cells.get((t, c), [])) for c in range(len(stages))) * (node_h + pad) + pad for t in targets
    }
    width = label_w + len(stages) * (node_w + col_gap)
    lane_y: dict[str, float] = {}
    y = float(head_h)
    for target in targets:
        lane_y[target] = y
        y += lane_h[target]
    height = y + pad
    stage_names = [s.get("name") for s in body.get("stages") or []]
    out: list[str] = []
    for stage, index in column.items():
        x = label_w + index * (node_w + col_gap)
        name = stage_names[stage] if stage < len(stage_names) and stage_names[stage] else f"stage {stage + 1}"
        out.append(
            f'<text class="pic-head" x="{x + node_w / 2}" y="18" text-anchor="middle">{_t(name)}</text>'
        )
    environment = None
    for target in targets:
        env, location, zone = _target_key(target)
        top = lane_y[target]
        band = "pic-lane-a" if env != environment and environment is not None else "pic-lane"
        environment = env
        out.append(
            f'<rect class="{band}" x="0" y="{top}" width="{width}" height="{lane_h[target]}">'
            f"<title>{_t(target)}</title></rect>"
            f'<text class="pic-label" x="6" y="{top + 16}">{_t(env)}</text>'
            f'<text class="pic-sub" x="6" y="{top + 30}">{_t(" / ".join(p for p in (location, zone) if p))}</text>'
        )
    place: dict[tuple[str, int], tuple[float, float]] = {}
    for (target, index), members in cells.items():
        for slot, node in enumerate(members):
            x = label_w + index * (node_w + col_gap)
            top = lane_y[target] + pad + slot * (node_h + pad)
            place[node.alias, node.replica] = (x, top)
    for source, sink, keys in _edges(nodes):
        x1, y1 = place[source.alias, source.replica]
        x2, y2 = place[sink.alias, sink.replica]
        ax, ay, bx, by = x1 + node_w, y1 + node_h / 2, x2, y2 + node_h / 2
        mid = (ax + bx) / 2
        out.append(
            f'<path class="pic-edge" d="M{ax},{ay} C{mid},{ay} {mid},{by} {bx},{by}" marker-end="url(#pic-arrow)">'
            f"<title>{_t(source.alias)}[{source.replica}] → {_t(sink.alias)}[{sink.replica}]: "
            f"{_t(', '.join(keys))}</title></path>"
        )
    for node in nodes:
        left, top = place[node.alias, node.replica]
        tip = f"{node.alias}[{node.replica}] ({node.service}) on {node.target}: " + "; ".join(node.steps)
        out.append(
            f'<g class="pic-node" data-node="{_t(node.alias)}/{node.replica}" data-status="{_t(node.status)}">'
            f"<title>{_t(tip)}</title>"
            f'<rect class="{STATUS_CLASS.get(node.status, "st-skipped")}" x="{left}" y="{top}" width="{node_w}"'
            f' height="{node_h}" rx="6"/>'
            f'<text class="pic-name" x="{left + 8}" y="{top + 17}">{_t(node.alias)}[{node.replica}]</text>'
            f'<text class="pic-sub" x="{left + 8}" y="{top + 32}">{_t(node.service)}</text></g>'
        )
    marker = (
        '<defs><marker id="pic-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
        ' orient="auto-start-reverse"><path class="pic-arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>'
    )
    label = f"Topology of stack instance {body.get('name', '')}: {len(nodes)} service replicas"
    return _svg(width, height, label, [marker, *out], "topology")


# --- timeline -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt of one step.

    Queued from ``queued`` (its dispatch, or the previous attempt's end); ran from ``started`` to ``ended``
    (None: still running at ``now``).
    """

    label: str
    attempt: int
    status: str
    queued: datetime
    started: datetime | None
    ended: datetime | None


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def timeline(bars: Sequence[Bar], now: datetime, title: str) -> Markup:
    """A Gantt bar per step attempt: the wait in the queue (light), then the run (coloured by status)."""
    if not bars:
        return Markup('<p class="muted">No step has been dispatched yet.</p>')
    bars = list(bars)[:MAX_BARS]
    start = min(b.queued for b in bars)
    end = max(max(b.ended or now, b.started or b.queued) for b in bars)
    span = max((end - start).total_seconds(), 1.0)
    label_w, chart_w, row_h, head_h = 240, 560, 22, 24
    width, height = label_w + chart_w + 20, head_h + len(bars) * row_h + 10

    def x(moment: datetime) -> float:
        return label_w + (moment - start).total_seconds() / span * chart_w

    out = []
    for tick in range(5):
        tx = label_w + tick * chart_w / 4
        out.append(
            f'<line class="pic-grid" x1="{tx}" y1="{head_h - 6}" x2="{tx}" y2="{height}"/>'
            f'<text class="pic-sub" x="{tx}" y="14" text-anchor="middle">{_t(_seconds(span * tick / 4))}</text>'
        )
    for row, bar in enumerate(bars):
        top = head_h + row * row_h
        began = bar.started or bar.ended or now
        finish = bar.ended or now
        wait = (began - bar.queued).total_seconds()
        ran = (finish - began).total_seconds() if bar.started else 0.0
        name = f"{bar.label}" + (f" #{bar.attempt}" if bar.attempt > 1 else "")
        tip = f"{name}: {bar.status}, waited {_seconds(wait)}, ran {_seconds(ran)}"
        waited = max(x(began) - x(bar.queued), 1)
        out.append(
            f'<g class="pic-bar" data-step="{_t(bar.label)}" data-attempt="{bar.attempt}"'
            f' data-status="{_t(bar.status)}"><title>{_t(tip)}</title>'
            f'<text class="pic-label" x="4" y="{top + 15}">{_t(name)}</text>'
            f'<rect class="pic-wait" x="{x(bar.queued):.1f}" y="{top + 5}" width="{waited:.1f}" height="12"/>'
        )
        if bar.started is not None:
            css = STATUS_CLASS.get(bar.status, "st-skipped")
            out.append(
                f'<rect class="{css}" x="{x(began):.1f}" y="{top + 3}" width="{max(x(finish) - x(began), 2):.1f}"'
                ' height="16" rx="2"/>'
            )
        out.append("</g>")
    return _svg(width, height, title, out, "timeline")


# --- placement matrix -----------------------------------------------------------------------------------------
def _deciding(entry: Mapping[str, Any]) -> str:
    for check in entry.get("checks") or []:
        if check.get("result") == "fail":
            details = "; ".join(str(d) for d in check.get("details") or [])
            return f"{check.get('check')}" + (f": {details}" if details else "")
    return "every check passed"


def placement_matrix(explanation: Sequence[Mapping[str, Any]]) -> Markup:
    """Service x target: chosen, spare or rejected; hover a cell for the rule that decided it."""
    targets: list[str] = []
    seen: set[str] = set()
    for service in explanation:
        for target, _entry in service.get("candidates") or []:
            if target not in seen:
                seen.add(target)
                targets.append(target)
    if not explanation or not targets:
        return Markup('<p class="muted">No placement explanation recorded.</p>')
    shown = targets[:MAX_MATRIX_TARGETS]
    longest = max(len(t) for t in shown)  # target names are written at 60°: room above and to the right
    cell, label_w, head_h = 22, 150, min(220, int(longest * 5.6) + 20)
    width = label_w + len(shown) * cell + min(200, int(longest * 3.3) + 10)
    height = head_h + len(explanation) * cell + 10
    out = []
    for index, target in enumerate(shown):
        cx = label_w + index * cell + cell / 2
        out.append(
            f'<text class="pic-sub" transform="translate({cx + 4},{head_h - 6}) rotate(-60)">{_t(target)}</text>'
        )
    for row, service in enumerate(explanation):
        top = head_h + row * cell
        alias = str(service.get("alias", ""))
        out.append(f'<text class="pic-label" x="4" y="{top + 15}">{_t(alias)}</text>')
        entries = dict(service.get("candidates") or [])
        for index, target in enumerate(shown):
            entry = entries.get(target)
            if entry is None:
                continue
            result = str(entry.get("result", ""))
            reason = f"replica {entry.get('replica')}" if result == "chosen" else _deciding(entry)
            out.append(
                f'<rect class="pic-cell {STATUS_CLASS.get(result, "st-skipped")}" data-alias="{_t(alias)}"'
                f' data-target="{_t(target)}" data-result="{_t(result)}" x="{label_w + index * cell + 1}"'
                f' y="{top + 1}" width="{cell - 2}" height="{cell - 2}">'
                f"<title>{_t(alias)} on {_t(target)}: {_t(result)} ({_t(reason)})</title></rect>"
            )
    hidden = len(targets) - len(shown)
    label = f"Placement matrix: {len(explanation)} services x {len(shown)} targets" + (
        f" ({hidden} more targets not drawn)" if hidden else ""
    )
    return _svg(width, height, label, out, "matrix")
