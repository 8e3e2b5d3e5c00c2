"""The foundation end to end: a real server process, the real CLI, SQLite and PostgreSQL."""

import concurrent.futures
import json
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.e2e.conftest import ServerProcess, run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "documents"
EXAMPLE_COUNT = 9  # environment, location, zone, 2 FRs, 2 services, SAT, SIT


def test_apply_examples_then_get_them(server: ServerProcess) -> None:
    applied = run_cli("apply", "-d", str(EXAMPLES), server=server)
    created = [line for line in applied.stdout.splitlines() if line.startswith("created ")]
    assert len(created) == EXAMPLE_COUNT, applied.stdout
    assert "created stack_application_template web_shop (revision 1)" in applied.stdout

    again = run_cli("apply", "-d", str(EXAMPLES), server=server)
    assert again.stdout.count("unchanged ") == EXAMPLE_COUNT

    table = run_cli("get", "sat", server=server)
    assert "web_shop" in table.stdout
    as_json = json.loads(run_cli("get", "environment", "development", "-o", "json", server=server).stdout)
    assert as_json["metadata"]["revision"] == 1
    assert as_json["secrets"] == {"registry_token": "********"}

    sit = httpx.get(f"{server.url}/stack_infrastructure_templates/local").json()
    assert list(sit["infrastructure_capabilities"]) == ["development.local.default"]


def test_bad_file_applies_nothing(server: ServerProcess, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.yml").write_text("name: dmz\ntype: zone\n")
    (docs / "bad.yml").write_text("name: x\ntype: widget\n")
    result = run_cli("apply", "-d", str(docs), server=server, check=False)
    assert result.returncode == 3
    assert "bad.yml" in result.stderr
    assert httpx.get(f"{server.url}/documents/zone/dmz").status_code == 404


def test_data_survives_a_restart(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    first = server_factory(data_dir=tmp_path / "data")
    run_cli("apply", "-d", str(EXAMPLES), server=first)
    assert first.stop() == 0
    first.start()
    listed = httpx.get(f"{first.url}/documents", params={"limit": 100}).json()["items"]
    assert len(listed) == EXAMPLE_COUNT


def concurrent_patches(url: str, writers: int) -> None:
    """``writers`` concurrent read-modify-write requests on one document, each adding its own key."""
    httpx.post(
        f"{url}/documents/environment", json={"name": "shared", "type": "environment"}
    ).raise_for_status()

    def add(i: int) -> int:
        response = httpx.patch(
            f"{url}/documents/environment/shared",
            json={"params": {f"key{i}": i}},
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=60,
        )
        return response.status_code

    # Merge patches replace nested maps key by key, so every writer's key must survive.
    with concurrent.futures.ThreadPoolExecutor(max_workers=writers) as pool:
        codes = list(pool.map(add, range(writers)))
    assert codes == [200] * writers
    doc = httpx.get(f"{url}/documents/environment/shared").json()
    assert doc["params"] == {f"key{i}": i for i in range(writers)}
    assert doc["metadata"]["revision"] == writers + 1


def test_concurrent_writers_lose_no_update_on_sqlite(server: ServerProcess) -> None:
    concurrent_patches(server.url, writers=24)


def test_concurrent_writers_lose_no_update_on_postgresql(
    server_factory: Callable[..., ServerProcess], pg_url: str
) -> None:
    server = server_factory("--database-url", pg_url)
    assert httpx.get(f"{server.url}/version").json()["database"] == "postgresql"
    concurrent_patches(server.url, writers=24)
