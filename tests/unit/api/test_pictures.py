"""The SVG pictures of the UI (api/ui/pictures.py) from plain data: shapes, statuses, escaping, limits."""

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

from stackl.api.ui import pictures

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def instance() -> dict[str, object]:
    def replica(service: str, target: str, **extra: object) -> dict[str, object]:
        return {"service": service, "infrastructure_target": target, "provisioning_parameters": {}, **extra}

    return {
        "name": "shop",
        "stages": [{"name": "data", "services": ["db"]}, {"name": "front", "services": ["web"]}],
        "services": {
            "db": [replica("postgres", "production.brussels.dmz", outputs={"db_host": "10.0.0.5"})],
            "web": [
                replica("nginx", "production.brussels.dmz", provisioning_parameters={"db_host": "10.0.0.5"}),
                replica("nginx", "staging.ghent.<b>", provisioning_parameters={"db_host": "other"}),
            ],
        },
        "status": [
            {"service": "db", "replica": 0, "functional_requirement": "pg", "status": "READY"},
            {"service": "web", "replica": 0, "functional_requirement": "conf", "status": "FAILED"},
            {"service": "web", "replica": 1, "functional_requirement": "conf", "status": "in_progress"},
        ],
    }


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # noqa: S314 - our own output: it must be well-formed XML


NS = "{http://www.w3.org/2000/svg}"


def test_topology_has_a_node_per_replica_by_stage_coloured_by_status_and_the_wired_outputs() -> None:
    svg = str(pictures.topology(instance()))
    root = parse(svg)
    nodes = {g.get("data-node"): g.get("data-status") for g in root.iter(f"{NS}g")}
    assert nodes == {"db/0": "READY", "web/0": "FAILED", "web/1": "in_progress"}
    edges = [p for p in root.iter(f"{NS}path") if p.get("class") == "pic-edge"]
    assert len(edges) == 1  # only web[0] received db's output db_host (web[1] has another value)
    assert "db[0] → web[0]: db_host" in (edges[0].findtext(f"{NS}title") or "")
    heads = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "pic-head"]
    assert heads == ["data", "front"]
    assert "&lt;b&gt;" in svg  # document text is escaped
    assert root.get("role") == "img"


def test_timeline_draws_the_wait_and_the_run_of_every_attempt() -> None:
    bars = [
        pictures.Bar("db[0]/pg", 1, "READY", T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=12)),
        pictures.Bar(
            "web[0]/conf",
            1,
            "FAILED",
            T0 + timedelta(seconds=12),
            T0 + timedelta(seconds=13),
            T0 + timedelta(seconds=20),
        ),
        pictures.Bar(
            "web[0]/conf", 2, "in_progress", T0 + timedelta(seconds=20), T0 + timedelta(seconds=25), None
        ),
        pictures.Bar("web[1]/conf", 1, "in_progress", T0 + timedelta(seconds=12), None, None),
    ]
    root = parse(str(pictures.timeline(bars, T0 + timedelta(seconds=40), "Timeline of task T")))
    groups = list(root.iter(f"{NS}g"))
    assert [(g.get("data-step"), g.get("data-attempt"), g.get("data-status")) for g in groups] == [
        ("db[0]/pg", "1", "READY"),
        ("web[0]/conf", "1", "FAILED"),
        ("web[0]/conf", "2", "in_progress"),
        ("web[1]/conf", "1", "in_progress"),
    ]
    assert groups[0].findtext(f"{NS}title") == "db[0]/pg: READY, waited 2 s, ran 10 s"
    assert len(groups[3].findall(f"{NS}rect")) == 1  # still queued: a wait, no run
    runs = [r for g in groups for r in g.findall(f"{NS}rect") if r.get("class") != "pic-wait"]
    assert [r.get("class") for r in runs] == ["st-ready", "st-failed", "st-running"]


def test_placement_matrix_has_a_cell_per_candidate_with_the_deciding_rule() -> None:
    explanation: list[dict[str, Any]] = [
        {
            "alias": "web",
            "candidates": [
                ("prod.a.z", {"result": "chosen", "replica": 0, "checks": []}),
                ("prod.b.z", {"result": "spare", "checks": []}),
                (
                    "prod.c.z",
                    {
                        "result": "rejected",
                        "checks": [
                            {"check": "resources", "result": "pass"},
                            {"check": "tags", "result": "fail", "details": ["tag tier=web missing"]},
                        ],
                    },
                ),
            ],
        },
        {"alias": "db", "candidates": [("prod.a.z", {"result": "chosen", "replica": 0, "checks": []})]},
    ]
    root = parse(str(pictures.placement_matrix(explanation)))
    cells = {(r.get("data-alias"), r.get("data-target")): r for r in root.iter(f"{NS}rect")}
    assert {k: v.get("data-result") for k, v in cells.items()} == {
        ("web", "prod.a.z"): "chosen",
        ("web", "prod.b.z"): "spare",
        ("web", "prod.c.z"): "rejected",
        ("db", "prod.a.z"): "chosen",
    }
    assert cells["web", "prod.c.z"].findtext(f"{NS}title") == (
        "web on prod.c.z: rejected (tags: tag tier=web missing)"
    )


def test_big_instances_are_capped_and_empty_ones_say_so() -> None:
    services = {f"s{i}": [{"service": "x", "infrastructure_target": f"e.l.z{i % 7}"}] for i in range(500)}
    svg = str(pictures.topology({"name": "big", "services": services, "status": []}))
    assert len(re.findall(r'class="pic-node"', svg)) == pictures.MAX_NODES
    assert "No services placed" in str(pictures.topology({"services": {}}))
    assert "No step has been dispatched" in str(pictures.timeline([], T0, "t"))
    assert "No placement explanation" in str(pictures.placement_matrix([]))
