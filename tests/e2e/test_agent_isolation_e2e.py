"""Agent isolation against a real `stackl server --auth` under a permissive user policy (issue 15, defect 1).

The attack of the security probe, replayed over HTTP: with an ``authorization`` template that allows
everything, a token bound to agent A tries to register, claim, start, report and deregister as agent B, whose
location has a deployment waiting with a secret. Every call is refused (403) and B's job stays untouched; B's
own agent then claims it, a second instance of B cannot report on it (409), and only the holder's result
makes the instance READY.
"""

from typing import Any

import httpx
from tests import factories
from tests.e2e.conftest import ServerProcess, wait_until

PERMISSIVE = "package authorization\nimport rego.v1\ndefault allow := true\n"
SECRET = "Victim-Only-Secret-91b2"
VICTIM, ATTACKER = "agent-b", "agent-a"
B1, B2, A1 = "01JNM2ZK4T8W3X6Y9A1B5C7D2B", "01JNM2ZK4T8W3X6Y9A1B5C7D2C", "01JNM2ZK4T8W3X6Y9A1B5C7D2A"


def documents() -> list[dict[str, Any]]:
    shell = {"generic": {"tool": "shell", "command": "echo deploying"}}
    return [
        factories.environment("production"),
        factories.location("brussels", agent=VICTIM),
        factories.zone("dmz"),
        factories.functional_requirement("vm", params={}, invocation=shell, secrets={"password": SECRET}),
        factories.service("webserver", resource_requirements={}),
        factories.stack_application_template("web_shop"),
        factories.stack_infrastructure_template("main"),
    ]


def register(name: str, instance_id: str) -> dict[str, Any]:
    return {"name": name, "instance_id": instance_id, "hostname": "h", "version": "1", "protocol": 1}


def agent_token(client: httpx.Client, agent: str) -> dict[str, str]:
    created = client.post("/auth/tokens", json={"subject": f"host-{agent}", "role": "agent", "agent": agent})
    assert created.status_code in (200, 201), created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


def instance_status(client: httpx.Client) -> list[str]:
    body = client.get("/stack_instances/shop").json()
    return [str(entry["status"]) for entry in body.get("status", [])]


def test_an_agent_token_cannot_act_for_another_agent_under_a_permissive_policy(server_factory: Any) -> None:
    server: ServerProcess = server_factory("--auth")
    admin = {"Authorization": f"Bearer {(server.data_dir / 'admin.token').read_text().strip()}"}
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as client:
        assert client.post("/documents", json=documents()).status_code == 200
        template = {"name": "authorization", "type": "policy_template", "policy": PERMISSIVE}
        assert client.put("/policy_templates", json=template).status_code == 200
        attacker, victim = agent_token(client, ATTACKER), agent_token(client, VICTIM)
        created = client.post(
            "/stack_instances",
            json={
                "stack_instance_name": "shop",
                "stack_application_template": "web_shop",
                "stack_infrastructure_template": "main",
            },
        )
        assert created.status_code == 200, created.text
        assert client.post("/agents/register", json=register(VICTIM, B1), headers=victim).status_code == 200

        # the job for B appears in B's queue (the worker dispatches it)
        wait_until(
            lambda: client.get(f"/agents/{VICTIM}").json().get("queued_jobs", 0) >= 1,
            timeout_s=60,
            what="the job for agent B to be queued",
        )

        job = "01JNM3Q0ABX7M2K9C4D8F6G3HS"  # the attacker does not need the real id to be refused
        attempt = {"instance_id": B1, "attempt": 1}
        forged = {**attempt, "status": "READY", "exit_code": 0, "outputs": {"pwned": "yes"}}
        for path, body in (
            ("/agents/register", register(VICTIM, A1)),
            (f"/agents/{VICTIM}/claim", {"instance_id": B1, "wait": 0}),
            (f"/agents/{VICTIM}/heartbeat", {"instance_id": B1, "free_slots": 1, "running": []}),
            (f"/agents/{VICTIM}/jobs/{job}/start", attempt),
            (f"/agents/{VICTIM}/jobs/{job}/result", forged),
            (f"/agents/{VICTIM}/jobs/{job}/release", {**attempt, "started": False}),
            (f"/agents/{VICTIM}/deregister", {"instance_id": B1}),
        ):
            refused = client.post(path, json=body, headers=attacker)
            assert refused.status_code == 403, (path, refused.text)
            assert SECRET not in refused.text
        assert client.get("/agents", headers=attacker).status_code == 403
        assert client.get(f"/agents/{VICTIM}").json()["queued_jobs"] == 1  # still B's, still waiting

        # B's own instance claims its job; a second instance of B cannot report on it
        claimed = client.post(f"/agents/{VICTIM}/claim", json={"instance_id": B1, "wait": 5}, headers=victim)
        assert claimed.status_code == 200, claimed.text
        payload = claimed.json()["jobs"][0]
        assert payload["secrets"]["password"] == SECRET
        job_path = f"/agents/{VICTIM}/jobs/{payload['job_id']}"
        assert client.post("/agents/register", json=register(VICTIM, B2), headers=victim).status_code == 200
        other = {"instance_id": B2, "attempt": payload["attempt"], "status": "READY", "outputs": {"pwned": 1}}
        lost = client.post(f"{job_path}/result", json=other, headers=victim)
        assert (lost.status_code, lost.json()["reason"]) == (409, "lease_lost")
        assert "READY" not in instance_status(client)

        own = {**other, "instance_id": B1, "outputs": {}}
        assert client.post(f"{job_path}/result", json=own, headers=victim).json() == {"accepted": True}
        wait_until(lambda: instance_status(client) == ["READY"], timeout_s=60, what="the instance READY")
        body = client.get("/stack_instances/shop").json()
        assert "pwned" not in str(body)
        for instance in (B1, B2):
            client.post(f"/agents/{VICTIM}/deregister", json={"instance_id": instance}, headers=victim)
