"""The policy-evaluation attack of issue 15 (defect 2), measured against a real `stackl server`.

A viewer sends a burst of concurrent ``POST /policies/evaluate`` calls whose query is a runaway comprehension
(every pair of two ranges, collected: CPU and memory grow with the square of ``--size``). While the burst runs,
an unauthenticated ``GET /healthz`` and an admin's authorized ``GET /auth/tokens`` are probed every
``PROBE_INTERVAL_S``; the table says how many probes answered 200 and the slowest one. The server's resident
memory (its own process, and its children's: the evaluation processes) is read from ``/proc`` before the
burst, right after it, and once the server has been idle for ``SETTLE_S``.

    python -m bench.policy_dos                 # 4 calls, size 1500
    python -m bench.policy_dos --calls 8 --size 2000
    python -m bench.policy_dos --quick         # 2 calls, size 600: it runs, figures only
"""

import argparse
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness import header, table
from bench.servers import clean_env, start_server, stop

PROBE_INTERVAL_S = 0.25
SETTLE_S = 5.0
RUNAWAY = "count([[a, b] | some a in numbers.range(1, {n}); some b in numbers.range(1, {n})])"


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """The direct children of a process (its threads' children lists merged)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def memory(pid: int) -> tuple[float, float]:
    """(the server's RSS, the sum of its children's RSS) in MiB."""
    return rss_mb(pid), sum(rss_mb(child) for child in children(pid))


@dataclass
class Probe:
    """Answers of one probed endpoint during the burst."""

    statuses: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0

    def record(self, status: str, seconds: float) -> None:
        self.statuses[status] += 1
        self.slowest_s = max(self.slowest_s, seconds)

    def summary(self) -> str:
        total = sum(self.statuses.values())
        return f"{self.statuses['200']}/{total} ok"

    def detail(self) -> str:
        return " ".join(f"{k}x{v}" for k, v in sorted(self.statuses.items()))


def probe(url: str, path: str, headers: dict[str, str], result: Probe, done: threading.Event) -> None:
    """GET ``path`` every PROBE_INTERVAL_S until ``done``."""
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while not done.is_set():
            started = time.perf_counter()
            try:
                status = str(client.get(path).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            result.record(status, time.perf_counter() - started)
            done.wait(PROBE_INTERVAL_S)


def evaluate(url: str, headers: dict[str, str], size: int, out: list[str]) -> None:
    body = {"policy": "package dos\n", "query": RUNAWAY.format(n=size), "input": {}}
    try:
        response = httpx.post(f"{url}/policies/evaluate", json=body, headers=headers, timeout=300)
        detail = response.json().get("detail", "") if response.status_code >= 400 else ""
        out.append(f"{response.status_code} {detail}".strip())
    except httpx.HTTPError as exc:
        out.append(type(exc).__name__)


def attack(
    url: str, pid: int, admin: dict[str, str], viewer: dict[str, str], *, calls: int, size: int
) -> None:
    before = memory(pid)
    done = threading.Event()
    health, authorized = Probe(), Probe()
    probes = [
        threading.Thread(target=probe, args=(url, "/healthz", {}, health, done)),
        threading.Thread(target=probe, args=(url, "/auth/tokens", admin, authorized, done)),
    ]
    answers: list[str] = []
    burst = [threading.Thread(target=evaluate, args=(url, viewer, size, answers)) for _ in range(calls)]
    started = time.perf_counter()
    for thread in probes + burst:
        thread.start()
    for thread in burst:
        thread.join()
    burst_s = time.perf_counter() - started
    after = memory(pid)
    time.sleep(SETTLE_S)  # the probes go on: does the server recover once the burst has been answered?
    done.set()
    for thread in probes:
        thread.join()
    settled = memory(pid)
    print(f"burst of {calls} evaluations (size {size}) answered in {burst_s:.1f} s:")
    for answer, count in sorted(Counter(answers).items()):
        print(f"  {count} x {answer}")
    table(
        [
            ("GET /healthz (no token)", health.summary(), f"{health.slowest_s:.2f}", health.detail()),
            (
                "GET /auth/tokens (admin)",
                authorized.summary(),
                f"{authorized.slowest_s:.2f}",
                authorized.detail(),
            ),
        ],
        ["probe during and after the burst", "answered", "slowest s", "statuses"],
    )
    table(
        [
            ("before the burst", f"{before[0]:.0f}", f"{before[1]:.0f}"),
            ("right after it", f"{after[0]:.0f}", f"{after[1]:.0f}"),
            (f"{SETTLE_S:g} s later", f"{settled[0]:.0f}", f"{settled[1]:.0f}"),
        ],
        ["server memory", "server RSS MiB", "children RSS MiB"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=4, help="concurrent runaway evaluations")
    parser.add_argument(
        "--size", type=int, default=1500, help="range size: the comprehension has size² pairs"
    )
    parser.add_argument("--quick", action="store_true", help="2 small calls: check that it runs")
    args = parser.parse_args()
    calls, size = (2, 600) if args.quick else (args.calls, args.size)
    header("policy evaluation attack (issue 15, defect 2)")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = clean_env(
            STACKL_AUTH__ENABLED="true", STACKL_SERVER__AGENT="false", STACKL_SERVER__WORKER="false"
        )
        proc, url = start_server(data_dir, None, env=env)
        try:
            admin = {"Authorization": f"Bearer {(data_dir / 'admin.token').read_text().strip()}"}
            created = httpx.post(
                f"{url}/auth/tokens", json={"subject": "mallory", "role": "viewer"}, headers=admin, timeout=30
            )
            created.raise_for_status()
            viewer = {"Authorization": f"Bearer {created.json()['token']}"}
            attack(url, proc.pid, admin, viewer, calls=calls, size=size)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
