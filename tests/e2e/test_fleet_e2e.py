"""STACKL as a fleet: the deployment files of ``deploy/`` checked for real.

- Kubernetes: ``kubectl kustomize deploy/kubernetes`` renders the base, and every object validates against the
  Kubernetes OpenAPI schema in its strict form (unknown fields fail) for the oldest and newest versions that
  ``kubernetes-validate`` ships. That package carries the schemas derived from each release's OpenAPI document,
  so the check runs offline; the ``kubernetes`` client's models were the alternative, but they drop unknown
  fields silently and do not check nested types, so a misspelt probe field would pass.
- systemd: the units pass ``systemd-analyze verify`` without a warning, in a throwaway root holding the
  system's own units and a stand-in ``/opt/stackl/bin/stackl``.
- The compose cluster on a real Docker engine (the suite's private dockerd): ``scripts/image`` builds the
  images, ``docker-compose`` starts PostgreSQL, two servers, a worker and an agent running real Ansible; the
  example documents go in through one server, an instance is deployed through the other, the worker container
  is killed (SIGKILL) while the task runs and is started again, and the instance ends READY with one
  successful attempt per step.
"""

import copy
import datetime
import functools
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from tests.e2e.conftest import STACKL, free_port, process_env, wait_until
from tests.integration.agent.conftest import DOCKERD, docker_engine  # noqa: F401 - the suite's dockerd, by name

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = REPO / "examples"
K8S_VERSIONS = ("1.25.0", "1.37.0")  # the oldest and newest schemas kubernetes-validate ships


# --- Kubernetes -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: scripts/install --test installs Debian's kubernetes-client")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_manifests_validate_against_the_kubernetes_openapi_schema(rendered: list[dict[str, Any]]) -> None:
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == [
        ("ConfigMap", "stackl"),
        ("Deployment", "stackl-agent"),
        ("Deployment", "stackl-server"),
        ("Deployment", "stackl-worker"),
        ("Job", "stackl-migrate"),
        ("Namespace", "stackl"),
        ("Role", "stackl-agent"),
        ("RoleBinding", "stackl-agent"),
        ("Secret", "stackl"),
        ("Service", "stackl"),
        ("ServiceAccount", "stackl-agent"),
    ]
    for doc in rendered:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)  # raises on any violation


def test_the_schema_check_catches_a_misspelt_field(rendered: list[dict[str, Any]]) -> None:
    server = copy.deepcopy(by_kind(rendered, "Deployment", "stackl-server"))
    probe = server["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError, match="pth"):
        kubernetes_validate.validate(server, K8S_VERSIONS[-1], strict=True)


def test_manifests_wire_probes_roles_secret_and_migration(rendered: list[dict[str, Any]]) -> None:
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {"stackl"}
    pods = {
        name: by_kind(rendered, "Deployment", name)["spec"]["template"]["spec"]
        for name in ("stackl-server", "stackl-worker", "stackl-agent")
    }
    pods["stackl-migrate"] = by_kind(rendered, "Job", "stackl-migrate")["spec"]["template"]["spec"]
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name

    server = pods["stackl-server"]["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"--no-worker", "--no-agent", "--no-upgrade"} <= set(server["args"])
    assert {"secretRef": {"name": "stackl"}} in server["envFrom"]
    assert pods["stackl-worker"]["containers"][0]["args"][0] == "worker"
    assert pods["stackl-migrate"]["containers"][0]["args"] == ["db", "upgrade"]
    service = by_kind(rendered, "Service", "stackl")
    assert (
        service["spec"]["selector"]
        == by_kind(rendered, "Deployment", "stackl-server")["spec"]["selector"]["matchLabels"]
    )
    assert set(by_kind(rendered, "Secret", "stackl")["stringData"]) == {
        "STACKL_DATABASE__URL",
        "STACKL_SECRETS__KEY",
    }

    agent = pods["stackl-agent"]
    args = agent["containers"][0]["args"]
    assert args[args.index("--executor") + 1] == "kubernetes"
    assert "--k8s-in-cluster" in args
    assert agent["serviceAccountName"] == "stackl-agent"
    rules = {
        (group, resource): set(rule["verbs"])
        for rule in by_kind(rendered, "Role", "stackl-agent")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): {"create", "list", "delete"},
        ("batch", "jobs/status"): {"get"},
        ("", "pods"): {"list"},
        ("", "pods/log"): {"get"},
        ("", "secrets"): {"create", "list", "patch", "delete"},
        ("", "configmaps"): {"create", "list", "patch", "delete"},
    }
    binding = by_kind(rendered, "RoleBinding", "stackl-agent")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "stackl-agent",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stackl-agent", "namespace": "stackl"}]


# --- systemd ----------------------------------------------------------------------------------------------

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing (Debian systemd: scripts/install --test)")
    assert [u.name for u in UNITS] == [
        "stackl-agent.service",
        "stackl-server.service",
        "stackl-worker.service",
    ]
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, units)
    stand_in = root / "opt/stackl/bin/stackl"  # verify checks that ExecStart names an executable
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    out = subprocess.run(
        [analyze, "verify", f"--root={root}", *(str(units / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stackl" not in out.stdout + out.stderr  # not even a warning about our units


def test_systemd_units_are_hardened() -> None:
    for unit in UNITS:
        lines = set(unit.read_text().splitlines())
        assert "ProtectSystem=strict" in lines, unit.name
        assert any(line.startswith("ReadWritePaths=/var/lib/stackl") for line in lines), unit.name
        assert "DynamicUser=yes" in lines or "User=stackl-agent" in lines, unit.name
        assert "NoNewPrivileges=yes" in lines, unit.name


# --- the compose cluster on a real Docker engine ----------------------------------------------------------


class Cluster:
    """`docker-compose -f deploy/compose.yaml` with its own project name, ports and secrets."""

    def __init__(self, engine: str, tmp_path: Path) -> None:
        self.project = f"fleet{uuid.uuid4().hex[:8]}"
        self.ports = (free_port(), free_port())
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STACKL_")} | {
            "DOCKER_HOST": engine,
            "POSTGRES_PASSWORD": uuid.uuid4().hex,
            "STACKL_SECRETS_KEY": uuid.uuid4().hex,
            "STACKL_POSTGRES_IMAGE": "stackl-postgres:15",
            "STACKL_PORT_1": str(self.ports[0]),
            "STACKL_PORT_2": str(self.ports[1]),
            "STACKL_WORKER_LEASE_S": "3",
            "STACKL_AUTOMATION_DIR": str(EXAMPLES / "automation"),
        }
        self.tmp_path = tmp_path

    def run(self, *args: str, timeout: float = 600) -> str:
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        assert out.returncode == 0, f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def compose(self, *args: str, timeout: float = 600) -> str:
        compose = ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "-p", self.project, "--no-ansi"]
        return self.run(*compose, *args, timeout=timeout)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def logs(self) -> str:
        out = subprocess.run(
            ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "-p", self.project, "--no-ansi", "logs"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return out.stdout[-20000:]


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Images built, the compose project up on the suite's private dockerd; down (volumes too) afterwards.

    Skipped only where dockerd cannot start (not root, or no dockerd binary); a missing tool fails.
    """
    if os.geteuid() != 0 or not Path(DOCKERD).exists():
        pytest.skip(
            f"dockerd cannot start here: the cluster test needs root and {DOCKERD} (Debian docker.io)"
        )
    for tool in ("docker-compose", "mmdebstrap", "docker"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/install --test installs it")
    nodes = Cluster(request.getfixturevalue("docker_engine"), tmp_path)
    nodes.run(str(REPO / "scripts" / "image"), "--postgres", timeout=1800)
    try:
        nodes.compose("up", "-d", timeout=600)
        yield nodes
    finally:
        subprocess.run(
            [
                "docker-compose",
                "-f",
                str(DEPLOY / "compose.yaml"),
                "-p",
                nodes.project,
                "down",
                "-v",
                "-t",
                "20",
            ],
            env=nodes.env,
            capture_output=True,
            timeout=300,
            check=False,
        )


@pytest.mark.timeout(
    1800
)  # builds the images (a few minutes; the Debian base is cached) and runs the cluster
def test_compose_cluster_deploys_through_two_servers_and_survives_a_killed_worker(cluster: Cluster) -> None:
    for url in (cluster.url(0), cluster.url(1)):
        wait_until(functools.partial(ready, url), timeout_s=120, what=f"{url} to be ready")
    admin = cluster.compose("exec", "-T", "server1", "cat", "/var/lib/stackl/admin.token").strip()
    headers = {"Authorization": f"Bearer {admin}"}

    def cli(index: int, *args: str) -> str:
        env = process_env(cluster.tmp_path) | {"STACKL_URL": cluster.url(index), "STACKL_TOKEN": admin}
        out = subprocess.run(
            [*STACKL, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert out.returncode == 0, f"stackl {' '.join(args)}: {out.stdout}\n{out.stderr}\n{cluster.logs()}"
        return out.stdout

    cli(0, "apply", "-d", str(EXAMPLES / "documents"))  # through server1
    cli(1, "apply", "-c", str(EXAMPLES / "web_shop.instance.yml"), "shop")  # through server2
    with httpx.Client(base_url=cluster.url(1), headers=headers, timeout=30) as api:
        (task,) = api.get("/tasks").json()["items"]

        def running() -> bool:
            state = api.get(f"/tasks/{task['id']}").json()["state"]
            assert state in ("queued", "running"), state
            return bool(state == "running")

        wait_until(running, timeout_s=120, what="the worker to start the task")
        worker = cluster.container("worker")
        cluster.run("docker", "kill", "-s", "KILL", worker)
        killed_at = datetime.datetime.now(datetime.UTC)
        assert cluster.run("docker", "wait", worker).strip() == "137"  # stopped by SIGKILL, not restarted
        cluster.run("docker", "start", worker)

    cli(0, "tasks", "wait", task["id"], "--timeout", "300")
    with httpx.Client(base_url=cluster.url(0), headers=headers, timeout=30) as api:
        done = api.get(f"/tasks/{task['id']}").json()
        instance = api.get("/stack_instances/shop").json()
    assert done["state"] == "succeeded", f"{done}\n{cluster.logs()}"
    started, finished = (datetime.datetime.fromisoformat(done[k]) for k in ("started_at", "finished_at"))
    assert started < killed_at < finished  # the worker died in the middle of the task
    steps = done["result"]["steps"]
    assert [(s["id"], s["state"], s["attempt"]) for s in steps] == [
        ("db/0/postgres_config", "ready", 1),
        ("web/0/nginx_config", "ready", 1),
    ]
    assert {s["status"] for s in instance["status"]} == {"READY"}
    assert instance["instance_outputs"]["web_url"] == "http://localhost:8081"  # Ansible ran in the agent
    assert "Traceback" not in cluster.logs()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:  # the published port does not answer yet
        return False
