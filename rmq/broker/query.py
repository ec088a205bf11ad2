"""Offset, time and message queries: protocol §5.9 and §5.10.

GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), SEARCH_OFFSET_BY_TIMESTAMP (29),
GET_EARLIEST_MSG_STORETIME (32), VIEW_MESSAGE_BY_ID (33), QUERY_MESSAGE (12). Java counterparts:
``AdminBrokerProcessor`` (the first four), ``QueryMessageProcessor`` (the last two).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from rmq.broker.config import BrokerConfig
from rmq.common.asyncutil import deferred_api
from rmq.common.errors import RMQError
from rmq.common.message import UNIQUE_KEY_QUERY
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from rmq.store.interfaces import IMessageStore


@implementer(IRequestProcessor)
class QueryProcessor:
    """Codes 12, 29, 30, 31, 32, 33."""

    def __init__(self, config: BrokerConfig, store: IMessageStore) -> None:
        self.config = config
        self.store = store

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> Deferred[RemotingCommand | None]:
        """Dispatch on the request code."""
        return self._process(request)

    @deferred_api
    async def _process(self, request: RemotingCommand) -> RemotingCommand | None:
        code = request.code
        if code == RequestCode.GET_MAX_OFFSET:
            offset = self.store.get_max_offset_in_queue(
                request.ext_str("topic"), request.ext_int("queueId")
            )
            return new_response(request, ext_fields={"offset": offset})
        if code == RequestCode.GET_MIN_OFFSET:
            offset = self.store.get_min_offset_in_queue(
                request.ext_str("topic"), request.ext_int("queueId")
            )
            return new_response(request, ext_fields={"offset": offset})
        if code == RequestCode.SEARCH_OFFSET_BY_TIMESTAMP:
            offset = await self.store.get_offset_in_queue_by_time(
                request.ext_str("topic"), request.ext_int("queueId"), request.ext_int("timestamp")
            )
            return new_response(request, ext_fields={"offset": offset})
        if code == RequestCode.GET_EARLIEST_MSG_STORETIME:
            ts = await self.store.get_earliest_message_time(
                request.ext_str("topic"), request.ext_int("queueId")
            )
            return new_response(request, ext_fields={"timestamp": ts})
        if code == RequestCode.VIEW_MESSAGE_BY_ID:
            offset = request.ext_int("offset")
            record = await self.store.look_message_by_offset(offset)
            if record is None:
                return new_response(
                    request,
                    ResponseCode.SYSTEM_ERROR,
                    f"can not find message by the offset, {offset}",
                )
            return new_response(request, body=bytes(record))
        if code == RequestCode.QUERY_MESSAGE:
            return await self._query_message(request)
        raise RMQError(
            f" request type {code} not supported", ResponseCode.REQUEST_CODE_NOT_SUPPORTED
        )

    async def _query_message(self, request: RemotingCommand) -> RemotingCommand:
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
