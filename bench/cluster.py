"""A STACKL cluster on one PostgreSQL: two `stackl server`, N `stackl worker`, three `stackl agent`.

Every process gets its own port or data directory; all share the database and the secret key
(``STACKL_SECRETS__KEY``). The servers run neither the worker loop nor the embedded agent, so the separate
workers run every task and the three agents (``agent-0..2``, one per zone; agent 1 talks to server B, the
others to server A) every job. Requests alternate between the two servers, as behind a load balancer, and
go to the other one while a server is down.

The bench: instances per minute for 1 vs 2 workers, each run on a fresh database with the same load
(``--instances`` instances of 1 service x 1 mock FR taking ``--step-s`` seconds). A worker advances
``--concurrency`` tasks at once, but a task waiting for its job holds no slot, so the workers bound only the
dispatching and recording; with short steps that is what a second worker adds. The baseline is the 1-worker
run of the same invocation; the ratio is what the second worker adds.

    python -m bench.cluster [--quick] [--instances N] [--step-s S] [--concurrency C]
    python -m bench.cluster --demo   # start a cluster, deploy a few instances, keep it up until Ctrl-C

The multi-node e2e test (``tests/e2e/test_cluster_e2e.py``) and ``scripts/cluster-demo`` use ``Cluster``.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import header, table
from bench.servers import clean_env, free_port, postgres_database, stackl_command

ZONES = 3
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Proc:
    """One process of the cluster: its command, log file and (while running) Popen."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self, timeout_s: float = 60) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    """Processes of one cluster; start with ``up()``, end with ``down()``."""

    root: Path
    database_url: str
    workers: int = 2
    concurrency: int = 4
    lease_s: float = 2.0
    log_level: str = "info"
    max_jobs: int = 16  # per agent
    servers: list[Proc] = field(default_factory=list)
    worker_procs: list[Proc] = field(default_factory=list)
    agents: list[Proc] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    _next: int = 0

    @property
    def env(self) -> dict[str, str]:
        return clean_env(
            HOME=str(self.root / "home"),
            STACKL_DATABASE__URL=self.database_url,
            STACKL_SECRETS__KEY=self.secret,
            STACKL_SERVER__WORKER="false",
            STACKL_SERVER__AGENT="false",
            STACKL_WORKER__LEASE_S=str(self.lease_s),
            STACKL_WORKER__SHUTDOWN_TIMEOUT_S="5",
            STACKL_LOGGING__FORMAT="json",
            STACKL_LOGGING__LEVEL=self.log_level,
        )

    def __post_init__(self) -> None:
        self.secret = secrets.token_urlsafe(32)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    # --- processes -----------------------------------------------------------------------------------------
    def up(self, *, agents: int = ZONES) -> None:
        """Start both servers (the first migrates), the workers and the agents; wait until all serve."""
        self.ports = [free_port(), free_port()]
        for index in range(2):
            args = stackl_command(
                "server",
                "server",
                "--port",
                str(self.ports[index]),
                "--data-dir",
                str(self.root / f"server{index}"),
                *(["--no-upgrade"] if index else []),
            )
            self.servers.append(Proc(f"server{index}", args, self.root / f"server{index}.log", self.env))
            self.start_server(index)
        for index in range(self.workers):
            args = stackl_command(
                "worker", "worker", "--concurrency", str(self.concurrency), "--data-dir", str(self.root / "w")
            )
            env = {
                **self.env,
                "STACKL_LOGGING__LEVEL": "info",
            }  # start and claim lines: the e2e test reads them
            self.worker_procs.append(Proc(f"worker{index}", args, self.root / f"worker{index}.log", env))
            self.start_worker(index)
        for index in range(agents):
            args = stackl_command(
                "agent",
                "agent",
                "--name",
                f"agent-{index}",
                "--server",
                self.url(1 if index == 1 else 0),
                "--executor",
                "mock",
                "--max-jobs",
                str(self.max_jobs),
                "--data-dir",
                str(self.root / f"agent{index}"),
                "--shutdown-timeout",
                "5",
            )
            self.agents.append(Proc(f"agent{index}", args, self.root / f"agent{index}.log", self.env))
            self.agents[-1].start()
        self.wait(lambda: self.online_agents() >= agents, 60, "the agents to come online")

    def start_server(self, index: int) -> None:
        proc = self.servers[index]
        proc.start()

        def ready() -> bool:
            if not proc.running:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-4000:]}")
            try:
                return httpx.get(f"{self.url(index)}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait(ready, 60, f"{proc.name} to be ready")

    def start_worker(self, index: int) -> None:
        proc = self.worker_procs[index]
        proc.start()
        self.wait(lambda: "worker_started" in proc.log() or not proc.running, 60, f"{proc.name} to start")
        if not proc.running:
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-4000:]}")

    def down(self) -> dict[str, int | None]:
        """Stop every process gracefully (agents, workers, then servers); their exit codes."""
        codes = {}
        for proc in [*self.agents, *self.worker_procs, *self.servers]:
            codes[proc.name] = proc.stop()
        return codes

    @staticmethod
    def wait(predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")

    # --- requests, spread over the servers -------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send to the next server in turn; on a connection failure, to the other (a load balancer's retry)."""
        self._next += 1
        last: Exception | None = None
        for attempt in range(40):
            index = (self._next + attempt) % len(self.ports)
            try:
                return httpx.request(method, f"{self.url(index)}{path}", timeout=30, **kwargs)
            except httpx.TransportError as exc:
                last = exc
                time.sleep(0.1 if attempt % 2 == 0 else 0.5)
        raise RuntimeError(f"{method} {path}: no server answered: {last}")

    def online_agents(self) -> int:
        try:
            body = self.request("GET", "/agents").json()
        except (RuntimeError, ValueError):
            return 0
        items = body.get("items", body) if isinstance(body, dict) else body
        return sum(1 for a in items if isinstance(a, dict) and a.get("state") == "online")

    def load_model(self, *, step_s: float) -> None:
        docs = model(step_s=step_s)
        response = self.request("POST", "/documents", json=docs)
        if response.status_code != 200:
            raise RuntimeError(f"loading the model: {response.status_code} {response.text}")

    def create(self, name: str, index: int) -> str:
        """Create one instance (through whichever server's turn it is); its task id."""
        body = {
            "stack_instance_name": name,
            "stack_application_template": "app",
            "stack_infrastructure_template": f"sit-{index % ZONES}",
        }
        for _ in range(5):
            response = self.request("POST", "/stack_instances", json=body)
            if response.status_code == 200:
                return str(response.headers.get("Stackl-Task-Id", ""))
            if response.status_code == 409:  # an earlier attempt went through before its answer was lost
                return ""
            if response.status_code < 500:
                raise RuntimeError(f"create {name}: {response.status_code} {response.text}")
            time.sleep(0.5)
        raise RuntimeError(f"create {name}: {response.status_code} {response.text}")

    def instances(self) -> dict[str, dict[str, Any]]:
        """The stack instance documents, by name."""
        found: dict[str, dict[str, Any]] = {}
        cursor = ""
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            response = self.request("GET", "/documents/stack_instance", params=params)
            body = response.json()
            items = body.get("items", []) if isinstance(body, dict) else body
            found.update({str(d["name"]): d for d in items})
            cursor = str(body.get("next_cursor") or "") if isinstance(body, dict) else ""
            if not cursor:
                return found

    def ready(self, names: Sequence[str]) -> int:
        """How many of these instances have every step READY."""
        docs = self.instances()
        return sum(
            1
            for name in names
            if name in docs
            and docs[name].get("status")
            and all(e.get("status") == "READY" for e in docs[name]["status"])
        )


def model(*, step_s: float) -> list[dict[str, Any]]:
    """An environment, a location, three zones (one agent each), one SIT per zone, one app of one mock FR."""
    docs: list[dict[str, Any]] = [
        {"type": "environment", "category": "configs", "name": "production"},
        {"type": "location", "category": "configs", "name": "brussels", "agent": "agent-0"},
    ]
    for z in range(ZONES):
        docs.append({"type": "zone", "category": "configs", "name": f"zone-{z}", "agent": f"agent-{z}"})
        docs.append(
            {
                "type": "stack_infrastructure_template",
                "category": "configs",
                "name": f"sit-{z}",
                "infrastructure_targets": [
                    {"environment": "production", "location": "brussels", "zone": f"zone-{z}"}
                ],
            }
        )
    invocation = {"generic": {"tool": "shell", "command": "true", "mock_duration": step_s}}
    docs += [
        {"type": "functional_requirement", "category": "configs", "name": "step", "invocation": invocation},
        {"type": "service", "category": "items", "name": "svc", "functional_requirements": ["step"]},
        {
            "type": "stack_application_template",
            "category": "items",
            "name": "app",
            "services": [{"name": "main", "service": "svc"}],
        },
    ]
    return docs


@contextmanager
def cluster(
    workers: int, *, concurrency: int, lease_s: float = 2.0, log_level: str = "warning"
) -> Iterator[Cluster]:
    """A running cluster on a fresh PostgreSQL database (PG* variables), stopped and dropped afterwards."""
    with tempfile.TemporaryDirectory(prefix="stackl-cluster-") as tmp, postgres_database() as url:
        nodes = Cluster(
            Path(tmp), url, workers=workers, concurrency=concurrency, lease_s=lease_s, log_level=log_level
        )
        try:
            nodes.up()
            yield nodes
        finally:
            nodes.down()


def throughput(workers: int, *, instances: int, step_s: float, concurrency: int) -> tuple[float, float]:
    """(seconds from the first create to every instance READY, instances per minute)."""
    with cluster(workers, concurrency=concurrency) as nodes:
        nodes.load_model(step_s=step_s)
        names = [f"i{k:03d}" for k in range(instances)]
        started = time.monotonic()
        for index, name in enumerate(names):
            nodes.create(name, index)
        nodes.wait(lambda: nodes.ready(names) == len(names), 900, "every instance to be READY")
        elapsed = time.monotonic() - started
    return elapsed, instances / elapsed * 60


def demo() -> None:
    with cluster(2, concurrency=4, log_level="info") as nodes:
        nodes.load_model(step_s=0.5)
        for index in range(6):
            nodes.create(f"demo-{index}", index)
        print(f"servers: {nodes.url(0)} {nodes.url(1)}; logs in {nodes.root}")
        print(f"try: STACKL_URL={nodes.url(0)} stackl events    |  curl {nodes.url(1)}/metrics")
        print("Ctrl-C stops the cluster")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer instances")
    parser.add_argument("--instances", type=int, default=None)
    parser.add_argument("--step-s", type=float, default=1.0, help="the mock step's duration")
    parser.add_argument("--concurrency", type=int, default=2, help="tasks per worker at once")
    parser.add_argument("--demo", action="store_true", help="start a cluster and keep it running")
    args = parser.parse_args(argv)
    if not os.environ.get("PGHOST"):
        sys.exit("bench.cluster needs PostgreSQL: source .pg/env (scripts/start-postgres) first")
    if args.demo:
        demo()
        return
    instances = args.instances or (24 if args.quick else 80)
    header(
        f"cluster: {instances} instances (1 service x 1 mock FR of {args.step_s} s), 2 servers, 3 agents, "
        f"PostgreSQL; worker concurrency {args.concurrency}"
    )
    rows = []
    baseline = 0.0
    for workers in (1, 2):
        elapsed, per_minute = throughput(
            workers, instances=instances, step_s=args.step_s, concurrency=args.concurrency
        )
        baseline = baseline or per_minute
        rows.append(
            [
                f"{workers} worker{'s' if workers > 1 else ''}",
                f"{elapsed:.1f}",
                f"{per_minute:.0f}",
                f"{per_minute / baseline:.2f}x",
            ]
        )
    table(rows, ["workers", "seconds", "instances/min", "x 1-worker baseline"])


if __name__ == "__main__":
    main()
