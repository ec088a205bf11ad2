"""QUERY_CONSUMER_OFFSET (14) and UPDATE_CONSUMER_OFFSET (15): protocol §5.3.

Java counterpart: the offset part of ``ConsumerManageProcessor``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rmq.broker.codetable import CodeTableProcessor
from rmq.broker.offsets import ConsumerOffsetManager
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection
from rmq.store.interfaces import IMessageStore

#: Java answers 0 for an offset-less group while the queue's first message is "in memory":
#: within this share of physical RAM behind the commit log's write position.
ACCESS_MESSAGE_IN_MEMORY_MAX_RATIO = 0.40


def physical_memory_bytes() -> int:
    """Total RAM (bytes); 8 GiB when the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class ConsumerOffsetProcessor(CodeTableProcessor):
    """Codes 14 and 15."""

    def __init__(
        self,
        offsets: ConsumerOffsetManager,
        store: IMessageStore,
        memory_bytes: Callable[[], int] = physical_memory_bytes,
    ) -> None:
        self.offsets = offsets
        self.store = store
        self._memory_bytes = memory_bytes
        self.handlers = {
            RequestCode.QUERY_CONSUMER_OFFSET: self.query_consumer_offset,
            RequestCode.UPDATE_CONSUMER_OFFSET: self.update_consumer_offset,
        }

    def _start_in_memory(self) -> bool:
        """Approximates Java's checkInDiskByConsumeOffset(…, 0) == false: the whole commit log
        fits in the in-memory share of RAM."""
        size = self.store.get_max_phy_offset() - self.store.get_min_phy_offset()
        return size < self._memory_bytes() * ACCESS_MESSAGE_IN_MEMORY_MAX_RATIO

    def query_consumer_offset(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Stored offset; else 0 for a young queue; else QUERY_NOT_FOUND (§5.3)."""
        group = request.ext_str("consumerGroup")
        topic = request.ext_str("topic")
        queue_id = request.ext_int("queueId")
        offset = self.offsets.query_offset(group, topic, queue_id)
        if offset >= 0:
            return new_response(request, ext_fields={"offset": offset})
        min_offset = self.store.get_min_offset_in_queue(topic, queue_id)
        if min_offset <= 0 and self._start_in_memory():
            return new_response(request, ext_fields={"offset": 0})
        return new_response(
            request,
            ResponseCode.QUERY_NOT_FOUND,
            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
            {},
        )

    def update_consumer_offset(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Store the offset as given (−1 included)."""
        self.offsets.commit_offset(
            request.ext_str("consumerGroup"),
            request.ext_str("topic"),
            request.ext_int("queueId"),
            request.ext_int("commitOffset"),
        )
        return new_response(request, ext_fields={})
