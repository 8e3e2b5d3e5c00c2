"""The job: one contract for what the server hands an agent for one step (agents.md §2).

The server builds a ``JobPayload`` per step (``domain/steps.job_payload``) and checks it against this model
before enqueueing; the claim answer adds the ``Job`` fields; the agent parses it with the same ``Job``
(leniently: unknown fields are ignored, so a newer server can add fields). One model on both sides, so they
cannot drift apart.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

Action = Literal["create", "update", "delete"]


class JobInvocation(BaseModel):
    """The invocation as a job carries it (agents.md §2); the `mock_*` fields stay None when absent."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    image: str = ""
    working_directory: str = ""
    before_command: str = ""
    command: str = ""
    playbook_path: str = ""
    ansible_role: str = ""
    gather_facts: bool = True
    serial: int = 10
    connection: str = "ssh"
    become: bool = False
    wait_for_connection: bool = False
    timeout: float = 3600.0
    retries: int = 0
    outputs: dict[str, str] = {}
    mock_result: str | dict[str, str] | None = None
    mock_duration: float | None = None
    mock_outputs: dict[str, Any] | None = None
    mock_error: str | None = None
    mock_fail_attempts: int | None = None
    mock_log: list[str] | None = None

    @field_validator(
        "image", "working_directory", "before_command", "command", "playbook_path", mode="before"
    )
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value


class JobPayload(BaseModel):
    """What the server builds for one step and stores with its job (agents.md §2), secrets in clear here.

    ``domain/steps.job_payload`` builds it; the task runner checks every payload against this model before it
    enqueues the job, so the server can never hand an agent a job the agent cannot read.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_id: str = ""
    action: Action
    stack_instance: str
    service: str
    service_document: str = ""
    replica: int = 0
    infrastructure_target: str = ""
    cloud_provider: str = ""
    agent: str = ""
    functional_requirement: str
    tool: str
    invocation: JobInvocation = JobInvocation()
    hosts: list[str] = []
    groups: dict[str, list[str]] = {}
    provisioning_parameters: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    input_hash: str = ""


class Job(JobPayload):
    """One step handed to an agent: the payload plus what its claim adds (id, attempt, lease, deadline)."""

    job_id: str
    attempt: int = 1
    lease_s: float = 60.0
    deadline: str = ""

    def without_secrets(self) -> dict[str, Any]:
        """The payload as `job.json` holds it: every field but the secrets."""
        return self.model_dump(mode="json", exclude={"secrets"})
