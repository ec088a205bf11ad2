"""Request/reply on the client (RocketMQ 4.6+; docs/request-reply.md).

Java counterparts: ``RequestFutureHolder``/``RequestResponseFuture`` (the requester's table of
waiting requests by ``CORRELATION_ID``), ``MessageUtil.createReplyMessage`` (what a responder
sends back) and ``ClientRemotingProcessor.receiveReplyMessage`` (PUSH_REPLY_MESSAGE_TO_CLIENT,
code 326, turned into a :class:`MessageExt`).

A requester's :meth:`rmq.client.Producer.request` tags the message with ``CORRELATION_ID`` (a
UUID), ``REPLY_TO_CLIENT`` (its client id) and ``TTL`` (the timeout in ms), sends it, and waits
in a :class:`RequestFutureTable`; the broker pushes the reply on the requester's connection and
the instance hands it to the table. Timeouts run on the injected clock.
"""

from __future__ import annotations

import uuid
import zlib

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.common.asyncutil import now_ms
from rmq.common.errors import MQClientError
from rmq.common.message import (
    ARRIVE_TIME,
    CLUSTER,
    CORRELATION_ID,
    MSG_TYPE,
    REPLY_TO_CLIENT,
    TTL,
    Message,
    MessageExt,
    MessageSysFlag,
    string_to_properties,
)
from rmq.remoting.command import RemotingCommand

REPLY_MESSAGE_FLAG = "reply"
REPLY_TOPIC_POSTFIX = "_REPLY_TOPIC"


class RequestTimeoutError(MQClientError):
    """No reply arrived within the request's timeout (Java ``RequestTimeoutException``)."""


def create_correlation_id() -> str:
    """A fresh correlation id (Java ``CorrelationIdUtil``: a random UUID)."""
    return str(uuid.uuid4())


def reply_topic(cluster: str) -> str:
    """``<cluster>_REPLY_TOPIC`` (Java ``MixAll.getReplyTopic``)."""
    return cluster + REPLY_TOPIC_POSTFIX


def create_reply_message(request: Message, body: bytes) -> Message:
    """The reply to ``request`` (a received request message): topic
    ``<CLUSTER>_REPLY_TOPIC``, ``MSG_TYPE=reply`` and the request's ``CORRELATION_ID``,
    ``REPLY_TO_CLIENT`` and ``TTL``. Send it with any started producer.

    MQClientError when the request carries no ``CLUSTER`` property (Java
    ``MessageUtil.createReplyMessage``; brokers add it to every stored message).
    """
    props = request.properties
    cluster = props.get(CLUSTER)
    if cluster is None:
        raise MQClientError(
            f"create reply message fail, requestMessage error, property[{CLUSTER}] is null."
        )
    reply = Message(reply_topic(cluster), body)
    reply.properties[MSG_TYPE] = REPLY_MESSAGE_FLAG
    for name in (CORRELATION_ID, REPLY_TO_CLIENT, TTL):
        value = props.get(name)
        if value is not None:
            reply.properties[name] = value
    return reply


def is_reply(msg: Message) -> bool:
    """True for a message made by :func:`create_reply_message` (sent with code 325)."""
    return msg.properties.get(MSG_TYPE) == REPLY_MESSAGE_FLAG


def reply_from_push(request: RemotingCommand, clock: IReactorTime) -> MessageExt:
    """The reply carried by PUSH_REPLY_MESSAGE_TO_CLIENT (``ReplyMessageRequestHeader`` +
    body); ``ARRIVE_TIME`` set to now (ms). HeaderError for a malformed header."""
    sys_flag = request.ext_int("sysFlag", 0)
    body = request.body
    if sys_flag & MessageSysFlag.COMPRESSED_FLAG:
        try:
            body = zlib.decompress(body)
        except zlib.error:
            Logger().warn("Reply body flagged compressed is not zlib data; kept as is")
    props = string_to_properties(request.ext_fields.get("properties", ""))
    props[ARRIVE_TIME] = str(now_ms(clock))
    return MessageExt(
        topic=request.ext_str("topic"),
        body=body,
        flag=request.ext_int("flag", 0),
        properties=props,
        queue_id=request.ext_int("queueId", 0),
        sys_flag=sys_flag,
        born_timestamp=request.ext_int("bornTimestamp", 0),
        born_host=request.ext_fields.get("bornHost", ""),
        store_timestamp=request.ext_int("storeTimestamp", 0),
        store_host=request.ext_fields.get("storeHost", ""),
        reconsume_times=request.ext_int("reconsumeTimes", 0),
    )


class RequestFutureTable:
    """Waiting requests by correlation id (Java ``RequestFutureHolder``), one Deferred each."""

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._waiting: dict[str, tuple[Deferred[MessageExt], IDelayedCall]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, correlation_id: str, timeout: float, topic: str = "") -> Deferred[MessageExt]:
        """Wait for the reply to ``correlation_id`` (a request sent to ``topic``); fails with
        RequestTimeoutError after ``timeout`` seconds. Cancelling the Deferred forgets it."""

        def cancel(_: Deferred[MessageExt]) -> None:
            self._take(correlation_id)

        d: Deferred[MessageExt] = Deferred(cancel)
        timer = self.clock.callLater(timeout, self._expire, correlation_id, timeout, topic)
        self._waiting[correlation_id] = (d, timer)
        return d

    def _take(self, correlation_id: str) -> Deferred[MessageExt] | None:
        """Forget the waiter of ``correlation_id`` and stop its timer; None if nobody waits."""
        entry = self._waiting.pop(correlation_id, None)
        if entry is None:
            return None
        d, timer = entry
        if timer.active():
            timer.cancel()
        return d

    def _expire(self, correlation_id: str, timeout: float, topic: str) -> None:
        entry = self._waiting.pop(correlation_id, None)
        if entry is not None:
            entry[0].errback(
                RequestTimeoutError(
                    f"send request message to <{topic}> OK, but wait reply message timeout, "
                    f"{int(timeout * 1000)} ms. (correlation id {correlation_id})"
                )
            )

    def fail(self, correlation_id: str, failure: Failure | Exception) -> None:
        """The request could not be sent: fail its waiter now."""
        d = self._take(correlation_id)
        if d is not None:
            d.errback(failure)

    def on_reply(self, msg: MessageExt) -> bool:
        """Fire the waiter of the reply's ``CORRELATION_ID``; False when nobody waits (late
        or foreign reply, logged)."""
        correlation_id = msg.properties.get(CORRELATION_ID)
        d = self._take(correlation_id or "")
        if d is None:
            self.log.warn(
                "Reply with correlation id {cid} has no waiting request (timed out?)",
                cid=correlation_id,
            )
            return False
        d.callback(msg)
        return True

    def fail_all(self, reason: str) -> None:
        """Fail every waiter (the client shuts down)."""
        waiting, self._waiting = self._waiting, {}
        for d, timer in waiting.values():
            if timer.active():
                timer.cancel()
            d.errback(MQClientError(reason))
