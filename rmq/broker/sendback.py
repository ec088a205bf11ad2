"""CONSUMER_SEND_MSG_BACK (36): a consumer gives a message back; retry later or dead-letter it.

Protocol §5.6 and §10.8; Java counterpart: ``SendMessageProcessor.asyncConsumerSendMsgBack``.
Every client's shape is accepted: Java's full header, ali-ons' (typed values, ``delayLevel`` 0)
and cpp 1.0.1's minimal ``group``/``offset``/``delayLevel`` sent to the store address.

The original record is read by its commit-log offset; the copy goes to ``%RETRY%<group>`` with
delay level ``3 + reconsumeTimes`` (or the one asked for), parked in ``SCHEDULE_TOPIC_XXXX`` by
:func:`rmq.broker.schedule.park_delayed`, with ``RETRY_TOPIC`` (the first topic),
``ORIGIN_MESSAGE_ID`` (the first delivery's offset id), ``RECONSUME_TIME`` and
``reconsumeTimes + 1``.
Once ``reconsumeTimes`` reaches the group's ``retryMaxTimes`` (or the header's
``maxReconsumeTimes``, honoured from client version 121 on), or for ``delayLevel`` < 0, it goes to
``%DLQ%<group>`` queue 0 instead, created with 1 queue and perm 6 (§9.3).
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from rmq.broker.config import BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.broker.records import copy_record
from rmq.broker.schedule import park_delayed
from rmq.broker.subscription import SubscriptionGroupManager
from rmq.broker.topic import (
    PERM_READ,
    PERM_WRITE,
    TopicConfigManager,
    dlq_topic,
    is_writeable,
    retry_topic,
)
from rmq.common.asyncutil import deferred_api
from rmq.common.errors import RMQError
from rmq.common.message import (
    DELAY,
    ORIGIN_MESSAGE_ID,
    RECONSUME_TIME,
    RETRY_TOPIC,
    WAIT,
    decode_message,
)
from rmq.remoting.codes import ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from rmq.store.interfaces import IMessageStore

FAQ = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."
DLQ_NUMS_PER_GROUP = 1
#: Clients from this version on may set the group's max retries per message (MQVersion V3_4_9).
MAX_RECONSUME_TIMES_MIN_VERSION = 121


@implementer(IRequestProcessor)
class SendMessageBackProcessor:
    """CONSUMER_SEND_MSG_BACK (Java ``SendMessageProcessor.asyncConsumerSendMsgBack``)."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        identity: BrokerIdentity,
        topics: TopicConfigManager,
        groups: SubscriptionGroupManager,
        store: IMessageStore,
        max_delay_level: int,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.topics = topics
        self.groups = groups
        self.store = store
        self.max_delay_level = max_delay_level
        self._rng = rng or random.Random()

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> Deferred[RemotingCommand | None]:
        """Store the retry (or DLQ) copy; fires with SUCCESS and no header fields."""
        return self._process(request)

    @deferred_api
    async def _process(self, request: RemotingCommand) -> RemotingCommand | None:
        offset = request.ext_int("offset")
        group = request.ext_str("group")
        delay_level = request.ext_int("delayLevel", 0)
        max_header = request.ext_int("maxReconsumeTimes", None)
        group_config = self.groups.find_or_create(group)
        if group_config is None:
            raise RMQError(
                f"subscription group not exist, {group} " + FAQ,
                ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
            )
        if not self.config.is_master or not is_writeable(self.identity.permission):
            raise RMQError(
                f"the broker[{self.identity.broker_ip1}] sending message is forbidden",
                ResponseCode.NO_PERMISSION,
            )
        if group_config.retry_queue_nums <= 0:
            return new_response(request)
        new_topic = retry_topic(group)
        queue_id = self._rng.randrange(group_config.retry_queue_nums)
        topic_config = self.topics.create_topic_if_absent(
            new_topic, group_config.retry_queue_nums, PERM_READ | PERM_WRITE
        )
        if not is_writeable(topic_config.perm):
            raise RMQError(
                f"the topic[{new_topic}] sending message is forbidden", ResponseCode.NO_PERMISSION
            )
        raw = await self.store.look_message_by_offset(offset)
        if raw is None:
            raise RMQError(f"look message by offset failed, {offset}", ResponseCode.SYSTEM_ERROR)
        ext = decode_message(raw, decompress=False)
        props = dict(ext.properties)
        props.setdefault(RETRY_TOPIC, ext.topic)
        props.pop(WAIT, None)
        max_times = group_config.retry_max_times
        if request.version >= MAX_RECONSUME_TIMES_MIN_VERSION and max_header is not None:
            max_times = max_header
        dead = ext.reconsume_times >= max_times or delay_level < 0
        if dead:
            new_topic = dlq_topic(group)
            queue_id = 0
            dlq = self.topics.create_topic_if_absent(
                new_topic, DLQ_NUMS_PER_GROUP, PERM_READ | PERM_WRITE
            )
            if not is_writeable(dlq.perm):
                raise RMQError(
                    f"the topic[{new_topic}] sending message is forbidden",
                    ResponseCode.NO_PERMISSION,
                )
            props.pop(DELAY, None)
        else:
            level = delay_level if delay_level > 0 else 3 + ext.reconsume_times
            props[DELAY] = str(level)
        props.setdefault(ORIGIN_MESSAGE_ID, ext.offset_msg_id)
        props[RECONSUME_TIME] = str(ext.reconsume_times + 1)
        props[WAIT] = "false"
        msg = copy_record(ext, new_topic, queue_id, props, reconsume_times=ext.reconsume_times + 1)
        if not dead:
            park_delayed(msg, self.max_delay_level)
        result = await self.store.put_message(msg)
        if not result.status.stored:
            self.log.error(
                "Send-back of {id} for group {group} failed: {status}",
                id=ext.offset_msg_id,
                group=group,
                status=result.status.value,
            )
            return new_response(
                request, ResponseCode.SYSTEM_ERROR, result.remark or result.status.value
            )
        if dead:
            self.log.info(
                "Message {id} of group {group} moved to {dlq} after {times} consume attempts",
                id=props.get(ORIGIN_MESSAGE_ID),
                group=group,
                dlq=new_topic,
                times=ext.reconsume_times + 1,
            )
        return new_response(request)
