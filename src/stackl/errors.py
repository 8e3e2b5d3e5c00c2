"""Every error STACKL raises on purpose, in one tree.

The HTTP mapping lives in ``api/problems.py`` and the exit-code mapping in ``cli/exits.py``; both walk the MRO,
so the most specific entry wins. ``client/problems.py`` rebuilds the same class from a problem body's ``code``.
Each class's docstring is its default message; attributes carry the structured details a problem body shows.

    StacklError
    ├── InvalidInput                       422
    │   ├── InvalidDocument                    (errors: [{loc, msg, type}])
    │   ├── MissingReferences
    │   ├── PolicyError
    │   ├── PlacementFailed
    │   ├── InstanceExists                     (code already_exists, kept 422 as in STACKL 0.5)
    │   └── IdempotencyKeyReused
    ├── Malformed                          400 (body does not parse, bad query parameter)
    ├── PayloadTooLarge                    413
    ├── UnsupportedMediaType               415
    ├── MethodNotAllowed                   405
    ├── Unauthenticated                    401
    ├── Forbidden                          403
    ├── NotFound                           404
    │   ├── DocumentNotFound
    │   ├── InstanceNotFound
    │   ├── TaskNotFound
    │   ├── AgentNotFound
    │   ├── JobNotFound
    │   └── RevisionNotFound
    ├── Conflict                           409
    │   ├── AlreadyExists
    │   ├── Referenced                         (referrers)
    │   ├── RevisionConflict
    │   ├── InstanceBusy
    │   └── AgentConflict                      (reason)
    │       ├── LeaseLost                          reason superseded | lease_lost
    │       └── ProtocolUnsupported                reason protocol
    ├── PreconditionFailed                 412 (current_revision)
    ├── RateLimited                        429 (retry_after_s; Retry-After header)
    ├── Unavailable                        503
    │   ├── StoreUnavailable
    │   ├── BrokerUnavailable
    │   ├── PolicyEngineUnavailable
    │   └── ServerUnreachable
    ├── OperationFailed                    CLI only: an awaited task failed
    ├── WaitTimedOut                       CLI only: --timeout passed
    └── ExecutionError                     never on the wire: a FAILED step
        ├── ToolFailed
        ├── ExecutionTimedOut
        ├── ExecutionCancelled
        └── NoInvocation
"""

from typing import Any

ErrorItem = dict[str, Any]  # {"loc": [...], "msg": str, "type": str}


class StacklError(Exception):
    """STACKL failed."""

    code = "internal"

    def __init__(self, message: str | None = None, *, errors: list[ErrorItem] | None = None) -> None:
        self.message = message or (self.__doc__ or self.__class__.__name__).strip().splitlines()[0]
        self.errors: list[ErrorItem] = list(errors or [])
        super().__init__(self.message)

    def extra(self) -> dict[str, Any]:
        """Structured members a problem body carries besides the standard ones."""
        return {}


# --- invalid input ---------------------------------------------------------------------------------------
class InvalidInput(StacklError):
    """The request is not valid."""

    code = "validation"


class InvalidDocument(InvalidInput):
    """Validation failed."""

    code = "validation"

    def __init__(self, message: str | None = None, *, errors: list[ErrorItem] | None = None) -> None:
        errors = list(errors or [])
        if message is None and errors:
            parts = [f"{'.'.join(str(p) for p in e['loc'][1:] or e['loc'])}: {e['msg']}" for e in errors]
            count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
            message = f"{count}: {'; '.join(parts)}"
        super().__init__(message, errors=errors)


class MissingReferences(InvalidInput):
    """Referenced documents do not exist."""

    code = "missing_references"

    def __init__(self, missing: list[tuple[str, str]]) -> None:
        self.missing = missing
        labels = {
            "stack_application_template": "Stack application template",
            "stack_infrastructure_template": "Stack infrastructure template",
            "functional_requirement": "Functional requirement",
            "policy_template": "Policy template",
        }
        lines = [f"{labels.get(t, t.replace('_', ' ').capitalize())}: {n} does not exist" for t, n in missing]
        errors = [
            {"loc": ["references", t, n], "msg": "does not exist", "type": "missing"} for t, n in missing
        ]
        super().__init__("\n".join(lines), errors=errors)


class PolicyError(InvalidInput):
    """The policy could not be compiled or evaluated."""

    code = "policy_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        policy: str = "",
        errors: list[ErrorItem] | None = None,
        explanation: dict[str, Any] | None = None,
    ):
        self.policy = policy
        self.explanation = explanation  # the placement explanation so far, when placement was running
        super().__init__(message, errors=errors)

    def extra(self) -> dict[str, Any]:
        return {"explanation": self.explanation} if self.explanation is not None else {}


class PlacementFailed(InvalidInput):
    """No valid placement."""

    code = "placement_failed"

    def __init__(self, message: str | None = None, *, explanation: dict[str, Any] | None = None) -> None:
        self.explanation = explanation or {}
        super().__init__(message)

    def extra(self) -> dict[str, Any]:
        return {"explanation": self.explanation}


class InstanceExists(InvalidInput):
    """Stack instance already exists."""

    code = "already_exists"


class IdempotencyKeyReused(InvalidInput):
    """The idempotency key was already used for a different request."""

    code = "idempotency_key_reused"


class Malformed(StacklError):
    """The request body or a query parameter does not parse."""

    code = "malformed"


class PayloadTooLarge(StacklError):
    """The request body is too large."""

    code = "payload_too_large"


class UnsupportedMediaType(StacklError):
    """The request body's content type is not supported."""

    code = "unsupported_media_type"


class MethodNotAllowed(StacklError):
    """This method is not allowed on this resource."""

    code = "method_not_allowed"


# --- auth ------------------------------------------------------------------------------------------------
class Unauthenticated(StacklError):
    """Authentication required."""

    code = "unauthorized"


class Forbidden(StacklError):
    """The authorization policy denied this request."""

    code = "forbidden"

    def __init__(self, message: str | None = None, *, reasons: list[str] | None = None) -> None:
        self.reasons = list(reasons or [])
        super().__init__(message)

    def extra(self) -> dict[str, Any]:
        return {"reasons": self.reasons}


# --- not found -------------------------------------------------------------------------------------------
class NotFound(StacklError):
    """Not found."""

    code = "not_found"


class DocumentNotFound(NotFound):
    """Document not found."""

    def __init__(self, doc_type: str = "", name: str = "", message: str | None = None) -> None:
        self.doc_type, self.name = doc_type, name
        super().__init__(message or (f"{doc_type} {name!r} not found" if doc_type else None))


class RevisionNotFound(NotFound):
    """Revision not found."""

    def __init__(self, doc_type: str, name: str, revision: int | str) -> None:
        self.doc_type, self.name, self.revision = doc_type, name, revision
        super().__init__(f"{doc_type} {name!r} has no revision {revision}")


class InstanceNotFound(NotFound):
    """Stack instance not found."""


class TaskNotFound(NotFound):
    """Task not found."""


class AgentNotFound(NotFound):
    """Agent not found."""


class JobNotFound(NotFound):
    """Job not found."""


# --- conflicts -------------------------------------------------------------------------------------------
class Conflict(StacklError):
    """The request conflicts with the current state."""

    code = "conflict"


class AlreadyExists(Conflict):
    """The document already exists."""

    code = "already_exists"

    def __init__(self, doc_type: str = "", name: str = "", message: str | None = None) -> None:
        self.doc_type, self.name = doc_type, name
        super().__init__(message or (f"{doc_type} {name!r} already exists" if doc_type else None))


class Referenced(Conflict):
    """The document is referenced by other documents."""

    code = "referenced"

    def __init__(self, doc_type: str, name: str, referrers: list[dict[str, str]]) -> None:
        self.doc_type, self.name, self.referrers = doc_type, name, referrers
        n = len(referrers)
        super().__init__(
            f"{doc_type} {name!r} is referenced by {n} document{'s' if n != 1 else ''}; "
            "delete it first or use ?force=true",
            errors=[
                {
                    "loc": ["references", r["type"], r["name"]],
                    "msg": f"references {doc_type} {name!r}",
                    "type": "referenced",
                }
                for r in referrers
            ],
        )

    def extra(self) -> dict[str, Any]:
        return {"referrers": self.referrers}


class RevisionConflict(Conflict):
    """A concurrent write kept winning; the change was not applied."""


class InstanceBusy(Conflict):
    """Another operation is already running on this stack instance."""

    code = "instance_busy"

    def __init__(self, *, instance: str, task_id: str, task_kind: str) -> None:
        super().__init__(f"stack instance {instance!r} is busy with {task_kind} task {task_id}")
        self.instance, self.task_id, self.task_kind = instance, task_id, task_kind

    def extra(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "task_kind": self.task_kind}


class AgentConflict(Conflict):
    """The agent call conflicts with the job's or the server's state."""

    reason = "conflict"

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)

    def extra(self) -> dict[str, Any]:
        # spec/agents.md §1.1: the agent acts on ``reason`` (drop the job, or stop), not on the message.
        return {"reason": self.reason}


class LeaseLost(AgentConflict):
    """The job is no longer this agent instance's: stop it and drop it."""

    reason = "lease_lost"


class ProtocolUnsupported(AgentConflict):
    """The agent speaks a protocol version this server does not support."""

    reason = "protocol"


class PreconditionFailed(StacklError):
    """The document's revision does not match the request's precondition."""

    code = "precondition_failed"

    def __init__(self, message: str | None = None, *, current_revision: int | None = None) -> None:
        self.current_revision = current_revision
        super().__init__(message)

    def extra(self) -> dict[str, Any]:
        return {"current_revision": self.current_revision}


class RateLimited(StacklError):
    """Too many requests of this kind from this caller: try again later."""

    code = "rate_limited"

    def __init__(self, message: str | None = None, *, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s  # when the caller's next request of this kind will be accepted
        super().__init__(message)

    def extra(self) -> dict[str, Any]:
        return {"retry_after_s": self.retry_after_s}


# --- availability ----------------------------------------------------------------------------------------
class Unavailable(StacklError):
    """The service is unavailable; retry later."""

    code = "unavailable"


class StoreUnavailable(Unavailable):
    """The database cannot be reached."""


class BrokerUnavailable(Unavailable):
    """The task queue cannot be reached."""


class ServerUnreachable(Unavailable):
    """The STACKL server cannot be reached."""


class PolicyEngineUnavailable(Unavailable):
    """The policy engine is unavailable."""


# --- client-side outcomes --------------------------------------------------------------------------------
class OperationFailed(StacklError):
    """The operation failed."""

    code = "operation_failed"


class WaitTimedOut(StacklError):
    """Timed out waiting; the task keeps running."""

    code = "wait_timed_out"


# --- execution -------------------------------------------------------------------------------------------
class ExecutionError(StacklError):
    """The step failed."""

    code = "execution_error"


class ToolFailed(ExecutionError):
    """The tool exited with an error."""


class ExecutionTimedOut(ExecutionError):
    """The step timed out."""


class ExecutionCancelled(ExecutionError):
    """The step was cancelled."""


class NoInvocation(ExecutionError):
    """No invocation for this cloud provider."""
