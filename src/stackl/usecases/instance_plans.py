"""``POST /stack_instances/plan``: which operation a request is, and that operation's plan, written nowhere.

Each operation plans itself (``instance_placement.plan_create``, ``instance_delete.plan_delete``,
``updates.plan_update``); this module only decides which one answers. It sits above the operation modules
because an update builds on the create's placement and step helpers (``updates`` imports
``instance_placement``): were this dispatch beside them, they would import each other.
"""

from typing import Any

from stackl import errors
from stackl.domain.instances import parse_request
from stackl.usecases import instance_delete, instance_placement, updates
from stackl.usecases.ports import Ports


async def plan(ports: Ports, body: object) -> dict[str, Any]:
    """``POST /stack_instances/plan``: the plan of a create, an update or a delete; nothing is written.

    Without ``operation`` the request is a create when the instance does not exist, else an update.

    Raises:
        InvalidDocument: the body is invalid (fields named). MissingReferences: documents are missing.
        InstanceNotFound: update or delete of an instance that does not exist.
        InstanceExists: create of an instance that exists.
        PolicyError: a policy failed (with the explanation so far). PolicyEngineUnavailable.
    """
    request = parse_request(body, plan=True)
    operation = request.operation
    async with ports.store.transaction(readonly=True) as tx:
        existing = await tx.get(doc_type="stack_instance", name=request.stack_instance_name)
    if operation is None:
        operation = "create" if existing is None else "update"
    if operation != "create":
        if existing is None:
            raise errors.InstanceNotFound(f"Stack instance {request.stack_instance_name} not found")
        if operation == "delete":
            return await instance_delete.plan_delete(ports, existing)
        return await updates.plan_update(ports, body)
    if existing is not None:
        raise errors.InstanceExists()
    return await instance_placement.plan_create(ports, body)
