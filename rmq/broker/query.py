"""Offset, time and message queries: protocol §5.9 and §5.10.

GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), SEARCH_OFFSET_BY_TIMESTAMP (29),
GET_EARLIEST_MSG_STORETIME (32), VIEW_MESSAGE_BY_ID (33), QUERY_MESSAGE (12). Java counterparts:
``AdminBrokerProcessor`` (the first four), ``QueryMessageProcessor`` (the last two).
"""

from __future__ import annotations

from rmq.broker.codetable import CodeTableProcessor
from rmq.broker.config import BrokerConfig
from rmq.common.message import UNIQUE_KEY_QUERY
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection
from rmq.store.interfaces import IMessageStore


def queue_of(request: RemotingCommand) -> tuple[str, int]:
    """The ``topic`` and ``queueId`` header fields (both required)."""
    return request.ext_str("topic"), request.ext_int("queueId")


class QueryProcessor(CodeTableProcessor):
    """Codes 12, 29, 30, 31, 32, 33."""

    def __init__(self, config: BrokerConfig, store: IMessageStore) -> None:
        self.config = config
        self.store = store
        self.handlers = {
            RequestCode.GET_MAX_OFFSET: self.get_max_offset,
            RequestCode.GET_MIN_OFFSET: self.get_min_offset,
            RequestCode.SEARCH_OFFSET_BY_TIMESTAMP: self.search_offset_by_timestamp,
            RequestCode.GET_EARLIEST_MSG_STORETIME: self.get_earliest_msg_storetime,
            RequestCode.VIEW_MESSAGE_BY_ID: self.view_message_by_id,
            RequestCode.QUERY_MESSAGE: self.query_message,
        }

    def get_max_offset(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """The queue's max offset (one past its last message)."""
        offset = self.store.get_max_offset_in_queue(*queue_of(request))
        return new_response(request, ext_fields={"offset": offset})

    def get_min_offset(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """The queue's min offset."""
        offset = self.store.get_min_offset_in_queue(*queue_of(request))
        return new_response(request, ext_fields={"offset": offset})

    async def search_offset_by_timestamp(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """The queue offset of the message stored nearest ``timestamp`` (ms), as Java's
        ``getOffsetInQueueByTime`` (protocol §5.9)."""
        topic, queue_id = queue_of(request)
        offset = await self.store.get_offset_in_queue_by_time(
            topic, queue_id, request.ext_int("timestamp"), nearest=True
        )
        return new_response(request, ext_fields={"offset": offset})

    async def get_earliest_msg_storetime(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Store timestamp (ms) of the queue's first message."""
        ts = await self.store.get_earliest_message_time(*queue_of(request))
        return new_response(request, ext_fields={"timestamp": ts})

    async def view_message_by_id(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """The stored record at commit-log ``offset`` (the body), or SYSTEM_ERROR."""
        offset = request.ext_int("offset")
        record = await self.store.look_message_by_offset(offset)
        if record is None:
            return new_response(
                request,
                ResponseCode.SYSTEM_ERROR,
                f"can not find message by the offset, {offset}",
            )
        return new_response(request, body=bytes(record))

    async def query_message(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Messages by key (or unique key) within a time range, with the index's last update."""
        max_num = request.ext_int("maxNum")
        if request.ext_fields.get(UNIQUE_KEY_QUERY, "").lower() == "true":
            max_num = self.config.default_query_max_num
        max_num = max(0, min(max_num, self.config.max_msgs_num_batch))
        result = await self.store.query_message(
            request.ext_str("topic"),
            request.ext_str("key"),
            max_num,
            request.ext_int("beginTimestamp"),
            request.ext_int("endTimestamp"),
        )
        fields = {
            "indexLastUpdateTimestamp": result.index_last_update_timestamp,
            "indexLastUpdatePhyoffset": result.index_last_update_phyoffset,
        }
        if not result.messages:
            return new_response(
                request,
                ResponseCode.QUERY_NOT_FOUND,
                "can not find message, maybe time range not correct",
                fields,
            )
        return new_response(request, ext_fields=fields, body=result.body())
