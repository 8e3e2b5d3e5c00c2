"""Which agent instance holds which job attempt: the lookups and the fencing rule every agent call passes.

A job is a broker item on queue ``agent:<name>`` (kind ``job``, payload of agents.md §2): ``job_id`` is the
item id and ``attempt`` the item's attempt, which is also its lease epoch (every claim raises both by one),
so the attempt an agent reports is the fencing token the broker checks. The registry (heartbeats), the
claims and the reports all refuse a call for an attempt the instance does not hold, by the same rule.
"""

from stackl import errors
from stackl.broker.base import Item
from stackl.datastore.agents import AgentInstance
from stackl.usecases.agents import JOB_KIND, queue_of
from stackl.usecases.ports import Ports


async def find_job(ports: Ports, name: str, job_id: str) -> Item:
    """The job ``job_id`` of agent ``name``.

    Raises:
        JobNotFound: no such job, or it is not this agent's.
    """
    item = await ports.broker.get(job_id)
    if item is None or item.queue != queue_of(name) or item.kind != JOB_KIND:
        raise errors.JobNotFound(f"agent {name!r} has no job {job_id}")
    return item


def fence(item: Item, *, instance_id: str, attempt: int, finished_ok: bool = False) -> None:
    """Refuse a call for an attempt this instance does not (or no longer) hold.

    A released or expired attempt (its item back in ``queued``) is lost even before anyone re-claims it;
    ``finished_ok`` lets a repeated result through for an item this attempt already finished.

    Raises:
        JobNotFound: the attempt was never dispatched.
        LeaseLost: ``superseded`` (a later attempt exists) or ``lease_lost`` (expired, released, other holder).
    """
    if attempt > item.attempt or attempt < 1:
        raise errors.JobNotFound(f"job {item.id} has no attempt {attempt}")
    if attempt < item.attempt:
        raise errors.LeaseLost(
            f"job {item.id} attempt {attempt} is superseded by attempt {item.attempt}", reason="superseded"
        )
    if item.lease_owner != instance_id:
        raise errors.LeaseLost(f"job {item.id} attempt {attempt} is not leased to instance {instance_id}")
    if item.state == "queued" or (item.final and not finished_ok):
        raise errors.LeaseLost(f"job {item.id} attempt {attempt} is {item.state}: its lease ended")


async def find_instance(ports: Ports, name: str, instance_id: str) -> AgentInstance:
    """The registered instance ``instance_id`` of agent ``name``.

    Raises:
        AgentNotFound: the instance is not registered under this name (the agent registers again).
    """
    instance = await ports.agents.get_instance(instance_id)
    if instance is None or instance.name != name:
        raise errors.AgentNotFound(f"agent {name!r} has no registered instance {instance_id}; register first")
    return instance
