"""Models of the two document types only STACKL writes: stack instances and snapshots.

A stack instance is written by instance operations and their tasks (placement, statuses, outputs), a snapshot
by ``/snapshots``; neither is ever written raw by a user. They still go through `documents.validate` so that
restores of old revisions and imported 0.5 data meet the same rules as everything else (documents.md §9,
§10). `state` and `task` of an instance are computed on every read (lifecycle.md §4.9) and therefore not
fields here: `legacy.normalise` drops them, as it drops the always-false `deleted` a 0.5 body may carry.
"""

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field

from stackl.domain import configs, fields, names

StepStatus = Literal["in_progress", "READY", "FAILED", "SKIPPED"]
StepAction = Literal["create", "delete", "update"]
SnapshotSourceType = Literal[
    "environment",
    "location",
    "zone",
    "functional_requirement",
    "service",
    "stack_application_template",
    "stack_infrastructure_template",
    "policy_template",
    "stack_instance",
]
STEP_STATUSES: tuple[str, ...] = get_args(StepStatus)
SNAPSHOT_SOURCE_TYPES: tuple[str, ...] = get_args(SnapshotSourceType)
"""Every type but `snapshot`: a snapshot of a snapshot is refused."""
ERROR_MESSAGE_MAX_BYTES = 8 * 1024
STATUS_EXTENSION_FIELDS = (
    "replica",
    "action",
    "task_id",
    "job_id",
    "attempt",
    "started_at",
    "finished_at",
    "input_hash",
)
"""Status-entry fields of the full view only: the last run of the step."""


def _check_step_targets(value: str) -> str:
    # An as_group step runs once for all replicas: its target is the comma-joined list of their targets.
    for part in value.split(","):
        message = names.check_name(names.NameKind.TARGET, part)
        if message is not None:
            raise fields.failure("name", f"each comma-separated target {message}")
    return value


def _check_error_message(value: str) -> str:
    if len(value.encode()) > ERROR_MESSAGE_MAX_BYTES:
        raise fields.failure("too_long", f"must be at most {ERROR_MESSAGE_MAX_BYTES} bytes")
    return value


class Replica(fields.DocumentPart):
    """One placement of an alias on one target (documents.md §9.2); list index = replica index."""

    infrastructure_target: fields.TargetName
    service: fields.DocumentName
    agent: fields.OptionalAgent = "common"
    cloud_provider: fields.OptionalCloudProvider = "generic"
    provisioning_parameters: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    hosts: list[str] = Field(default_factory=list)
    resources: fields.Scalars = Field(default_factory=dict)
    tags: fields.Scalars = Field(default_factory=dict)
    opa_outputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)


class StatusEntry(fields.DocumentPart):
    """The status of one step (alias, replica target, FR), documents.md §9.3."""

    service: fields.Alias
    functional_requirement: fields.DocumentName
    infrastructure_target: Annotated[str, AfterValidator(_check_step_targets)]
    status: StepStatus
    error_message: Annotated[str, AfterValidator(_check_error_message)] = ""
    replica: Annotated[int, Field(ge=0)] | None = None
    action: StepAction | None = None
    task_id: str | None = None
    job_id: str | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    input_hash: str | None = None


class HostTarget(fields.DocumentPart):
    """One host of an inventory group and the target it runs on."""

    host: str
    target: str


class StepRecord(fields.DocumentPart):
    """What persists of one step across tasks (lifecycle.md §5.1): its last READY run's outputs and hash."""

    outputs: dict[str, Any] = Field(default_factory=dict)
    input_hash: str | None = None


class PostedOutputs(fields.DocumentPart):
    """Outputs received through ``POST /outputs``, in arrival order: the first part of layer 10 (§4.6)."""

    instance: dict[str, Any] = Field(default_factory=dict)
    replicas: dict[str, dict[str, Any]] = Field(default_factory=dict)  # "<alias>/<replica>" → outputs


class StackInstance(fields.Document):
    """A deployed application: placement, replicas, statuses, outputs (documents.md §9.1)."""

    doc_type = "stack_instance"
    category_name = "items"

    name: fields.DocumentName
    stack_infrastructure_template: fields.DocumentName
    stack_application_template: fields.DocumentName
    instance_params: dict[str, Any] = Field(default_factory=dict)
    service_params: dict[fields.Alias, dict[str, Any]] = Field(default_factory=dict)
    instance_secrets: dict[str, Any] = Field(default_factory=dict)
    service_secrets: dict[fields.Alias, dict[str, Any]] = Field(default_factory=dict)
    instance_outputs: dict[str, Any] = Field(default_factory=dict)
    services: dict[fields.Alias, list[Replica]] = Field(default_factory=dict)
    groups: dict[str, list[HostTarget]] = Field(default_factory=dict)
    status: list[StatusEntry] = Field(default_factory=list)
    stages: list[configs.Stage] = Field(default_factory=list)
    deleted: bool = False
    tags: fields.Scalars = Field(default_factory=dict)
    placement: dict[str, Any] = Field(default_factory=dict)
    # Full view only: the request's extra services (kept by updates that send none), step records and posted
    # outputs, which decide what an update re-runs (lifecycle.md §4.3, §4.6).
    extra_services: list[configs.ApplicationService] = Field(default_factory=list)
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    posted_outputs: PostedOutputs = Field(default_factory=PostedOutputs)
    rolling_back: str | None = None  # the task whose failed run is being compensated (lifecycle.md §4.5)
    # While it rolls back: what that task's main phase ended with (failed steps, its step records, the
    # rollback's deadline), so its later activations end it with that outcome (usecases/operations.py).
    rollback_record: dict[str, Any] | None = None


class SnapshotSource(fields.DocumentPart):
    """What a snapshot copied: the document and its revision (None for snapshots imported from 0.5)."""

    type: SnapshotSourceType
    name: fields.DocumentName
    revision: Annotated[int, Field(ge=1)] | None = None


class Snapshot(fields.Document):
    """A named, immutable copy of one revision of another document (documents.md §10).

    `snapshot` holds the copied body; `documents.validate` validates it as a document of its own type.
    """

    doc_type = "snapshot"
    category_name = "history"

    name: fields.DocumentName
    snapshot: dict[str, Any]
    source: SnapshotSource
