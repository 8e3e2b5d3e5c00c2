"""The released STACKL 0.5 CLI (stackl-cli 0.5.1 on stackl-client 0.5.0) against this server.

The 0.5 CLI lives in its own virtual environment, built once per session from the hash-pinned
``requirements/stackl05-cli.lock`` (installed ``--no-deps``: stackl-cli pins versions that do not install on
Python 3.11). It is driven the way a 0.5 user would: ``connect``, ``apply -d`` of the example documents,
``apply -c`` of the example manifest with ``-s`` (the 0.5 progress bar polls the instance's statuses), ``get
instance -o json``, ``update``/``apply -c`` again (a PUT) and ``delete instance``. The server runs its embedded
worker and agent; the example's Ansible playbooks write their files under the test's directory.
"""

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import ServerProcess, process_env

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "stackl05-cli.lock"
EXAMPLES = ROOT / "examples"
EXAMPLE_DOCUMENTS = 9


@pytest.fixture(scope="session")
def stackl05(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``stackl`` executable of the released 0.5 CLI, in a throwaway virtual environment."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to build the 0.5 CLI's environment (scripts/install provides it)")
    venv = tmp_path_factory.mktemp("stackl05") / "venv"
    steps = [
        [uv, "venv", "-q", "--python", sys.executable, str(venv)],
        [
            uv,
            "pip",
            "install",
            "-q",
            "--require-hashes",
            "--no-deps",
            "-r",
            str(LOCK),
            "--python",
            str(venv / "bin" / "python"),
        ],
    ]
    for args in steps:
        done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return venv / "bin" / "stackl"


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def legacy(stackl05: Path, server_factory: Callable[..., ServerProcess], tmp_path: Path) -> tuple[Run, Path]:
    """A server with the example's playbooks, and ``run(*args)`` of the 0.5 CLI connected to it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "automation").symlink_to(EXAMPLES / "automation", target_is_directory=True)
    server = server_factory(data_dir=data_dir)
    env = process_env(tmp_path)
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)

    def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(stackl05), *args], env=env, cwd=EXAMPLES, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, (
                f"stackl {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n"
                + (f"{done.stderr}\n--- server log ---\n{server.log()[-6000:]}")
            )
        return done

    run("connect", server.url)
    assert (Path(env["HOME"]) / ".stackl" / "config").read_text() == server.url
    applied = run("apply", "-d", "documents")
    assert applied.stdout.count("Succesfully applied") == EXAMPLE_DOCUMENTS, applied.stdout
    return run, tmp_path / "demo-output"


def get_instance(run: Run, name: str) -> dict[str, Any]:
    shown = run("get", "instance", name, "-o", "json")
    body: dict[str, Any] = json.loads(shown.stdout)
    return body


def deploy(run: Run, name: str, out: Path, **params: Any) -> dict[str, Any]:
    """``apply -c`` the example manifest with ``-s``, then read the instance back."""
    overrides = json.dumps({"output_dir": str(out), **params})
    created = run("apply", "-c", "web_shop.instance.yml", name, "-p", overrides, "-s")
    assert "failed!" not in created.stdout, created.stdout
    return get_instance(run, name)


def delete(run: Run, name: str) -> None:
    deleted = run("delete", "instance", name)
    assert f"Stack instance {name} is being deleted" in deleted.stdout
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        gone = run("get", "instance", name, "-o", "json", check=False)
        if gone.returncode != 0:
            assert "Stack instance not found" in gone.stdout, gone.stdout
            return
        time.sleep(1)
    raise AssertionError(f"stack instance {name} still there after delete")


def test_connect_apply_create_get_delete(legacy: tuple[Run, Path]) -> None:
    run, out = legacy
    instance = deploy(run, "shop", out)
    assert instance["name"] == "shop"
    assert instance["stack_application_template"] == "web_shop"
    assert [(s["service"], s["status"]) for s in instance["status"]] == [("db", "READY"), ("web", "READY")]
    assert instance["instance_outputs"]["web_url"] == "http://localhost:8081"
    assert instance["services"]["web"][0]["secrets"] == {"registry_token": "********"}
    assert (
        "listen 8081;" in (out / "nginx.conf").read_text()
    )  # the manifest's service_params reached the step

    listed = run("get", "instance")
    assert "shop" in listed.stdout
    delete(run, "shop")
    assert not (out / "nginx.conf").exists()  # the delete steps ran the playbooks with state=absent


def test_apply_again_and_update_instance_update_it(legacy: tuple[Run, Path]) -> None:
    run, out = legacy
    deploy(run, "shop2", out)
    updated = deploy(run, "shop2", out, owner="another-team")  # exists now: apply -c sends a PUT
    assert updated["instance_params"]["owner"] == "another-team"
    assert [s["status"] for s in updated["status"]] == ["READY", "READY"]
    assert "another-team" in (out / "postgresql.conf").read_text()

    run("update", "instance", "shop2", "-p", json.dumps({"owner": "third-team"}), "-s")
    assert get_instance(run, "shop2")["instance_params"]["owner"] == "third-team"
    delete(run, "shop2")
