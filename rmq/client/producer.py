"""The Producer (Java ``DefaultMQProducer``): Deferred-based sends over SEND_MESSAGE_V2.

Sends carry a JSON header with string values and one-letter keys (``SendMessageRequestHeaderV2``),
version ≥ 401, and a ``UNIQ_KEY`` in Java's layout. Many sends may be in flight; the bound (count
and bytes) makes an over-eager caller wait on a Deferred instead of growing a queue.
"""

from __future__ import annotations

import re
import socket
import zlib
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.client.api import (
    DEFAULT_TOPIC,
    RETRY_GROUP_TOPIC_PREFIX,
    SendResult,
    SendStatus,
    TopicRoute,
)
from rmq.client.flowcontrol import InFlightLimiter
from rmq.client.instance import (
    INNER_PRODUCER_GROUP,
    ClientMember,
    MQClientInstance,
    RemotingFactory,
)
from rmq.client.interfaces import IMessageQueueSelector
from rmq.client.latency import LatencyFaultTolerance
from rmq.client.message_queue import MessageQueue
from rmq.client.reply import RequestTimeoutError, create_correlation_id, is_reply
from rmq.common.asyncutil import deferred_api, now_ms
from rmq.common.errors import MQBrokerError, MQClientError, RemotingError, RMQError
from rmq.common.message import (
    CORRELATION_ID,
    DELAY,
    KEYS,
    MSG_TYPE,
    REPLY_TO_CLIENT,
    TAGS,
    TTL,
    UNIQ_KEY,
    WAIT,
    Message,
    MessageExt,
    MessageSysFlag,
    UniqueIdGenerator,
    encode_batch,
    properties_to_string,
)
from rmq.remoting.codes import RequestCode, ResponseCode

_T = TypeVar("_T")

MAX_MESSAGE_SIZE = 4 * 1024 * 1024
COMPRESS_OVER = 4 * 1024
_TOPIC_RE = re.compile(r"^[%|a-zA-Z0-9_-]+$")
_FORBIDDEN_TOPICS = {
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    DEFAULT_TOPIC,
}
# Response codes after which Java retries a send on another broker.
RETRY_CODES = {
    ResponseCode.TOPIC_NOT_EXIST,
    ResponseCode.SERVICE_NOT_AVAILABLE,
    ResponseCode.SYSTEM_ERROR,
    ResponseCode.NO_PERMISSION,
    ResponseCode.NO_BUYER_ID,
    ResponseCode.NOT_IN_CURRENT_UNIT,
}


def check_topic(topic: str) -> None:
    """Java ``Validators.checkTopic`` + the forbidden system topics; MQClientError if bad."""
    if not topic or not topic.strip():
        raise MQClientError("The specified topic is blank")
    if len(topic) > 127:
        raise MQClientError("The specified topic is longer than topic max length 127.")
    if not _TOPIC_RE.match(topic):
        raise MQClientError(f"The specified topic[{topic}] contains illegal characters")
    if topic in _FORBIDDEN_TOPICS:
        raise MQClientError(f"Sending message to topic[{topic}] is forbidden.")


def check_message(msg: Message, max_size: int = MAX_MESSAGE_SIZE) -> None:
    """Topic rules, non-empty body, body ≤ ``max_size``; MQClientError otherwise."""
    check_topic(msg.topic)
    _check_body(msg.body, max_size)


def _check_body(body: bytes, max_size: int) -> None:
    if not body:
        raise MQClientError("the message body length is zero")
    if len(body) > max_size:
        raise MQClientError(f"the message body size over max value, MAX: {max_size}")


def new_message(
    topic: str,
    body: bytes,
    *,
    tags: str | None = None,
    keys: str | Sequence[str] | None = None,
    delay_level: int = 0,
    properties: dict[str, str] | None = None,
    flag: int = 0,
) -> Message:
    """Build a Message like Java's constructors (WAIT=true, TAGS, KEYS, DELAY)."""
    props = dict(properties or {})
    if tags:
        props[TAGS] = tags
    if keys:
        props[KEYS] = keys if isinstance(keys, str) else " ".join(keys)
    if delay_level > 0:
        props[DELAY] = str(delay_level)
    props.setdefault(WAIT, "true")
    return Message(topic, body, flag, props)


@attrs.define
class _FirstAttempt:
    """What the callbacks of :meth:`Producer._send_fast` need to judge the first attempt and
    go on with the retries (``begin``: clock seconds when it was sent)."""

    msg: Message
    body: bytes
    sys_flag: int
    timeout: float
    begin: float
    mq: MessageQueue


class TopicPublishInfo:
    """Writable queues of a topic and a round-robin index (Java ``TopicPublishInfo``)."""

    def __init__(self, queues: list[MessageQueue], route: TopicRoute | None) -> None:
        self.queues = queues
        self.route = route
        self.index = 0
        #: Whether a retry can avoid the broker that just failed.
        self._several_brokers = len({q.broker_name for q in queues}) > 1

    def next_queue(
        self, lft: LatencyFaultTolerance | None, last_broker: str | None
    ) -> MessageQueue:
        """Round-robin, skipping unavailable brokers and the one that just failed."""
        n = len(self.queues)
        for _ in range(n):
            mq = self.queues[self.index % n]
            self.index += 1
            if mq.broker_name == last_broker and self._several_brokers:
                continue
            if lft is None or lft.is_available(mq.broker_name):
                return mq
        if lft is not None:
            best = lft.pick_one_at_least()
            cands = [q for q in self.queues if q.broker_name == best and best != last_broker]
            if cands:
                mq = cands[self.index % len(cands)]
                self.index += 1
                return mq
        for _ in range(n):
            mq = self.queues[self.index % n]
            self.index += 1
            if mq.broker_name != last_broker:
                return mq
        mq = self.queues[self.index % n]
        self.index += 1
        return mq


class Producer(ClientMember):
    """Sends messages; every method returns a Deferred.

    Args:
        group: producer group.
        namesrv_addr: ``"host:port;host:port"``; else the ``rocketmq.namesrv.addr`` property,
            ``NAMESRV_ADDR``, or the HTTP endpoint ``rocketmq.namesrv.domain``.
        clock: reactor for timers and time (``None`` → the global reactor).
        send_timeout: seconds for all attempts of one send (Java ``sendMsgTimeout`` 3 s).
        retry_times: extra attempts on another broker (Java ``retryTimesWhenSendFailed`` 2).
        max_in_flight / max_in_flight_bytes: the bound on concurrent sends.
        compress_over: bodies at least this long are zlib-compressed (4 KiB).
        latency_avoidance: Java's ``sendLatencyFaultEnable``.
    """

    log = Logger()
    role = "producer"

    def __init__(
        self,
        group: str,
        namesrv_addr: str | None = None,
        clock: IReactorTime | None = None,
        *,
        instance_name: str = "DEFAULT",
        client_ip: str | None = None,
        properties: dict[str, str] | None = None,
        send_timeout: float = 3.0,
        retry_times: int = 2,
        max_in_flight: int = 1000,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
        max_message_size: int = MAX_MESSAGE_SIZE,
        compress_over: int = COMPRESS_OVER,
        compress_level: int = 5,
        default_topic_queue_nums: int = 4,
        latency_avoidance: bool = True,
        retry_another_broker_when_not_store_ok: bool = False,
        poll_name_server_interval: float = 30.0,
        heartbeat_broker_interval: float = 30.0,
        remoting_factory: RemotingFactory | None = None,
    ) -> None:
        super().__init__(
            group,
            namesrv_addr,
            clock,
            instance_name=instance_name,
            client_ip=client_ip,
            properties=properties,
            remoting_factory=remoting_factory,
            request_timeout=send_timeout,
            poll_name_server_interval=poll_name_server_interval,
            heartbeat_broker_interval=heartbeat_broker_interval,
        )
        self.send_timeout = send_timeout
        self.retry_times = retry_times
        self.max_message_size = max_message_size
        self.compress_over = compress_over
        self.compress_level = compress_level
        self.default_topic_queue_nums = default_topic_queue_nums
        self._queue_nums_str = str(default_topic_queue_nums)
        self.retry_another_broker_when_not_store_ok = retry_another_broker_when_not_store_ok
        self.limiter = InFlightLimiter(max_in_flight, max_in_flight_bytes)
        self.lft = LatencyFaultTolerance(self.clock) if latency_avoidance else None
        self._publish: dict[str, TopicPublishInfo] = {}
        self._ids: UniqueIdGenerator | None = None
        self._checked_topics: set[str] = set()
        self.transaction_check_hook: Any = None

    @classmethod
    def inner(cls, inst: MQClientInstance) -> Producer:
        """The producer a client instance uses itself (Java's ``CLIENT_INNER_PRODUCER``: consumers
        re-send failed messages to ``%RETRY%<group>`` through it). It shares ``inst`` and is never
        started or shut down on its own."""
        p = cls(
            INNER_PRODUCER_GROUP,
            None,
            inst.clock,
            send_timeout=inst.config.request_timeout,
        )
        p._instance = inst
        p._ids = UniqueIdGenerator(ip=_ip_of(inst.client_id))
        return p

    # --- lifecycle ----------------------------------------------------------------------------

    @deferred_api
    async def start(self) -> None:
        """Register with the client instance and start it (first heartbeat sent at once)."""
        if self._instance is not None:
            return
        inst = self._instance = await self._join_instance()
        self._ids = UniqueIdGenerator(ip=_ip_of(inst.client_id))
        await inst.send_heartbeat_to_all()

    @deferred_api
    async def shutdown(self) -> None:
        """Unregister from every broker and release the client instance."""
        inst = self._instance
        if inst is None:
            return
        self._instance = None
        self.limiter.fail_waiters(MQClientError("producer shut down"))
        await inst.unregister(self.group, None)
        await inst.shutdown()

    # --- instance callbacks -------------------------------------------------------------------

    def _register(self, inst: MQClientInstance) -> None:
        inst.register_producer(self)

    def topics(self) -> set[str]:
        """Topics this producer sends to (routes kept fresh by the instance)."""
        return set(self._publish)

    def on_route(self, topic: str, route: TopicRoute) -> None:
        """New route: rebuild the writable queue list (keeps the round-robin index)."""
        self._remember_route(topic, route, self._publish.get(topic))

    def _remember_route(
        self, topic: str, route: TopicRoute, old: TopicPublishInfo | None
    ) -> TopicPublishInfo | None:
        """Make ``route``'s writable queues the ones ``topic`` is sent to, going on with
        ``old``'s round-robin index; None (and nothing stored) when the route has none."""
        queues = route.publish_queues(topic)
        if not queues:
            return None
        info = TopicPublishInfo(queues, route)
        if old is not None:
            info.index = old.index
        self._publish[topic] = info
        return info

    def check_transaction_state(self, addr: str, msg: MessageExt, header: dict[str, str]) -> None:
        """CHECK_TRANSACTION_STATE hook for a transactional producer (none here: ignored)."""
        if self.transaction_check_hook is not None:
            self.transaction_check_hook(addr, msg, header)
        else:
            self.log.warn(
                "CHECK_TRANSACTION_STATE but no transaction listener on {g}", g=self.group
            )

    # --- routing ------------------------------------------------------------------------------

    async def _publish_info(self, topic: str) -> TopicPublishInfo:
        """The topic's writable queues, fetched on first use and then remembered, so the
        instance refreshes the route every ``poll_name_server_interval`` (Java
        ``tryToFindTopicPublishInfo`` + ``topicPublishInfoTable``). A topic without a route is
        sent through TBW102's brokers, which auto-create it; the refreshes ask for the topic's
        own route and switch to it once the broker has registered the topic."""
        info = self._publish.get(topic)
        if info is not None and info.queues:
            return info
        try:
            route = await self.instance.update_publish_route(topic, self.default_topic_queue_nums)
        except MQBrokerError as e:
            if e.code != ResponseCode.TOPIC_NOT_EXIST:
                raise
            raise MQClientError(
                f"No route info of this topic: {topic}, and no {DEFAULT_TOPIC} route"
            ) from e
        info = self._remember_route(topic, route, None)
        if info is None:
            raise MQClientError(f"No route info of this topic: {topic}")
        return info

    # --- sending ------------------------------------------------------------------------------

    def send(
        self,
        msg: Message | Sequence[Message],
        selector: IMessageQueueSelector | MessageQueue | None = None,
        arg: Any = None,
        *,
        timeout: float | None = None,
    ) -> Deferred[SendResult]:
        """Send a message (or a list as one batch) and fire with its :class:`SendResult`.

        ``selector`` is an :class:`IMessageQueueSelector` (ordered send, ``arg`` is its key; no
        failover to another queue) or a fixed :class:`MessageQueue`. Fails with MQClientError
        (bad message, no route), MQBrokerError (refused) or a RemotingError after all attempts.
        """
        if selector is None and isinstance(msg, Message) and MSG_TYPE not in msg.properties:
            fast = self._send_fast(msg, timeout or self.send_timeout)
            if fast is not None:
                return fast
        return Deferred.fromCoroutine(self._send(msg, selector, arg, timeout))

    def _send_fast(self, msg: Message, timeout: float) -> Deferred[SendResult] | None:
        """The first attempt of a plain send as Deferred callbacks, without a coroutine (the
        common case: route cached, limiter free). None when the general path must run; a
        failed first attempt continues in :meth:`_send_rest` like the general retry loop."""
        inst = self._instance
        info = self._publish.get(msg.topic)
        if inst is None or info is None or not info.queues:
            return None
        try:
            body, sys_flag = self._prepare(msg)
        except MQClientError as e:
            return fail(e)
        size = len(body)
        if not self.limiter.try_acquire(size):
            return None
        mq = info.next_queue(self.lft, None)
        addr = inst.master_addr(mq.broker_name)
        if addr is None:
            self.limiter.release(size)
            return None
        begin = self.clock.seconds()
        d = inst.api.send_message(
            addr,
            mq,
            self._header(msg, mq, sys_flag),
            body,
            batch=False,
            timeout=timeout,
            msg_id=msg.properties.get(UNIQ_KEY, ""),
        )
        first = _FirstAttempt(msg, body, sys_flag, timeout, begin, mq)
        d.addCallbacks(
            self._fast_done, self._fast_failed, callbackArgs=(first,), errbackArgs=(first,)
        )
        return d.addBoth(self._release, size)

    def _record_latency(self, broker_name: str, since: float, *, failed: bool) -> None:
        """Tell the latency table how a send to ``broker_name`` begun at ``since`` went."""
        if self.lft is not None:
            self.lft.update(broker_name, (self.clock.seconds() - since) * 1000, failed)

    def _release(self, result: _T, size: int) -> _T:
        self.limiter.release(size)
        return result

    def _fast_done(
        self, result: SendResult, first: _FirstAttempt
    ) -> SendResult | Deferred[SendResult]:
        self._record_latency(first.mq.broker_name, first.begin, failed=False)
        if (
            result.status is not SendStatus.SEND_OK
            and self.retry_another_broker_when_not_store_ok
            and self.retry_times > 0
        ):
            return Deferred.fromCoroutine(self._send_rest(first, None, False))
        return result

    def _fast_failed(
        self, failure: Failure, first: _FirstAttempt
    ) -> Failure | Deferred[SendResult]:
        e = failure.value
        mq = first.mq
        if isinstance(e, (RemotingError, MQBrokerError)):
            self._record_latency(mq.broker_name, first.begin, failed=True)
            if isinstance(e, MQBrokerError) and e.code not in RETRY_CODES:
                return failure
            self.log.warn(
                "Send to {broker} failed (attempt {n}): {e}", broker=mq.broker_name, n=1, e=e
            )
            refresh = True
        elif isinstance(e, MQClientError):
            refresh = False
        else:
            return failure
        if self.retry_times <= 0:
            return failure
        return Deferred.fromCoroutine(self._send_rest(first, e, refresh))

    async def _send_rest(
        self, first: _FirstAttempt, error: Exception | None, refresh: bool
    ) -> SendResult:
        """Attempts 2… of a send whose first attempt ran in :meth:`_send_fast`."""
        msg = first.msg
        info = self._publish.get(msg.topic)
        if info is None or not info.queues:
            info = await self._publish_info(msg.topic)
        if refresh:
            info = await self._refresh_after_error(msg.topic, info)
        return await self._send_with_retries(
            msg,
            first.body,
            first.sys_flag,
            None,
            None,
            first.timeout,
            None,
            first=1,
            begin=first.begin,
            last_broker=first.mq.broker_name,
            last_error=error,
            info=info,
        )

    def request(
        self,
        msg: Message,
        timeout: float = 3.0,
        selector: IMessageQueueSelector | MessageQueue | None = None,
        arg: Any = None,
    ) -> Deferred[MessageExt]:
        """Send a request message and fire with its reply (Java ``DefaultMQProducer.request``;
        ``selector``/``arg`` as in :meth:`send`, Java's ``request(msg, selector, arg, timeout)``
        and ``request(msg, mq, timeout)``).

        ``msg`` gets ``CORRELATION_ID``, ``REPLY_TO_CLIENT`` (this client id) and ``TTL``
        (``timeout`` in ms). A responder answers with
        :func:`rmq.client.reply.create_reply_message`; the broker pushes the reply to this
        client. Fails with RequestTimeoutError when no reply arrives within ``timeout``
        seconds, or with the send's error.
        """
        return Deferred.fromCoroutine(self._request(msg, timeout, selector, arg))

    async def _request(
        self,
        msg: Message,
        timeout: float,
        selector: IMessageQueueSelector | MessageQueue | None,
        arg: Any,
    ) -> MessageExt:
        inst = self.instance
        begin = self.clock.seconds()
        correlation_id = create_correlation_id()
        msg.properties[CORRELATION_ID] = correlation_id
        msg.properties[REPLY_TO_CLIENT] = inst.client_id
        msg.properties[TTL] = str(int(timeout * 1000))
        if msg.topic not in inst.routes:
            # Java: find the route, then heartbeat so the broker knows where to push the reply.
            await self._publish_info(msg.topic)
            await inst.send_heartbeat_to_all()
        left = timeout - (self.clock.seconds() - begin)
        if left <= 0:
            raise RequestTimeoutError(f"request to {msg.topic} timed out before it was sent")
        waiter = inst.replies.add(correlation_id, left, msg.topic)
        try:
            await self.send(msg, selector, arg, timeout=left)
        except RMQError as e:
            inst.replies.fail(
                correlation_id, MQClientError(f"send request message to <{msg.topic}> fail: {e}")
            )
        return await waiter

    @deferred_api
    async def send_oneway(self, msg: Message) -> None:
        """Send without waiting for an answer (no retry); fires once written."""
        body, sys_flag = self._prepare(msg)
        info = await self._publish_info(msg.topic)
        mq = info.next_queue(self.lft, None)
        addr = self._addr(mq)
        await self.instance.api.send_oneway(addr, self._header(msg, mq, sys_flag), body)

    async def _send(
        self,
        msg: Message | Sequence[Message],
        selector: IMessageQueueSelector | MessageQueue | None,
        arg: Any,
        timeout: float | None,
    ) -> SendResult:
        msgs: list[Message] | None
        if isinstance(msg, Message):
            head, msgs = msg, None
            body, sys_flag = self._prepare(msg)
        else:
            msgs = list(msg)
            head, body = self._prepare_batch(msgs)
            sys_flag = 0
        size = len(body)
        if not self.limiter.try_acquire(size):
            await self.limiter.acquire(size)
        try:
            return await self._send_with_retries(
                head, body, sys_flag, selector, arg, timeout or self.send_timeout, msgs
            )
        finally:
            self.limiter.release(size)

    def _prepare_batch(self, msgs: list[Message]) -> tuple[Message, bytes]:
        """Check a batch (one topic, no delay, no retry topic, each message valid), give each
        message a UNIQ_KEY; return the message whose header the batch is sent with, and the
        encoded body."""
        if not msgs:
            raise MQClientError("the batch is empty")
        topic = msgs[0].topic
        retry = topic.startswith(RETRY_GROUP_TOPIC_PREFIX)
        for m in msgs:
            if m.topic != topic:
                raise MQClientError("messages of a batch must have the same topic")
            if retry or m.properties.get(DELAY):
                raise MQClientError("a batch may not hold delayed or retry messages")
            check_message(m, self.max_message_size)
            m.properties.setdefault(UNIQ_KEY, self._next_id())
        body = encode_batch(msgs)
        if len(body) > self.max_message_size:
            raise MQClientError(f"the batch size over max value, MAX: {self.max_message_size}")
        return Message(topic, b"", 0, {WAIT: "true"}), body

    def _next_id(self) -> str:
        if self._ids is None:
            raise MQClientError("The producer service state not OK, call start() first")
        return self._ids.next_id()

    def _prepare(self, msg: Message) -> tuple[bytes, int]:
        """Check ``msg`` (topic rules once per topic), give it a UNIQ_KEY, compress the body."""
        topic = msg.topic
        if topic not in self._checked_topics:
            check_topic(topic)
            if len(self._checked_topics) >= 1024:
                self._checked_topics.clear()
            self._checked_topics.add(topic)
        body = msg.body
        _check_body(body, self.max_message_size)
        props = msg.properties
        if UNIQ_KEY not in props:
            props[UNIQ_KEY] = self._next_id()
        sys_flag = 0
        if len(body) >= self.compress_over:
            body = zlib.compress(body, self.compress_level)
            sys_flag |= MessageSysFlag.COMPRESSED_FLAG | MessageSysFlag.COMPRESSION_ZLIB_TYPE
        return body, sys_flag

    def _header(
        self, msg: Message, mq: MessageQueue, sys_flag: int, batch: bool = False
    ) -> dict[str, str]:
        """SendMessageRequestHeaderV2 as wire strings (what Java's fastjson writes)."""
        header = {
            "a": self.group,
            "b": mq.topic,
            "c": DEFAULT_TOPIC,
            "d": self._queue_nums_str,
            "e": str(mq.queue_id),
            "f": str(sys_flag),
            "g": str(now_ms(self.clock)),
            "h": str(msg.flag),
            "i": properties_to_string(msg.properties),
            "j": "0",
            "k": "false",
            "m": "true" if batch else "false",
            "n": mq.broker_name,
        }
        if mq.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            rt = msg.properties.get("RECONSUME_TIME")
            if rt is not None:
                header["j"] = str(int(rt))
            mrt = msg.properties.get("MAX_RECONSUME_TIMES")
            if mrt is not None:
                header["l"] = str(int(mrt))
        return header

    def _addr(self, mq: MessageQueue) -> str:
        addr = self.instance.master_addr(mq.broker_name)
        if addr is None:
            raise MQClientError(f"The broker[{mq.broker_name}] not exist")
        return addr

    async def _send_with_retries(
        self,
        msg: Message,
        body: bytes,
        sys_flag: int,
        selector: IMessageQueueSelector | MessageQueue | None,
        arg: Any,
        timeout: float,
        msgs: list[Message] | None,
        *,
        first: int = 0,
        begin: float | None = None,
        last_broker: str | None = None,
        last_error: Exception | None = None,
        info: TopicPublishInfo | None = None,
    ) -> SendResult:
        """Attempts ``first``… of a send (of the batch ``msgs`` when given, ``msg`` being its
        header's message) within ``timeout`` s from ``begin``: one for an ordered send, else
        ``1 + retry_times``, each on the next queue away from ``last_broker``."""
        if info is None:
            info = self._publish.get(msg.topic)
            if info is None or not info.queues:
                info = await self._publish_info(msg.topic)
        batch = msgs is not None
        code = RequestCode.SEND_REPLY_MESSAGE_V2 if not batch and is_reply(msg) else None
        ordered = selector is not None
        attempts = 1 if ordered else 1 + self.retry_times
        if begin is None:
            begin = self.clock.seconds()
        if msgs is not None:
            uniq = ",".join(m.properties.get(UNIQ_KEY, "") for m in msgs)
        else:
            uniq = msg.properties.get(UNIQ_KEY, "")
        for attempt in range(first, attempts):
            left = timeout - (self.clock.seconds() - begin)
            if left <= 0:
                break
            if isinstance(selector, MessageQueue):
                mq = selector
            elif selector is not None:
                mq = IMessageQueueSelector(selector).select(list(info.queues), msg, arg)
            else:
                mq = info.next_queue(self.lft, last_broker)
            last_broker = mq.broker_name
            start = self.clock.seconds()
            try:
                addr = self._addr(mq)
                header = self._header(msg, mq, sys_flag, batch)
                result = await self.instance.api.send_message(
                    addr, mq, header, body, batch=batch, timeout=left, msg_id=uniq, code=code
                )
            except (RemotingError, MQBrokerError) as e:
                self._record_latency(mq.broker_name, start, failed=True)
                if isinstance(e, MQBrokerError) and e.code not in RETRY_CODES:
                    raise
                last_error = e
                self.log.warn(
                    "Send to {broker} failed (attempt {n}): {e}",
                    broker=mq.broker_name,
                    n=attempt + 1,
                    e=e,
                )
                if not ordered:
                    info = await self._refresh_after_error(msg.topic, info)
                continue
            except MQClientError as e:
                last_error = e
                continue
            self._record_latency(mq.broker_name, start, failed=False)
            if (
                result.status.name != "SEND_OK"
                and self.retry_another_broker_when_not_store_ok
                and attempt + 1 < attempts
            ):
                continue
            return result
        if last_error is None:
            raise MQClientError(f"Send of a message to {msg.topic} timed out after {timeout} s")
        if isinstance(last_error, RMQError):
            raise last_error
        raise MQClientError(str(last_error))

    async def _refresh_after_error(self, topic: str, info: TopicPublishInfo) -> TopicPublishInfo:
        try:
            route = await self.instance.update_route(topic)
        except RMQError:
            return info
        return self._remember_route(topic, route, info) or info


def _ip_of(client_id: str) -> str:
    ip = client_id.split("@", 1)[0]
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        return ip
    except OSError:
        return "127.0.0.1"


__all__ = [
    "INNER_PRODUCER_GROUP",
    "Producer",
    "new_message",
    "check_message",
    "check_topic",
    "TopicPublishInfo",
]
