"""SqlAgentRegistry: the AgentRegistry on the document store's SQLite or PostgreSQL database.

It runs in the store's own transactions (``SqlDocumentStore.transaction``), so it shares its engine, the SQLite
writer queue and the error translation: database trouble is ``StoreUnavailable``. Writes that must not
happen twice (an attempt's claim, a log seq, the first result) are ``INSERT … ON CONFLICT DO NOTHING`` or
an ``UPDATE … WHERE result IS NULL``, so concurrent API processes cannot both win.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, fields, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stackl import errors
from stackl.datastore import dialects
from stackl.datastore.agents import AgentInstance, AgentRegistry, Appended, JobAttempt, LogLine, fit_lines
from stackl.datastore.base import Transaction
from stackl.datastore.schema import UtcDateTime, agent_instances, agents, job_attempts, job_logs
from stackl.datastore.sql import SqlDocumentStore, SqlTransaction

_I = agent_instances.c
_A = job_attempts.c
_L = job_logs.c

# The statements of a job's hot path (claim, events, result) are built once, with bound parameters, so
# SQLAlchemy neither rebuilds them nor recomputes their cache keys on every call.
_JOB: sa.BindParameter[str] = sa.bindparam("p_job")
_ATTEMPT: sa.BindParameter[int] = sa.bindparam("p_attempt")
_SELECT_ATTEMPT = sa.select(job_attempts).where(_A.job_id == _JOB, _A.attempt == _ATTEMPT)
_SET_RESULT = (
    job_attempts.update()
    .where(_A.job_id == _JOB, _A.attempt == _ATTEMPT, _A.result.is_(None))
    .values(
        result=sa.bindparam("p_result", type_=job_attempts.c.result.type),
        result_at=sa.bindparam("p_at", type_=UtcDateTime()),
    )
    .returning(*job_attempts.c)
)


class SqlAgentRegistry(AgentRegistry):
    """The AgentRegistry on an open ``SqlDocumentStore``'s database."""

    def __init__(self, store: SqlDocumentStore) -> None:
        self._store = store
        flavour = dialects.Flavour(kind=store.kind)
        self._insert_agent = flavour.insert_if_absent(agents)
        self._insert_attempt = flavour.insert_if_absent(job_attempts)
        self._insert_line = flavour.insert_if_absent(job_logs)

    @asynccontextmanager
    async def _connection(
        self, *, readonly: bool = False, tx: Transaction | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A connection in a store transaction of its own, or in ``tx`` when given."""
        if tx is not None:
            if not isinstance(tx, SqlTransaction):
                raise TypeError(
                    f"SqlAgentRegistry needs a SqlDocumentStore transaction, not {type(tx).__name__}"
                )
            yield tx.connection
            return
        async with self._store.transaction(readonly=readonly) as own:
            if not isinstance(own, SqlTransaction):  # pragma: no cover - the store makes only these
                raise TypeError(type(own).__name__)
            yield own.connection

    @staticmethod
    async def _execute(
        connection: AsyncConnection, statement: sa.Executable, parameters: Any = None
    ) -> sa.CursorResult[Any]:
        with dialects.wrap_errors():
            return await connection.execute(statement, parameters)

    # --- instances ----------------------------------------------------------------------------------------
    async def register(self, instance: AgentInstance) -> AgentInstance:
        values = asdict(instance)
        async with self._connection() as connection:
            await self._execute(
                connection, self._insert_agent.values(name=instance.name, created_at=instance.registered_at)
            )
            row = (
                await self._execute(
                    connection, sa.select(agent_instances).where(_I.instance_id == instance.instance_id)
                )
            ).first()
            if row is None:
                await self._execute(connection, agent_instances.insert().values(**values))
                return instance
            values["registered_at"] = row.registered_at
            await self._execute(
                connection,
                agent_instances.update().where(_I.instance_id == instance.instance_id).values(**values),
            )
        return AgentInstance(**values)

    async def get_instance(self, instance_id: str) -> AgentInstance | None:
        async with self._connection(readonly=True) as connection:
            row = (
                await self._execute(
                    connection, sa.select(agent_instances).where(_I.instance_id == instance_id)
                )
            ).first()
        return _instance(row) if row is not None else None

    async def touch(self, instance_id: str, *, at: datetime, free_slots: int | None = None) -> bool:
        values: dict[str, Any] = {"last_seen": at}
        if free_slots is not None:
            values["free_slots"] = free_slots
        async with self._connection() as connection:
            result = await self._execute(
                connection, agent_instances.update().where(_I.instance_id == instance_id).values(**values)
            )
        return result.rowcount == 1

    async def deregister(self, instance_id: str, *, at: datetime) -> bool:
        async with self._connection() as connection:
            result = await self._execute(
                connection,
                agent_instances.update().where(_I.instance_id == instance_id).values(deregistered_at=at),
            )
        return result.rowcount == 1

    async def instances(self, *, name: str | None = None) -> list[AgentInstance]:
        statement = sa.select(agent_instances).order_by(_I.name, _I.registered_at, _I.instance_id)
        if name is not None:
            statement = statement.where(_I.name == name)
        async with self._connection(readonly=True) as connection:
            return [_instance(row) for row in await self._execute(connection, statement)]

    async def names(self) -> list[str]:
        async with self._connection(readonly=True) as connection:
            rows = await self._execute(connection, sa.select(agents.c.name).order_by(agents.c.name))
            return [str(row.name) for row in rows]

    async def delete_agent(self, name: str) -> bool:
        async with self._connection() as connection:
            await self._execute(connection, agent_instances.delete().where(_I.name == name))
            result = await self._execute(connection, agents.delete().where(agents.c.name == name))
        return result.rowcount == 1

    # --- attempts and logs --------------------------------------------------------------------------------
    async def record_claim(self, attempt: JobAttempt) -> JobAttempt:
        async with self._connection() as connection:
            await self._execute(connection, self._insert_attempt.values(**asdict(attempt)))
            found = await self._attempt(connection, attempt.job_id, attempt.attempt)
        return found or attempt

    async def record_claims(self, attempts: Sequence[JobAttempt], *, tx: Transaction | None = None) -> None:
        if not attempts:
            return
        async with self._connection(tx=tx) as connection:  # one statement, one writer's turn, for the batch
            await self._execute(connection, self._insert_attempt, [asdict(a) for a in attempts])

    async def _attempt(self, connection: AsyncConnection, job_id: str, attempt: int) -> JobAttempt | None:
        row = (
            await self._execute(connection, _SELECT_ATTEMPT, {"p_job": job_id, "p_attempt": attempt})
        ).first()
        return _job_attempt(row) if row is not None else None

    async def get_attempt(self, job_id: str, attempt: int) -> JobAttempt | None:
        async with self._connection(readonly=True) as connection:
            return await self._attempt(connection, job_id, attempt)

    async def attempts(self, job_id: str) -> list[JobAttempt]:
        statement = sa.select(job_attempts).where(_A.job_id == job_id).order_by(_A.attempt)
        async with self._connection(readonly=True) as connection:
            return [_job_attempt(row) for row in await self._execute(connection, statement)]

    async def mark_started(self, job_id: str, attempt: int, *, at: datetime) -> JobAttempt | None:
        async with self._connection() as connection:
            return await self._mark_started(connection, job_id, attempt, at=at)

    async def _mark_started(
        self, connection: AsyncConnection, job_id: str, attempt: int, *, at: datetime
    ) -> JobAttempt | None:
        row = (
            await self._execute(
                connection,
                job_attempts.update()
                .where(_A.job_id == job_id, _A.attempt == attempt, _A.started_at.is_(None))
                .values(started_at=at)
                .returning(*job_attempts.c),
            )
        ).first()
        if row is not None:
            return _job_attempt(row)
        return await self._attempt(connection, job_id, attempt)  # started already, or unknown

    async def append_logs(
        self, job_id: str, attempt: int, lines: Sequence[LogLine], *, max_bytes: int, at: datetime
    ) -> Appended:
        async with self._connection() as connection:
            record = await self._attempt(connection, job_id, attempt)
            if record is None:
                raise errors.NotFound(f"job {job_id} has no attempt {attempt}")
            return await self._append(connection, record, lines, max_bytes=max_bytes)

    async def record_progress(
        self,
        job_id: str,
        attempt: int,
        *,
        started_at: datetime | None,
        lines: Sequence[LogLine],
        max_bytes: int,
        at: datetime,
    ) -> tuple[JobAttempt, Appended] | None:
        async with self._connection() as connection:
            record = await self._attempt(connection, job_id, attempt)
            if record is None:
                return None
            if started_at is not None and record.started_at is None:
                record = replace(record, started_at=started_at)
            else:
                started_at = None  # nothing to change
            if not lines:
                if started_at is not None:
                    await self._execute(
                        connection,
                        job_attempts.update()
                        .where(_A.job_id == job_id, _A.attempt == attempt, _A.started_at.is_(None))
                        .values(started_at=started_at),
                    )
                return record, Appended(stored_seq=record.stored_seq, truncated=record.log_truncated)
            appended = await self._append(
                connection, record, lines, max_bytes=max_bytes, started_at=started_at
            )
        return replace(record, stored_seq=appended.stored_seq, log_truncated=appended.truncated), appended

    async def _append(
        self,
        connection: AsyncConnection,
        record: JobAttempt,
        lines: Sequence[LogLine],
        *,
        max_bytes: int,
        started_at: datetime | None = None,
    ) -> Appended:
        """Store the new lines of an attempt read in this transaction; update its counters (and start)."""
        appended, values = await self._store_lines(connection, record, lines, max_bytes=max_bytes)
        if started_at is not None:
            values["started_at"] = sa.func.coalesce(_A.started_at, sa.literal(started_at, UtcDateTime()))
        if values:
            await self._execute(
                connection,
                job_attempts.update()
                .where(_A.job_id == record.job_id, _A.attempt == record.attempt)
                .values(**values),
            )
        return appended

    async def _store_lines(
        self, connection: AsyncConnection, record: JobAttempt, lines: Sequence[LogLine], *, max_bytes: int
    ) -> tuple[Appended, dict[str, Any]]:
        """Insert the new lines of an attempt read in this transaction; the counter changes its row needs."""
        job_id, attempt = record.job_id, record.attempt
        if record.log_truncated or not lines:
            return Appended(stored_seq=record.stored_seq, truncated=record.log_truncated), {}
        # Only a seq up to the highest stored one can be a resend: a first batch needs no look-up.
        seqs = [line.seq for line in lines if line.seq <= record.stored_seq]
        known = set()
        if seqs:
            rows = await self._execute(
                connection,
                sa.select(_L.seq).where(_L.job_id == job_id, _L.attempt == attempt, _L.seq.in_(seqs)),
            )
            known = {int(row.seq) for row in rows}
        fitting, used, truncated = fit_lines(lines, known=known, used=record.log_bytes, max_bytes=max_bytes)
        if fitting:  # one statement for the batch, inside the (SQLite: single) writer's turn
            await self._execute(connection, self._insert_line, [asdict(line) for line in fitting])
        top = max([record.stored_seq, *(line.seq for line in fitting)])
        appended = Appended(stored_seq=top, truncated=truncated)
        if not (fitting or truncated):
            return appended, {}
        return appended, {"log_bytes": used, "log_truncated": truncated, "stored_seq": top}

    async def finish_attempt(
        self,
        job_id: str,
        attempt: int,
        result: dict[str, Any],
        *,
        started_at: datetime | None,
        lines: Sequence[LogLine],
        max_bytes: int,
        at: datetime,
        tx: Transaction | None = None,
    ) -> tuple[JobAttempt, bool] | None:
        async with self._connection(tx=tx) as connection:  # read, the new lines, one UPDATE of the attempt
            record = await self._attempt(connection, job_id, attempt)
            if record is None:
                return None
            if record.result is not None:
                return record, False
            _, values = await self._store_lines(connection, record, lines, max_bytes=max_bytes)
            if started_at is not None and record.started_at is None:
                values["started_at"] = started_at
            parameters = {"p_job": job_id, "p_attempt": attempt, "p_result": result, "p_at": at}
            parameters |= {f"v_{key}": value for key, value in values.items()}
            statement = _set_result_and(tuple(sorted(values)))
            row = (await self._execute(connection, statement, parameters)).first()
            if row is not None:
                return _job_attempt(row), True
            record = await self._attempt(connection, job_id, attempt)  # a concurrent result won
        return (record, False) if record is not None else None

    async def logs(self, job_id: str, *, attempt: int | None = None) -> list[LogLine]:
        statement = sa.select(job_logs).where(_L.job_id == job_id).order_by(_L.attempt, _L.seq)
        if attempt is not None:
            statement = statement.where(_L.attempt == attempt)
        async with self._connection(readonly=True) as connection:
            return [LogLine(**row._mapping) for row in await self._execute(connection, statement)]

    async def set_result(
        self, job_id: str, attempt: int, result: dict[str, Any], *, at: datetime
    ) -> tuple[JobAttempt, bool]:
        parameters = {"p_job": job_id, "p_attempt": attempt, "p_result": result, "p_at": at}
        async with self._connection() as connection:
            row = (await self._execute(connection, _SET_RESULT, parameters)).first()
            if row is not None:
                return _job_attempt(row), True
            record = await self._attempt(connection, job_id, attempt)
        if record is None:
            raise errors.NotFound(f"job {job_id} has no attempt {attempt}")
        return record, False


_SET_RESULT_AND: dict[tuple[str, ...], sa.Update] = {}


def _set_result_and(columns: tuple[str, ...]) -> sa.Update:
    """``_SET_RESULT`` that also sets ``columns`` (from parameters ``v_<column>``); built once per set."""
    statement = _SET_RESULT_AND.get(columns)
    if statement is None:
        changes = {name: sa.bindparam(f"v_{name}", type_=job_attempts.c[name].type) for name in columns}
        statement = _SET_RESULT_AND[columns] = _SET_RESULT.values(**changes)
    return statement


_INSTANCE_FIELDS = [f.name for f in fields(AgentInstance)]
_ATTEMPT_FIELDS = [f.name for f in fields(JobAttempt)]


def _instance(row: sa.Row[Any]) -> AgentInstance:
    return AgentInstance(**{name: row._mapping[name] for name in _INSTANCE_FIELDS})


def _job_attempt(row: sa.Row[Any]) -> JobAttempt:
    values = {name: row._mapping[name] for name in _ATTEMPT_FIELDS}
    values["log_truncated"] = bool(values["log_truncated"])
    return JobAttempt(**values)
