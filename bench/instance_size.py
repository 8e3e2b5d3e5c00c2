"""Instance size: what one deployment costs per step as the instance grows (issue 15, defect 7).

A `stackl server` on SQLite (its in-process worker) and one `stackl agent --executor mock --max-jobs 16` deploy
one instance of N services x 1 functional requirement (a mock invocation that takes no time; no stages, so the
N aliases run one after another: N dispatches in a row). For each N it reports:

- **steps/s**: N steps over the task's run time (its `started_at` to `finished_at`); the request itself
  (validation, placement, the first write of the instance) is shown apart;
- **database**: the growth of the SQLite database (pages in use) during the deployment, in total and per step;
- **revisions**: how many revisions of the instance the deployment wrote.

The **baseline** is the smallest instance (10 services), run in this process first; the ratio column is
each row's time per step (and bytes per step) divided by the baseline's. Constant costs per step give ratios
near 1: before step progress was stored apart from revisions, each step change stored a full copy of the
instance (1,000 services: 1,183 revisions and 1.07 GB for 170 steps, 0.7 steps/s).

    python -m bench.instance_size [--quick] [--sizes 10,1000]
"""

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import header, table
from bench.servers import start_mock_agent, start_server, stop

AGENT = "bench-agent"
FINAL = ("succeeded", "failed", "cancelled")
POLL_S = 1.0


def documents(services: int) -> list[dict[str, Any]]:
    mock = {"generic": {"tool": "shell", "command": "true", "mock_duration": 0}}
    return [
        {"name": "bench", "type": "environment"},
        {"name": "here", "type": "location", "agent": AGENT},
        {"name": "z", "type": "zone"},
        {"name": "bench", "type": "stack_infrastructure_template",
         "infrastructure_targets": [{"environment": "bench", "location": "here", "zone": "z"}]},
        {"name": "fr", "type": "functional_requirement", "invocation": mock},
        {"name": "svc", "type": "service", "functional_requirements": ["fr"]},
        {"name": f"app{services}", "type": "stack_application_template",
         "services": [{"name": f"s{i}", "service": "svc"} for i in range(services)]},
        {"name": "app1", "type": "stack_application_template", "services": [{"name": "s0", "service": "svc"}]},
    ]  # fmt: skip


def database_bytes(data_dir: Path) -> int:
    """The size of the SQLite database as a reader sees it now (its write-ahead log included)."""
    db = sqlite3.connect(f"file:{data_dir / 'stackl.db'}?mode=ro", uri=True)
    try:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    return int(pages) * int(size)


async def _run(client: httpx.AsyncClient, name: str, sat: str) -> tuple[float, float]:
    """Deploy one instance and wait for its task's end; (the request's time, the task's run time)."""
    start = time.perf_counter()
    body = {
        "stack_instance_name": name,
        "stack_application_template": sat,
        "stack_infrastructure_template": "bench",
    }
    response = await client.post("/stack_instances", json=body)
    response.raise_for_status()
    requested = time.perf_counter() - start
    # Polled once a second, not long-polled: a task view reads the whole instance, and the bench measures the
    # deployment, not its observer.
    while True:
        task = (await client.get(response.headers["Location"])).json()
        if task["state"] in FINAL:
            break
        await asyncio.sleep(POLL_S)
    if task["state"] != "succeeded":
        raise SystemExit(f"{name}: task {task['state']}: {task.get('error')}")
    ran = datetime.fromisoformat(task["finished_at"]) - datetime.fromisoformat(task["started_at"])
    return requested, ran.total_seconds()


async def _deploy(url: str, data_dir: Path, services: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        (await client.post("/documents", json=documents(services))).raise_for_status()
        await _run(client, "warmup", "app1")  # the agent has registered and claims
        name = f"size-{services}"
        before = database_bytes(data_dir)
        requested, wall = await _run(client, name, f"app{services}")
        stored = (await client.get(f"/documents/stack_instance/{name}")).json()
        return {
            "services": services,
            "wall": wall,
            "requested": requested,
            "steps_per_s": services / wall,
            "bytes": database_bytes(data_dir) - before,
            "revisions": stored["metadata"]["revision"],  # a new instance: its revisions count from 1
        }


def run(services: int) -> dict[str, Any]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server, url = start_server(tmp / "server", None)
        stack.callback(stop, server)
        stack.callback(stop, start_mock_agent(AGENT, url, tmp / "agent", max_jobs=16))
        return asyncio.run(_deploy(url, tmp / "server", services))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 40 services")
    parser.add_argument("--sizes", default="10,1000", help="instance sizes, the first one is the baseline")
    args = parser.parse_args(argv)
    sizes = [10, 40] if args.quick else [int(s) for s in args.sizes.split(",")]
    header(f"instance size: one deployment of N services x 1 FR on SQLite, mock agent; N = {sizes}")
    base = run(sizes[0])
    rows: list[Sequence[object]] = []
    for result in [base, *(run(n) for n in sizes[1:])]:
        per_step = result["wall"] / result["services"]
        bytes_per_step = result["bytes"] / result["services"]
        rows.append(
            (
                f"{result['services']} services",
                f"{result['steps_per_s']:.1f} steps/s",
                f"{result['requested']:.1f} s",
                f"{result['bytes'] / 1e6:.1f} MB ({bytes_per_step / 1e3:.1f} kB/step)",
                result["revisions"],
                f"{per_step / (base['wall'] / base['services']):.1f}x",
                f"{bytes_per_step / (base['bytes'] / base['services']):.1f}x",
            )
        )
    table(
        rows,
        [
            "instance",
            "steps/s",
            "request",
            "database growth",
            "revisions",
            "time/step vs base",
            "bytes/step vs base",
        ],
    )


if __name__ == "__main__":
    main()
