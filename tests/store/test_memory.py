"""MemoryMessageStore passes the IMessageStore contract."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.store.memory import MemoryMessageStore
from tests.store.contract import IMessageStoreContract


class MemoryMessageStoreTests(IMessageStoreContract, SynchronousTestCase):
    """The contract suite on the in-memory store."""

    def make_store(self, clock: Clock) -> Any:
        """A started memory store."""
        store = MemoryMessageStore(clock)
        self.successResultOf(store.start())
        return store
