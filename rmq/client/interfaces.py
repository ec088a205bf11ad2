"""Interfaces of the client: queue allocation, queue selection and offset storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from rmq.client.message_queue import MessageQueue


class IAllocateStrategy(Interface):
    """How a consumer group splits a topic's queues (Java ``AllocateMessageQueueStrategy``).

    Every member of a group must use the same strategy, or queues are consumed twice or never.
    """

    name: str = Attribute("Strategy name as Java reports it (``AVG``, ``AVG_BY_CIRCLE``, ...)")

    def allocate(
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        """Return the queues ``current_cid`` owns; ``mq_all`` and ``cid_all`` come sorted."""


class IMessageQueueSelector(Interface):
    """Picks the queue of an ordered send (Java ``MessageQueueSelector``)."""

    def select(mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue:
        """Return one of ``mqs`` for ``msg``; ``arg`` is the caller's ordering key."""


class IOffsetStore(Interface):
    """Where a consumer keeps its progress (Java ``OffsetStore``): broker or local file."""

    def load() -> Deferred[None]:
        """Load persisted offsets (local store); fires when done."""

    def update_offset(mq: MessageQueue, offset: int, increase_only: bool) -> None:
        """Set the in-memory next offset to consume for ``mq``."""

    def read_offset(mq: MessageQueue, from_store: bool) -> Deferred[int]:
        """Fire with the offset of ``mq``: memory, or the store when ``from_store``; -1 if none."""

    def persist(mqs: Sequence[MessageQueue]) -> Deferred[None]:
        """Write the in-memory offsets of ``mqs`` to the store."""

    def remove_offset(mq: MessageQueue) -> None:
        """Forget the in-memory offset of ``mq`` (queue released)."""

    def offsets() -> dict[MessageQueue, int]:
        """A copy of the in-memory table."""

    def current(mq: MessageQueue) -> int:
        """The in-memory next offset of ``mq``; -1 if none (cheap: used on every pull)."""


class ITransactionListener(Interface):
    """The local-transaction side of a transactional producer (Java ``TransactionListener``).

    Both methods return a ``LocalTransactionState`` (``rmq.client.transaction``), or a Deferred
    (or coroutine) firing with one. ``None`` and exceptions count as ``UNKNOW``: the broker then
    asks again later with ``check_local_transaction``.
    """

    def execute_local_transaction(msg: Any, arg: Any) -> Any:
        """Run the local transaction for the half message ``msg`` just stored; ``arg`` is the
        caller's argument to ``send_message_in_transaction``."""

    def check_local_transaction(msg: Any) -> Any:
        """The broker asks about ``msg`` (a ``MessageExt``, real topic, ``UNIQ_KEY`` property =
        transaction id): return the transaction's outcome."""
