"""Request/reply on the broker: SEND_REPLY_MESSAGE (324) and SEND_REPLY_MESSAGE_V2 (325).

Java counterpart: ``ReplyMessageProcessor`` (RocketMQ 4.6+; docs/request-reply.md). A responder
sends the reply (topic ``<cluster>_REPLY_TOPIC``, properties ``MSG_TYPE=reply``,
``CORRELATION_ID``, ``REPLY_TO_CLIENT``, ``TTL``) with the send header; the broker

1. checks it like a send (permission, topic, sizes),
2. pushes it to the requester, found by the client id in ``REPLY_TO_CLIENT`` among the producer
   connections, with PUSH_REPLY_MESSAGE_TO_CLIENT (326) and a ``ReplyMessageRequestHeader``
   (``PUSH_REPLY_TIME`` added to the properties),
3. stores it in the reply topic when ``storeReplyMessageEnable`` (default true).

The answer is SUCCESS (``msgId`` "0", ``queueOffset`` 0, as Java) when the push was
acknowledged, else SYSTEM_ERROR with Java's remark; the store result is only logged.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rmq.broker.clients import ProducerManager
from rmq.broker.codetable import CodeTableProcessor
from rmq.broker.config import BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.broker.send import SendMessageProcessor, SendMessageRequestHeader
from rmq.common.asyncutil import now_ms
from rmq.common.errors import RMQError
from rmq.common.message import (
    PUSH_REPLY_TIME,
    REPLY_TO_CLIENT,
    TAGS,
    BrokerMessage,
    properties_to_string,
    string_to_properties,
    tags_hash,
)
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.interfaces import IRemotingConnection
from rmq.store.interfaces import IMessageStore, PutMessageStatus

#: Java ``Broker2Client.callClient`` waits this long for the requester's answer.
PUSH_TIMEOUT_S = 10.0

_STORED = (
    PutMessageStatus.PUT_OK,
    PutMessageStatus.FLUSH_DISK_TIMEOUT,
    PutMessageStatus.FLUSH_SLAVE_TIMEOUT,
    PutMessageStatus.SLAVE_NOT_AVAILABLE,
)


class ReplyMessageProcessor(CodeTableProcessor):
    """Codes 324 and 325 (Java ``ReplyMessageProcessor``)."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        identity: BrokerIdentity,
        send: SendMessageProcessor,
        producers: ProducerManager,
        store: IMessageStore,
        clock: IReactorTime,
    ) -> None:
        self.config = config
        self.identity = identity
        self.send = send
        self.producers = producers
        self.store = store
        self.clock = clock
        self._rng = random.Random()
        self.handlers = {
            RequestCode.SEND_REPLY_MESSAGE: self.send_reply,
            RequestCode.SEND_REPLY_MESSAGE_V2: self.send_reply,
        }

    def _base_fields(self) -> dict[str, str]:
        return {
            "MSG_REGION": self.config.region_id,
            "TRACE_ON": "true" if self.config.trace_on else "false",
        }

    async def send_reply(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Check, push to the requester, store; answer as Java does."""
        # The send header decoder knows the one-letter V2 keys under the V2 send code.
        as_send = RemotingCommand(
            code=RequestCode.SEND_MESSAGE_V2
            if request.code == RequestCode.SEND_REPLY_MESSAGE_V2
            else RequestCode.SEND_MESSAGE,
            opaque=request.opaque,
            ext_fields=request.ext_fields,
            body=request.body,
            serialize_type=request.serialize_type,
        )
        header = SendMessageRequestHeader.from_request(as_send)
        checked = self.send._check(request, header)
        if isinstance(checked, RemotingCommand):
            return checked
        queue_id = header.queue_id
        if queue_id < 0:
            queue_id = self._rng.randrange(99_999_999) % max(1, checked.write_queue_nums)
        born_host = getattr(connection, "remote_address", "") or "127.0.0.1:0"
        props = string_to_properties(header.properties)
        pushed, remark = await self._push(header, props, queue_id, request.body, born_host)
        fields: dict[str, Any] = self._base_fields()
        if pushed:
            fields.update(msgId="0", queueId=queue_id, queueOffset=0)
            response = new_response(request, ResponseCode.SUCCESS, None, fields)
        else:
            response = new_response(request, ResponseCode.SYSTEM_ERROR, remark, fields)
        if self.config.store_reply_message_enable:
            await self._store(header, props, queue_id, request.body, born_host)
        return response

    async def _push(
        self,
        header: SendMessageRequestHeader,
        props: dict[str, str],
        queue_id: int,
        body: bytes,
        born_host: str,
    ) -> tuple[bool, str]:
        """PUSH_REPLY_MESSAGE_TO_CLIENT to the requester; (acknowledged, remark)."""
        sender = props.get(REPLY_TO_CLIENT)
        if sender is None:
            self.log.warn("REPLY_TO_CLIENT is null, can not reply message")
            return False, f"reply message properties[{REPLY_TO_CLIENT}] is null"
        target = self.producers.find_connection(sender)
        if target is None:
            remark = f"push reply message fail, channel of <{sender}> not found."
            self.log.warn("{remark}", remark=remark)
            return False, remark
        pushed = dict(props)
        pushed[PUSH_REPLY_TIME] = str(now_ms(self.clock))
        push = new_request(
            RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT,
            {
                "producerGroup": header.producer_group,
                "topic": header.topic,
                "defaultTopic": header.default_topic,
                "defaultTopicQueueNums": header.default_topic_queue_nums,
                "queueId": header.queue_id,
                "sysFlag": header.sys_flag,
                "bornTimestamp": header.born_timestamp,
                "flag": header.flag,
                "properties": properties_to_string(pushed),
                "reconsumeTimes": header.reconsume_times,
                "unitMode": header.unit_mode,
                "bornHost": born_host,
                "storeHost": self.identity.broker_addr,
                "storeTimestamp": now_ms(self.clock),
            },
            body,
        )
        try:
            answer = await target.invoke(push, PUSH_TIMEOUT_S)
        except RMQError as e:
            self.log.warn("Push reply message to <{sender}> failed: {e}", sender=sender, e=e)
            return False, f"push reply message to {sender}fail."
        if answer.code != ResponseCode.SUCCESS:
            self.log.warn(
                "Push reply message to <{sender}> refused: {remark}",
                sender=sender,
                remark=answer.remark,
            )
            return False, f"push reply message to {sender}fail."
        return True, ""

    async def _store(
        self,
        header: SendMessageRequestHeader,
        props: dict[str, str],
        queue_id: int,
        body: bytes,
        born_host: str,
    ) -> None:
        """Put the reply in ``<cluster>_REPLY_TOPIC`` (its properties as the responder sent)."""
        msg = BrokerMessage(
            topic=header.topic,
            queue_id=queue_id,
            body=body,
            flag=header.flag,
            properties=props,
            properties_str=header.properties,
            tags_code=tags_hash(props.get(TAGS)),
            born_timestamp=header.born_timestamp,
            born_host=born_host,
            store_host=self.identity.broker_addr,
            sys_flag=header.sys_flag,
            reconsume_times=header.reconsume_times,
        )
        result = await self.store.put_message(msg)
        if result.status not in _STORED:
            self.log.warn(
                "Storing a reply message in {topic} failed: {status}",
                topic=header.topic,
                status=result.status.value,
            )


def install_reply(broker: Any) -> ReplyMessageProcessor:
    """Register the reply processor on a :class:`rmq.broker.service.Broker`."""
    processor = ReplyMessageProcessor(
        broker.config, broker.identity, broker.send, broker.producers, broker.store, broker.clock
    )
    broker.register_processor(processor.codes(), processor)
    return processor
