"""``POST /outputs``: outputs posted by hand into a stack instance and one replica (lifecycle.md §4.6).

Not a task: allowed while one runs, and it changes no status; the next step dispatched sees the outputs.
"""

import copy
from typing import Any

from stackl import errors
from stackl.datastore.base import StoredDocument, Transaction
from stackl.domain import parameters
from stackl.domain.outputs import merge_outputs
from stackl.usecases import documents as document_cases
from stackl.usecases.ports import Ports

SI = "stack_instance"


async def add_outputs(ports: Ports, body: object, *, subject: str) -> StoredDocument:
    """``POST /outputs``: merge outputs into an instance and one replica, as a new revision (§4.6).

    Not a task: allowed while one runs; changes no status. Displayed parameters of every replica get the
    new outputs on top (the replica's own ones last).

    Raises:
        InvalidDocument: the body is not ``{stack_instance, service, infrastructure_target, outputs}``.
        InstanceNotFound: unknown instance. InvalidInput: unknown alias, or no replica on that target.
    """
    fields_ = ("stack_instance", "service", "infrastructure_target")
    if not isinstance(body, dict):
        raise errors.InvalidDocument(errors=[{"loc": ["body"], "msg": "must be an object", "type": "type"}])
    problems: list[errors.ErrorItem] = [
        {"loc": ["body", f], "msg": "field required", "type": "missing"}
        for f in fields_
        if not isinstance(body.get(f), str)
    ]
    if not isinstance(body.get("outputs"), dict):
        problems.append({"loc": ["body", "outputs"], "msg": "must be an object", "type": "type"})
    if problems:
        raise errors.InvalidDocument(errors=problems)
    name, alias, target = (str(body[f]) for f in fields_)
    outputs: dict[str, Any] = body["outputs"]

    async def work(tx: Transaction) -> StoredDocument:
        stored = await tx.get(doc_type=SI, name=name)
        if stored is None:
            raise errors.InstanceNotFound(f"Stack instance {name} not found")
        new = copy.deepcopy(stored.body)
        replicas = new.get("services", {}).get(alias)
        if replicas is None:
            raise errors.InvalidInput(
                f"stack instance {name} has no service {alias!r}",
                errors=[{"loc": ["body", "service"], "msg": "unknown alias", "type": "alias"}],
            )
        index = next((i for i, r in enumerate(replicas) if r.get("infrastructure_target") == target), None)
        if index is None:
            raise errors.InvalidInput(
                f"service {alias!r} of stack instance {name} has no replica on {target}",
                errors=[
                    {"loc": ["body", "infrastructure_target"], "msg": "no replica there", "type": "target"}
                ],
            )
        merge_outputs(new, alias, index, outputs)
        posted = new.setdefault("posted_outputs", {})
        posted["instance"] = {**posted.get("instance", {}), **outputs}
        replicas_posted = posted.setdefault("replicas", {})
        replicas_posted[f"{alias}/{index}"] = {**replicas_posted.get(f"{alias}/{index}", {}), **outputs}
        for a, rs in new.get("services", {}).items():
            for i, replica in enumerate(rs):
                own = replica.get("outputs", {}) if (a, i) == (alias, index) else {}
                replica["provisioning_parameters"] = parameters.merge(
                    replica.get("provisioning_parameters"), outputs, own
                )
        result = await tx.put(
            doc_type=SI,
            name=name,
            body=new,
            subject=subject,
            action="outputs",
            if_revision=stored.revision,
            references=document_cases.references(new),
        )
        return result.document

    return await document_cases.in_transaction(ports, work)
