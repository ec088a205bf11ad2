"""Seams of the broker: who is told about group changes, and how later features hook into sends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class IConsumerIdsChangeListener(Interface):
    """Told when the live members of a consumer group change (Java ConsumerIdsChangeListener)."""

    def consumer_ids_changed(group: str, connections: list[Any]) -> None:
        """The members of ``group`` changed; ``connections`` are the remaining members'
        IRemotingConnections (each should get NOTIFY_CONSUMER_IDS_CHANGED at once)."""


class ISendMessageHook(Interface):
    """A step on the send path between "message built" and "store.put_message".

    Hooks run in order for every single message (not for batches). A hook may rewrite
    ``context.message`` (e.g. park a delayed message in ``SCHEDULE_TOPIC_XXXX``, turn a
    ``TRAN_MSG`` into a half message, route an exhausted retry to ``%DLQ%``), or refuse the send by
    raising an ``RMQError`` whose code and remark the producer receives. It may return a Deferred,
    which the send path awaits.
    """

    def before_put(context: Any) -> Deferred[None] | None:
        """Inspect/rewrite ``context`` (a :class:`rmq.broker.send.SendContext`) before the put."""
