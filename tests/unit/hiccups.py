"""In-memory store and broker whose database "goes away" on demand, for the store-hiccup tests.

``HiccupBroker`` raises ``BrokerUnavailable`` from the calls named in ``down`` (``"*"``: every call), as
``SqlBroker`` does when PostgreSQL restarts or a SQLite lock times out; ``HiccupStore`` refuses to open
transactions while ``down`` (``StoreUnavailable``). Otherwise both are the ordinary fakes.
"""

import builtins
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from stackl import errors
from stackl.broker.base import Item
from stackl.broker.memory import InMemoryBroker
from stackl.datastore.base import Transaction
from stackl.datastore.memory import InMemoryDocumentStore


class HiccupBroker(InMemoryBroker):
    """An in-memory broker; the calls named in ``down`` fail as if its database could not be reached."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down: set[str] = set()

    def _reach(self, call: str) -> None:
        if call in self.down or "*" in self.down:
            raise errors.BrokerUnavailable(f"the database is unavailable ({call})")

    async def heartbeat(self, item_id: str, **kwargs: Any) -> Item:
        self._reach("heartbeat")
        return await super().heartbeat(item_id, **kwargs)

    async def heartbeat_many(self, held: Sequence[tuple[str, int]], **kwargs: Any) -> dict[str, Item]:
        self._reach("heartbeat")
        return await super().heartbeat_many(held, **kwargs)

    async def get(self, item_id: str, **kwargs: Any) -> Item | None:
        self._reach("get")
        return await super().get(item_id, **kwargs)

    async def get_many(self, item_ids: Sequence[str]) -> dict[str, Item]:
        self._reach("get")
        return await super().get_many(item_ids)

    async def list(self, **kwargs: Any) -> builtins.list[Item]:
        self._reach("list")
        return await super().list(**kwargs)

    async def claim(self, **kwargs: Any) -> builtins.list[Item]:
        self._reach("claim")
        return await super().claim(**kwargs)

    async def release(self, item_id: str, **kwargs: Any) -> Item:
        self._reach("release")
        return await super().release(item_id, **kwargs)

    async def complete(self, item_id: str, **kwargs: Any) -> Item:
        self._reach("complete")
        return await super().complete(item_id, **kwargs)


class HiccupStore(InMemoryDocumentStore):
    """An in-memory store that refuses to open transactions while ``down``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down = False

    def transaction(self, *, readonly: bool = False) -> AbstractAsyncContextManager[Transaction]:
        return self._hiccup(readonly=readonly)

    @asynccontextmanager
    async def _hiccup(self, *, readonly: bool) -> AsyncIterator[Transaction]:
        if self.down:
            raise errors.StoreUnavailable("the database cannot be reached")
        async with super().transaction(readonly=readonly) as tx:
            yield tx
