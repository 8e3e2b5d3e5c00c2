"""A stack instance's step progress (no revision) shows in its GET, and never hides behind a 304."""

import httpx
from fastapi import FastAPI
from tests.unit.usecases.test_instances import example_documents, request

SI = "stack_instance"


async def test_progress_changes_the_instance_without_a_revision_and_refuses_a_stale_304(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    assert (await api.post("/documents", json=example_documents())).status_code == 200
    assert (await api.post("/stack_instances", json=request())).status_code in (200, 201, 202)
    path = f"/documents/{SI}/shop-prod"
    before = await api.get(path)
    assert before.status_code == 200
    etag = before.headers["etag"]
    assert "stackl-progress" not in before.headers
    assert (await api.get(path, headers={"If-None-Match": etag})).status_code == 304

    async with app.state.ports.store.transaction() as tx:
        seq = await tx.put_progress(
            doc_type=SI, name="shop-prod", key="db/0/postgres_vm", entry={"status": {"status": "READY"}}
        )
    after = await api.get(path, headers={"If-None-Match": etag})
    assert after.status_code == 200  # same revision, other body: not "not modified"
    assert after.headers["etag"] == etag  # still the revision a write's If-Match names
    assert after.headers["stackl-progress"] == str(seq)
    db = next(e for e in after.json()["status"] if e["service"] == "db")
    assert db["status"] == "READY"
    # The revision itself, asked by number, is the stored one.
    revision = before.json()["metadata"]["revision"]
    stored = await api.get(path, params={"revision": revision})
    assert next(e for e in stored.json()["status"] if e["service"] == "db")["status"] == "in_progress"
