"""`stackl demo`, the README's first command: a real server with the bundled example loaded and deployed.

The deployment is real: the embedded worker runs the create task and the embedded agent runs the example's
Ansible playbooks, which write files under ``<data dir>/demo-output`` and pass outputs from db to web.
"""

import re
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tests.e2e.conftest import STACKL, ServerProcess, free_port, process_env

EXAMPLE_DOCUMENTS = 9


def run_demo(tmp_path: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STACKL, "demo", "--exit", "--port", str(free_port()), "--data-dir", str(data_dir)],
        env=process_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_loads_and_deploys_the_example_then_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    first = run_demo(tmp_path, data_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("  created   ") == EXAMPLE_DOCUMENTS, first.stdout
    assert "stack_application_template web_shop" in first.stdout
    assert "Traceback" not in first.stderr
    assert (data_dir / "stackl.db").is_file()
    # Deployed: both steps READY, outputs passed from db to web, files written by the playbooks.
    assert "  succeeded: 2 ready" in first.stdout, first.stdout
    assert re.search(r"db\s+postgres_config\s+READY", first.stdout), first.stdout
    assert re.search(r"web\s+nginx_config\s+READY", first.stdout), first.stdout
    assert "output web_url: http://localhost:8081" in first.stdout
    nginx = (data_dir / "demo-output" / "nginx.conf").read_text()
    assert "server localhost:5432;" in nginx  # db's outputs reached the web step
    assert "listen 8081;" in nginx  # the manifest's service_params
    assert "platform-team" in (data_dir / "demo-output" / "postgresql.conf").read_text()

    again = run_demo(tmp_path, data_dir)  # the data survives; applying the same example changes nothing
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("  unchanged ") == EXAMPLE_DOCUMENTS, again.stdout
    assert "Stack instance demo is already deployed" in again.stdout


def test_demo_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*STACKL, "demo", "--exit", "--port", str(port), "--data-dir", str(tmp_path / "d")],
            env=process_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 7, result.stdout + result.stderr
    assert "already in use" in result.stderr


def test_demo_refuses_a_port_where_another_stackl_server_answers(
    tmp_path: Path, server: ServerProcess
) -> None:
    """It used to report "started" and load its example into the other server (operator experience, item 7)."""
    port = urlsplit(server.url).port
    result = subprocess.run(
        [*STACKL, "demo", "--exit", "--port", str(port), "--data-dir", str(tmp_path / "d")],
        env=process_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 7, result.stdout + result.stderr
    assert f"port {port} is already in use" in result.stderr
    assert "Starting" not in result.stdout
    assert httpx.get(f"{server.url}/stack_application_templates").json() == []  # nothing loaded there
