"""SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320): protocol §5.1.

Java counterparts: ``SendMessageProcessor``, ``AbstractSendMessageProcessor``,
``SendMessageRequestHeader(V2)``. The processor decodes the header (long or one-letter keys, any
client dialect), checks topic, queue, sizes and permissions, auto-creates the topic when allowed,
builds :class:`BrokerMessage` values, runs the :class:`ISendMessageHook` list (delay, transactions,
retry/DLQ plug in there), bounds the puts in flight (SYSTEM_BUSY beyond the limit), and maps the
store's status to a response code.

cpp 1.0.1 sends batches on code 10 with ``batch="1"``; unlike Java (which stores the whole batch
encoding as one message) rmq stores it as a batch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from rmq.broker.config import BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.broker.interfaces import ISendMessageHook
from rmq.broker.subscription import SubscriptionGroupManager
from rmq.broker.topic import (
    MULTI_TAG,
    NOT_ALLOWED_SEND_TOPICS,
    PERM_READ,
    PERM_WRITE,
    RETRY_GROUP_TOPIC_PREFIX,
    TOPIC_MAX_LENGTH,
    TopicConfig,
    TopicConfigManager,
    dlq_topic,
    is_valid_name,
    is_writeable,
)
from rmq.common.errors import RMQError
from rmq.common.message import (
    CLUSTER,
    DELAY,
    PROPERTY_SEPARATOR,
    TAGS,
    WAIT,
    BrokerMessage,
    MessageSysFlag,
    decode_batch,
    properties_to_string,
    string_to_properties,
    tags_hash,
)
from rmq.remoting.codes import FLAG_RESPONSE, RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from rmq.store.interfaces import IMessageStore, PutMessageResult, PutMessageStatus

_T = TypeVar("_T")

FAQ = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."
MAX_PROPERTIES_BYTES = 32767

#: One-letter keys of SendMessageRequestHeaderV2 → SendMessageRequestHeader names.
V2_KEYS = {
    "a": "producerGroup",
    "b": "topic",
    "c": "defaultTopic",
    "d": "defaultTopicQueueNums",
    "e": "queueId",
    "f": "sysFlag",
    "g": "bornTimestamp",
    "h": "flag",
    "i": "properties",
    "j": "reconsumeTimes",
    "k": "unitMode",
    "l": "maxReconsumeTimes",
    "m": "batch",
    "n": "bname",
}

_STATUS_CODES = {
    PutMessageStatus.PUT_OK: ResponseCode.SUCCESS,
    PutMessageStatus.FLUSH_DISK_TIMEOUT: ResponseCode.FLUSH_DISK_TIMEOUT,
    PutMessageStatus.FLUSH_SLAVE_TIMEOUT: ResponseCode.FLUSH_SLAVE_TIMEOUT,
    PutMessageStatus.SLAVE_NOT_AVAILABLE: ResponseCode.SLAVE_NOT_AVAILABLE,
    PutMessageStatus.MESSAGE_ILLEGAL: ResponseCode.MESSAGE_ILLEGAL,
    PutMessageStatus.PROPERTIES_SIZE_EXCEEDED: ResponseCode.MESSAGE_ILLEGAL,
    PutMessageStatus.SERVICE_NOT_AVAILABLE: ResponseCode.SERVICE_NOT_AVAILABLE,
    PutMessageStatus.DISK_FULL: ResponseCode.SERVICE_NOT_AVAILABLE,
    PutMessageStatus.CREATE_MAPPED_FILE_FAILED: ResponseCode.SYSTEM_ERROR,
    PutMessageStatus.OS_PAGECACHE_BUSY: ResponseCode.SYSTEM_BUSY,
    PutMessageStatus.UNKNOWN_ERROR: ResponseCode.SYSTEM_ERROR,
}


def _truthy(value: str | None) -> bool:
    """A header boolean, lenient: ``true`` (any case) or cpp's ``1``."""
    return value is not None and value.strip().lower() in ("true", "1")


@attrs.define
class SendMessageRequestHeader:
    """The logical send header (V1 names), decoded from either key style."""

    producer_group: str
    topic: str
    default_topic: str
    default_topic_queue_nums: int
    queue_id: int
    sys_flag: int
    born_timestamp: int
    flag: int
    properties: str
    reconsume_times: int
    unit_mode: bool
    max_reconsume_times: int | None
    batch: bool

    @classmethod
    def from_request(cls, request: RemotingCommand) -> SendMessageRequestHeader:
        """Decode; HeaderError (SYSTEM_ERROR naming the field) when a required field is bad."""
        fields = request.ext_fields
        if request.code in (RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE) and (
            "b" in fields
        ):
            fields = {V2_KEYS.get(k, k): v for k, v in fields.items()}
        # Fast path: every present integer is plain ASCII digits, as clients send them.
        get = fields.get
        producer_group = get("producerGroup")
        topic = get("topic")
        queue_id = get("queueId")
        queue_nums = get("defaultTopicQueueNums", "4")
        sys_flag = get("sysFlag", "0")
        born = get("bornTimestamp", "0")
        flag = get("flag", "0")
        reconsume = get("reconsumeTimes", "0")
        max_times = get("maxReconsumeTimes")
        # One isdigit() over the concatenation checks all six; each must be non-empty.
        digits = (
            queue_id + queue_nums + sys_flag + born + flag + reconsume
            if queue_id and queue_nums and sys_flag and born and flag and reconsume
            else ""
        )
        if (
            producer_group is not None
            and topic is not None
            and digits.isdigit()
            and digits.isascii()
            and (max_times is None or (max_times.isdigit() and max_times.isascii()))
        ):
            assert queue_id is not None  # for mypy: digits is empty without it
            unit_mode = get("unitMode")
            batch = get("batch")
            return cls(
                producer_group,
                topic,
                get("defaultTopic", "TBW102"),
                int(queue_nums),
                int(queue_id),
                int(sys_flag),
                int(born),
                int(flag),
                get("properties", ""),
                int(reconsume),
                unit_mode is not None and _truthy(unit_mode),
                None if max_times is None else int(max_times),
                request.code == RequestCode.SEND_BATCH_MESSAGE
                or (batch is not None and _truthy(batch)),
            )
        return cls._from_fields(request, fields)

    @classmethod
    def _from_fields(
        cls, request: RemotingCommand, fields: dict[str, str]
    ) -> SendMessageRequestHeader:
        """The general decode with the typed accessors (signs, errors naming the field)."""
        cmd = RemotingCommand(code=request.code, opaque=request.opaque, ext_fields=fields)
        max_times = cmd.ext_int("maxReconsumeTimes", None)
        return cls(
            producer_group=cmd.ext_str("producerGroup"),
            topic=cmd.ext_str("topic"),
            default_topic=cmd.ext_str("defaultTopic", "TBW102"),
            default_topic_queue_nums=cmd.ext_int("defaultTopicQueueNums", 4),
            queue_id=cmd.ext_int("queueId"),
            sys_flag=cmd.ext_int("sysFlag", 0),
            born_timestamp=cmd.ext_int("bornTimestamp", 0),
            flag=cmd.ext_int("flag", 0),
            properties=cmd.ext_str("properties", ""),
            reconsume_times=cmd.ext_int("reconsumeTimes", 0),
            unit_mode=_truthy(cmd.ext_fields.get("unitMode")),
            max_reconsume_times=max_times,
            batch=request.code == RequestCode.SEND_BATCH_MESSAGE
            or _truthy(cmd.ext_fields.get("batch")),
        )


@attrs.define
class SendContext:
    """One single-message send as the hooks see it; hooks may replace ``message``."""

    header: SendMessageRequestHeader
    topic_config: TopicConfig
    message: BrokerMessage
    sender_address: str
    sender_version: int
    #: Set by a hook that answered the send itself (no put happens; this result is returned).
    result: PutMessageResult | None = None


class PutLimiter:
    """Bounds puts waiting for the store; beyond ``capacity`` the send gets SYSTEM_BUSY."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0

    def acquire(self) -> None:
        """Take a slot, or raise RMQError(SYSTEM_BUSY) naming the limit."""
        if self.in_flight >= self.capacity:
            raise RMQError(
                f"[REJECTREQUEST]system busy: {self.in_flight} puts waiting for the store, "
                f"limit sendThreadPoolQueueCapacity={self.capacity}",
                ResponseCode.SYSTEM_BUSY,
            )
        self.in_flight += 1

    def release(self) -> None:
        """Give a slot back."""
        self.in_flight -= 1


@implementer(IRequestProcessor)
class SendMessageProcessor:
    """Codes 10, 310, 320 (Java ``SendMessageProcessor``)."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        identity: BrokerIdentity,
        topics: TopicConfigManager,
        groups: SubscriptionGroupManager,
        store: IMessageStore,
        clock: IReactorTime,
        hooks: Sequence[ISendMessageHook] = (),
        limiter: PutLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.topics = topics
        self.groups = groups
        self.store = store
        self.clock = clock
        self.hooks: list[ISendMessageHook] = list(hooks)
        self.limiter = limiter or PutLimiter(config.send_thread_pool_queue_capacity)
        self._rng = rng or random.Random()

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | Deferred[RemotingCommand | None]:
        """Answer a send: an error response at once, or a Deferred firing with the response
        once the store answered (no coroutine on this hot path unless a hook needs one)."""
        header = SendMessageRequestHeader.from_request(request)
        checked = self._check(request, header)
        if isinstance(checked, RemotingCommand):
            return checked
        topic_config = checked
        queue_id = header.queue_id
        if queue_id < 0:
            queue_id = self._rng.randrange(max(1, topic_config.write_queue_nums))
        born_host = getattr(connection, "remote_address", "") or "127.0.0.1:0"
        sys_flag = header.sys_flag
        if topic_config.topic_filter_type == MULTI_TAG:
            sys_flag |= MessageSysFlag.MULTI_TAGS_FLAG
        if header.batch:
            answer = self._send_batch(request, header, queue_id, born_host, sys_flag)
        else:
            answer = self._send_one(request, header, topic_config, queue_id, born_host, sys_flag)
        return cast("RemotingCommand | Deferred[RemotingCommand | None]", answer)

    def _base_fields(self) -> dict[str, str]:
        return {
            "MSG_REGION": self.config.region_id,
            "TRACE_ON": "true" if self.config.trace_on else "false",
        }

    def _error(self, request: RemotingCommand, code: int, remark: str) -> RemotingCommand:
        return new_response(request, code, remark, self._base_fields())

    def _check(
        self, request: RemotingCommand, header: SendMessageRequestHeader
    ) -> TopicConfig | RemotingCommand:
        """Permission, topic and size checks (AbstractSendMessageProcessor.msgCheck)."""
        if not self.config.is_master or not is_writeable(self.identity.permission):
            return self._error(
                request,
                ResponseCode.NO_PERMISSION,
                f"the broker[{self.identity.broker_ip1}] sending message is forbidden",
            )
        topic = header.topic
        if not topic.strip():
            return self._error(
                request, ResponseCode.MESSAGE_ILLEGAL, "The specified topic is blank."
            )
        if len(topic) > TOPIC_MAX_LENGTH:
            return self._error(
                request,
                ResponseCode.MESSAGE_ILLEGAL,
                f"topic name is {len(topic)} characters, longer than the limit {TOPIC_MAX_LENGTH}",
            )
        if not is_valid_name(topic):
            return self._error(
                request,
                ResponseCode.MESSAGE_ILLEGAL,
                f"topic name [{topic}] contains illegal characters, allowing only "
                "^[%|a-zA-Z0-9_-]+$",
            )
        if topic in NOT_ALLOWED_SEND_TOPICS:
            return self._error(
                request,
                ResponseCode.NO_PERMISSION,
                f"Sending message to topic[{topic}] is forbidden.",
            )
        body_len = len(request.body)
        if body_len > self.config.max_message_size:
            return self._error(
                request,
                ResponseCode.MESSAGE_ILLEGAL,
                f"message body size {body_len} bytes exceeds the limit "
                f"maxMessageSize={self.config.max_message_size}",
            )
        if len(header.properties.encode("utf-8")) > MAX_PROPERTIES_BYTES:
            return self._error(
                request,
                ResponseCode.MESSAGE_ILLEGAL,
                f"message properties exceed the limit of {MAX_PROPERTIES_BYTES} bytes",
            )
        config = self.topics.select(topic)
        if config is None:
            if topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
                config = self.topics.create_topic_if_absent(topic, 1, PERM_READ | PERM_WRITE)
            else:
                config = self.topics.create_topic_in_send(
                    topic,
                    header.default_topic,
                    header.default_topic_queue_nums,
                    0,
                )
        if config is None:
            return self._error(
                request,
                ResponseCode.TOPIC_NOT_EXIST,
                f"topic[{topic}] not exist, apply first please!" + FAQ,
            )
        if not is_writeable(config.perm):
            return self._error(
                request,
                ResponseCode.NO_PERMISSION,
                f"the topic[{topic}] sending message is forbidden",
            )
        queue_limit = max(config.write_queue_nums, config.read_queue_nums)
        if header.queue_id >= queue_limit:
            return self._error(
                request,
                ResponseCode.SYSTEM_ERROR,
                f"request queueId[{header.queue_id}] is illegal, topic {topic} has "
                f"{queue_limit} queues, Producer: {header.producer_group}",
            )
        return config

    def _retry_redirect(
        self, header: SendMessageRequestHeader, sender_version: int, msg: BrokerMessage
    ) -> str | None:
        """§5.1 step 5 for ``%RETRY%`` topics: group check; exhausted retries go to ``%DLQ%``.

        Returns an error remark (str) for an unknown group, None otherwise; rewrites ``msg``.
        """
        group = header.topic[len(RETRY_GROUP_TOPIC_PREFIX) :]
        group_config = self.groups.find_or_create(group)
        if group_config is None:
            return f"subscription group not exist, {group}" + FAQ
        max_times = group_config.retry_max_times
        if sender_version >= 121 and header.max_reconsume_times is not None:
            max_times = header.max_reconsume_times
        if header.reconsume_times >= max_times:
            dlq = dlq_topic(group)
            self.topics.create_topic_if_absent(dlq, 1, PERM_READ | PERM_WRITE)
            msg.topic = dlq
            msg.queue_id = 0
            if DELAY in msg.properties:
                del msg.properties[DELAY]
                msg.properties_str = ""
        return None

    def _put(
        self,
        request: RemotingCommand,
        put: Callable[[], Deferred[PutMessageResult]],
        reply_queue_id: int,
    ) -> RemotingCommand | Deferred[RemotingCommand]:
        """Take an in-flight slot (or answer SYSTEM_BUSY), put, and map the result."""
        try:
            self.limiter.acquire()
        except RMQError as e:
            return self._error(request, e.code, e.remark)
        try:
            d = put()
        except BaseException:
            self.limiter.release()
            raise
        if d.called and not d.paused and type(d.result) is PutMessageResult:
            # The store answered at once (ASYNC_FLUSH): answer without a callback chain.
            self.limiter.release()
            return self._response(request, d.result, reply_queue_id)
        d.addBoth(self._released)
        return d.addCallback(self._response_to, request, reply_queue_id)

    def _released(self, result: _T) -> _T:
        self.limiter.release()
        return result

    def _response_to(
        self, result: PutMessageResult, request: RemotingCommand, queue_id: int
    ) -> RemotingCommand:
        return self._response(request, result, queue_id)

    def _send_one(
        self,
        request: RemotingCommand,
        header: SendMessageRequestHeader,
        topic_config: TopicConfig,
        queue_id: int,
        born_host: str,
        sys_flag: int,
    ) -> RemotingCommand | Deferred[RemotingCommand]:
        props = string_to_properties(header.properties)
        props[CLUSTER] = self.identity.cluster_name
        stored_props = props
        if WAIT in props:  # not stored (Java drops it too)
            stored_props = props.copy()
            del stored_props[WAIT]
        msg = BrokerMessage(
            topic=header.topic,
            queue_id=queue_id,
            body=request.body,
            flag=header.flag,
            properties=props,
            properties_str=properties_to_string(stored_props),
            tags_code=tags_hash(props.get(TAGS)),
            born_timestamp=header.born_timestamp,
            born_host=born_host,
            store_host=self.identity.broker_addr,
            sys_flag=sys_flag,
            reconsume_times=header.reconsume_times,
        )
        if header.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            problem = self._retry_redirect(header, request.version, msg)
            if isinstance(problem, str):
                return self._error(request, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, problem)
        # The producer is told the queue it asked for, also when a hook parks the message
        # elsewhere (delay level, half message), as Java answers.
        reply_queue_id = msg.queue_id
        context = SendContext(header, topic_config, msg, born_host, request.version)
        for index, hook in enumerate(self.hooks):
            maybe = hook.before_put(context)
            if maybe is not None:
                return Deferred.fromCoroutine(
                    self._finish_hooks_async(request, context, maybe, index + 1, reply_queue_id)
                )
            if context.result is not None:
                break
        return self._put_single(request, context, reply_queue_id)

    async def _finish_hooks_async(
        self,
        request: RemotingCommand,
        context: SendContext,
        pending: Deferred[None],
        next_index: int,
        reply_queue_id: int,
    ) -> RemotingCommand:
        """The rest of the hook chain once a hook returned a Deferred."""
        await pending
        for hook in self.hooks[next_index:]:
            if context.result is not None:
                break
            maybe = hook.before_put(context)
            if maybe is not None:
                await maybe
        answer = self._put_single(request, context, reply_queue_id)
        if isinstance(answer, Deferred):
            return await answer
        return answer

    def _put_single(
        self, request: RemotingCommand, context: SendContext, reply_queue_id: int
    ) -> RemotingCommand | Deferred[RemotingCommand]:
        if context.result is not None:
            return self._response(request, context.result, reply_queue_id)
        message = context.message
        return self._put(request, lambda: self.store.put_message(message), reply_queue_id)

    def _send_batch(
        self,
        request: RemotingCommand,
        header: SendMessageRequestHeader,
        queue_id: int,
        born_host: str,
        sys_flag: int,
    ) -> RemotingCommand | Deferred[RemotingCommand]:
        if header.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            return self._error(
                request, ResponseCode.MESSAGE_ILLEGAL, "batch request does not support retry group"
            )
        try:
            entries = decode_batch(request.body, header.topic)
        except ValueError as e:
            return self._error(request, ResponseCode.MESSAGE_ILLEGAL, f"bad batch body: {e}")
        if not entries:
            return self._error(request, ResponseCode.MESSAGE_ILLEGAL, "empty batch")
        batch_props = string_to_properties(header.properties)
        batch_props[CLUSTER] = self.identity.cluster_name
        batch_str = properties_to_string(batch_props)
        msgs = []
        for entry in entries:
            inner = properties_to_string(entry.properties)
            if inner and not inner.endswith(PROPERTY_SEPARATOR):
                inner += PROPERTY_SEPARATOR
            merged = dict(entry.properties)
            merged.update(batch_props)
            msgs.append(
                BrokerMessage(
                    topic=header.topic,
                    queue_id=queue_id,
                    body=entry.body,
                    flag=entry.flag,
                    properties=merged,
                    properties_str=inner + batch_str,
                    tags_code=tags_hash(entry.properties.get(TAGS)),
                    born_timestamp=header.born_timestamp,
                    born_host=born_host,
                    store_host=self.identity.broker_addr,
                    sys_flag=sys_flag,
                    reconsume_times=header.reconsume_times,
                )
            )
        return self._put(request, lambda: self.store.put_messages(msgs), queue_id)

    def _response(
        self, request: RemotingCommand, result: PutMessageResult, queue_id: int
    ) -> RemotingCommand:
        status = result.status
        if status is PutMessageStatus.PUT_OK:
            # The hot path: the response built directly with its wire strings.
            config = self.config
            return RemotingCommand(
                code=ResponseCode.SUCCESS,
                opaque=request.opaque,
                flag=FLAG_RESPONSE,
                ext_fields={
                    "MSG_REGION": config.region_id,
                    "TRACE_ON": "true" if config.trace_on else "false",
                    "msgId": result.msg_id,
                    "queueId": str(queue_id),
                    "queueOffset": str(result.queue_offset),
                },
                serialize_type=request.serialize_type,
                ext_fields_present=True,
            )
        code = _STATUS_CODES.get(status, ResponseCode.SYSTEM_ERROR)
        fields: dict[str, Any] = self._base_fields()
        if status.stored:
            fields.update(msgId=result.msg_id, queueId=queue_id, queueOffset=result.queue_offset)
            remark = None if code == ResponseCode.SUCCESS else status.value
            return new_response(request, code, remark, fields)
        remark = result.remark or result.status.value
        if result.status is PutMessageStatus.MESSAGE_ILLEGAL and not result.remark:
            remark = (
                f"the message is illegal, maybe msg body or properties length not matched; "
                f"body limit maxMessageSize={self.config.max_message_size}, properties limit "
                f"{MAX_PROPERTIES_BYTES} bytes"
            )
        self.log.warn(
            "Put to {topic} failed: {status} {remark}",
            topic=request.ext_fields.get("topic", request.ext_fields.get("b")),
            status=result.status.value,
            remark=remark,
        )
        return new_response(request, code, remark, fields)
