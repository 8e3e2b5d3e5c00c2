"""Wire models of the agent protocol (api.md §B.4, agents.md §1-4), shared by the API and its tests.

Unknown fields are ignored rather than refused: agents and servers of neighbouring versions must keep
talking (agents.md §2, forward compatibility). Bounds mirror the spec: ``wait`` ≤ 60 s, names and ids of
sane length; anything else is a 422 problem naming the field.
"""

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stackl.domain.jobs import Job

_ID = Field(min_length=1, max_length=64)


class ClaimAnswer(BaseModel):
    """``POST /agents/{name}/claim`` 200: the jobs claimed, each the job model both sides share."""

    jobs: list[Job]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)  # what is stored must be JSON


class RegisterBody(_Body):
    """``POST /agents/register``."""

    name: str = Field(min_length=1, max_length=128)
    instance_id: str = _ID
    previous_instance_id: str | None = Field(None, max_length=64)
    hostname: str = Field("", max_length=255)
    version: str = Field("", max_length=64)
    protocol: int = 1
    executors: list[str] = Field(default_factory=list)
    tools: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    max_jobs: int = Field(4, ge=1, le=1024)


class RunningJob(_Body):
    """One job the agent runs, as listed in a heartbeat."""

    job_id: str = _ID
    attempt: int = Field(ge=1)
    phase: str = "running"


class HeartbeatBody(_Body):
    """``POST /agents/{name}/heartbeat``."""

    instance_id: str = _ID
    free_slots: int = Field(0, ge=0)
    running: list[RunningJob] = Field(default_factory=list)


class ClaimBody(_Body):
    """``POST /agents/{name}/claim``."""

    instance_id: str = _ID
    wait: float = Field(30, ge=0, le=60)
    max_jobs: int = Field(1, ge=1, le=1024)


class AttemptBody(_Body):
    """``POST …/start``."""

    instance_id: str = _ID
    attempt: int = Field(ge=1)


class EventItem(_Body):
    """One log line of an events batch."""

    seq: int = Field(ge=0)
    ts: datetime | None = None
    stream: Literal["stdout", "stderr", "system"] = "stdout"
    text: str


class EventsBody(AttemptBody):
    """``POST …/events``; ``start`` folds the start call in (feature ``start_with_events``)."""

    events: list[EventItem] = Field(default_factory=list)
    start: bool = False


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as exc:  # NaN or an infinity: JSON cannot store it
        raise ValueError(f"outputs must be plain JSON: {exc}") from None
    return value


class ResultBody(AttemptBody):
    """``POST …/result``."""

    status: Literal["READY", "FAILED"]
    exit_code: int | None = None
    outputs: Annotated[dict[str, Any], AfterValidator(_json_object)] = Field(default_factory=dict)
    error_message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    timed_out: bool = False
    cancelled: bool = False
    last_seq: int | None = None
    # Feature ``result_with_events``: a job that ended before its first events batch left reports in one call.
    start: bool = False
    events: list[EventItem] = Field(default_factory=list)


class ResultsItem(ResultBody):
    """One result of a ``POST …/results`` batch: a result body naming its job."""

    job_id: str = _ID


class ResultsBody(_Body):
    """``POST /agents/{name}/results`` (feature ``result_batch``): several results in one call.

    Each is applied as by its own result call (and in its own transaction): the answer lists, in order, what
    that call would have answered, with its HTTP status.
    """

    results: list[ResultsItem] = Field(min_length=1, max_length=256)


class ReleaseBody(AttemptBody):
    """``POST …/release``."""

    started: bool = False


class DeregisterBody(_Body):
    """``POST /agents/{name}/deregister``."""

    instance_id: str = _ID
