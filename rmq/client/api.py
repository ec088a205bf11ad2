"""Request building and response parsing for every client RPC (Java ``MQClientAPIImpl``).

Routes, send and pull results, and the value types the producer and consumers share live here.
Only this module turns ``RemotingCommand`` objects into domain values and back.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from rmq.client.message_queue import MessageQueue
from rmq.common import fastjson
from rmq.common.errors import MQBrokerError, MQClientError, RemotingError
from rmq.common.message import MessageExt, decode_messages, tags_hash
from rmq.common.route import MASTER_ID, PERM_READ, PERM_WRITE
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, next_opaque

DEFAULT_TOPIC = "TBW102"
#: ``%RETRY%<group>`` holds a consumer group's messages to consume again.
RETRY_GROUP_TOPIC_PREFIX = "%RETRY%"
SUB_ALL = "*"


class IRemoting(Protocol):
    """The part of ``rmq.remoting.client.RemotingClient`` the client uses."""

    def invoke(
        self, addr: str, command: RemotingCommand, timeout: float = 3.0
    ) -> Deferred[RemotingCommand]: ...

    def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]: ...

    def close(self) -> Deferred[None]: ...


# --- routes -----------------------------------------------------------------------------------


@attrs.frozen
class BrokerData:
    """One broker name's addresses by broker id (0 = master)."""

    broker_name: str
    cluster: str
    addrs: dict[int, str]


@attrs.frozen
class QueueData:
    """Queue counts and permission of a topic on one broker name."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0


@attrs.frozen
class TopicRoute:
    """A topic's route (Java ``TopicRouteData``), parsed from any JSON style."""

    queue_datas: tuple[QueueData, ...]
    broker_datas: tuple[BrokerData, ...]
    order_topic_conf: str | None = None

    @classmethod
    def from_json(cls, body: bytes) -> TopicRoute:
        """Parse standard or fastjson-style route JSON (numeric keys quoted or not)."""
        obj = fastjson.loads(body)
        qds = tuple(
            QueueData(
                str(q["brokerName"]),
                int(q.get("readQueueNums", 0)),
                int(q.get("writeQueueNums", 0)),
                int(q.get("perm", 6)),
                int(q.get("topicSysFlag", 0)),
            )
            for q in obj.get("queueDatas") or []
        )
        bds = tuple(
            BrokerData(
                str(b["brokerName"]),
                str(b.get("cluster", "")),
                {int(k): str(v) for k, v in (b.get("brokerAddrs") or {}).items()},
            )
            for b in obj.get("brokerDatas") or []
        )
        return cls(qds, bds, obj.get("orderTopicConf") or None)

    def for_new_topic(self, queue_nums: int) -> TopicRoute:
        """This (TBW102) route as the route of a topic the brokers will auto-create: every
        queue data gets ``min(queue_nums, readQueueNums)`` read and write queues (Java
        ``MQClientInstance.updateTopicRouteInfoFromNameServer(topic, true, producer)``)."""
        qds = []
        for q in self.queue_datas:
            n = min(queue_nums, q.read_queue_nums)
            qds.append(attrs.evolve(q, read_queue_nums=n, write_queue_nums=n))
        return TopicRoute(tuple(qds), self.broker_datas)

    def publish_queues(self, topic: str) -> list[MessageQueue]:
        """Writable queues of brokers that have a master (or ``orderTopicConf``'s), in order."""
        if self.order_topic_conf:
            out = []
            for part in self.order_topic_conf.split(";"):
                name, _, nums = part.partition(":")
                if name and nums:
                    out += [MessageQueue(topic, name, i) for i in range(int(nums))]
            return out
        masters = {b.broker_name for b in self.broker_datas if MASTER_ID in b.addrs}
        out = []
        for q in sorted(self.queue_datas, key=lambda q: q.broker_name):
            if q.perm & PERM_WRITE and q.broker_name in masters:
                out += [MessageQueue(topic, q.broker_name, i) for i in range(q.write_queue_nums)]
        return out

    def subscribe_queues(self, topic: str) -> list[MessageQueue]:
        """Readable queues, sorted like Java's ``mqAll``."""
        out = []
        for q in self.queue_datas:
            if q.perm & PERM_READ:
                out += [MessageQueue(topic, q.broker_name, i) for i in range(q.read_queue_nums)]
        return sorted(out)


# --- subscriptions ----------------------------------------------------------------------------


EXPRESSION_TAG = "TAG"
EXPRESSION_SQL92 = "SQL92"


@attrs.frozen
class MessageSelector:
    """What a consumer subscribes with (Java ``MessageSelector``): a TAG expression
    (``"TagA || TagB"``, ``"*"``) or an SQL92 expression over message properties
    (``"a > 5 AND TAGS IN ('x')"``; the broker needs ``enablePropertyFilter=true``)."""

    expression_type: str
    expression: str

    @classmethod
    def by_sql(cls, sql: str) -> MessageSelector:
        """An SQL92 selector (evaluated by the broker; docs/filter.md)."""
        return cls(EXPRESSION_SQL92, sql)

    @classmethod
    def by_tag(cls, tag: str | None) -> MessageSelector:
        """A TAG selector; None or empty means ``*``."""
        return cls(EXPRESSION_TAG, tag or SUB_ALL)


@attrs.frozen
class SubscriptionData:
    """A subscription (Java ``SubscriptionData`` built by ``FilterAPI``): TAG or SQL92."""

    topic: str
    sub_string: str
    tags: frozenset[str]
    codes: frozenset[int]
    sub_version: int
    expression_type: str = EXPRESSION_TAG

    @classmethod
    def build(
        cls,
        topic: str,
        expression: str | None,
        sub_version: int,
        expression_type: str = EXPRESSION_TAG,
    ) -> SubscriptionData:
        """Split ``"TagA || TagB"``; ``None``, empty or ``*`` subscribe to everything.

        A non-TAG expression is kept whole (no tags; the broker filters); MQClientError when
        it is empty (Java ``FilterAPI.build``).
        """
        expr = (expression or "").strip()
        if expression_type != EXPRESSION_TAG:
            if not expr:
                raise MQClientError(f"Expression can't be null! {expression_type}")
            return cls(topic, expr, frozenset(), frozenset(), sub_version, expression_type)
        if not expr or expr == SUB_ALL:
            return cls(topic, SUB_ALL, frozenset(), frozenset(), sub_version)
        tags = [t.strip() for t in expr.split("||") if t.strip()]
        return cls(topic, expr, frozenset(tags), frozenset(tags_hash(t) for t in tags), sub_version)

    def select(self, msgs: list[MessageExt]) -> list[MessageExt]:
        """The pulled ``msgs`` whose tag this subscription names: the client re-checks tags
        because the broker compares hash codes only. ``msgs`` itself, with no per-message work,
        for ``*`` and for SQL92 subscriptions (filtered by the broker alone)."""
        if self.sub_string == SUB_ALL or self.expression_type != EXPRESSION_TAG:
            return msgs
        tags = self.tags
        return [m for m in msgs if m.tags in tags]

    def to_json_obj(self) -> dict[str, Any]:
        """HeartbeatData's form, keys in Java's order."""
        return {
            "classFilterMode": False,
            "codeSet": sorted(self.codes),
            "expressionType": self.expression_type,
            "subString": self.sub_string,
            "subVersion": self.sub_version,
            "tagsSet": sorted(self.tags),
            "topic": self.topic,
        }


# --- results ----------------------------------------------------------------------------------


class SendStatus(enum.Enum):
    """What a successful send promised (Java ``SendStatus``)."""

    SEND_OK = ResponseCode.SUCCESS
    FLUSH_DISK_TIMEOUT = ResponseCode.FLUSH_DISK_TIMEOUT
    FLUSH_SLAVE_TIMEOUT = ResponseCode.FLUSH_SLAVE_TIMEOUT
    SLAVE_NOT_AVAILABLE = ResponseCode.SLAVE_NOT_AVAILABLE


@attrs.frozen
class SendResult:
    """The answer to a send (Java ``SendResult``).

    ``msg_id`` is the UNIQ_KEY (for a batch: the ids joined with ``,``); ``offset_msg_id`` is the
    broker's offset id; ``queue_offset`` the logical offset of the (first) message.
    """

    status: SendStatus
    msg_id: str
    offset_msg_id: str
    message_queue: MessageQueue
    queue_offset: int
    transaction_id: str | None = None
    region_id: str | None = None


_SEND_STATUS: dict[int, SendStatus] = {int(s.value): s for s in SendStatus}


def _send_result(resp: RemotingCommand, addr: str, mq: MessageQueue, msg_id: str) -> SendResult:
    """The SendResult of a send response; MQBrokerError for a code that is not a SendStatus."""
    status = _SEND_STATUS.get(resp.code)
    if status is None:
        raise MQBrokerError(resp.code, resp.remark or "", addr)
    ext = resp.ext_fields
    qid = ext.get("queueId")
    if qid is not None and int(qid) != mq.queue_id:
        mq = MessageQueue(mq.topic, mq.broker_name, int(qid))
    return SendResult(
        status=status,
        msg_id=msg_id,
        offset_msg_id=ext.get("msgId", ""),
        message_queue=mq,
        queue_offset=int(ext.get("queueOffset", -1)),
        transaction_id=ext.get("transactionId"),
        region_id=ext.get("MSG_REGION"),
    )


class PullStatus(enum.Enum):
    """Outcome of a pull (Java ``PullStatus``)."""

    FOUND = "FOUND"
    NO_NEW_MSG = "NO_NEW_MSG"
    NO_MATCHED_MSG = "NO_MATCHED_MSG"
    OFFSET_ILLEGAL = "OFFSET_ILLEGAL"


_PULL_STATUS = {
    ResponseCode.SUCCESS: PullStatus.FOUND,
    ResponseCode.PULL_NOT_FOUND: PullStatus.NO_NEW_MSG,
    ResponseCode.PULL_RETRY_IMMEDIATELY: PullStatus.NO_MATCHED_MSG,
    ResponseCode.PULL_OFFSET_MOVED: PullStatus.OFFSET_ILLEGAL,
}


@attrs.define
class PullResult:
    """A pull's answer: status, offsets, and the decoded messages (tag-filtered by the caller)."""

    status: PullStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    messages: list[MessageExt]
    suggest_which_broker_id: int = 0


class PullSysFlag:
    """PULL_MESSAGE ``sysFlag`` bits (§7.3.2)."""

    COMMIT_OFFSET = 0x1
    SUSPEND = 0x2
    SUBSCRIPTION = 0x4
    CLASS_FILTER = 0x8
    LITE_PULL = 0x10


def check(resp: RemotingCommand, addr: str, ok: Iterable[int] = (ResponseCode.SUCCESS,)) -> None:
    """Raise MQBrokerError unless the response code is one of ``ok``."""
    if resp.code not in ok:
        raise MQBrokerError(resp.code, resp.remark or "", addr)


def _lock_batch_body(group: str, client_id: str, mqs: Iterable[MessageQueue]) -> bytes:
    """LockBatchRequestBody / UnlockBatchRequestBody (the same fields)."""
    body = {
        "clientId": client_id,
        "consumerGroup": group,
        "mqSet": [mq.to_json_obj() for mq in mqs],
    }
    return fastjson.dumps(body)


class MQClientAPI:
    """Every RPC the client makes, as ``async`` methods over an :class:`IRemoting`.

    NameServer requests use one address at a time (random start, rotate on failure, like Java);
    when every NameServer fails the error names all of them.
    """

    def __init__(
        self,
        remoting: IRemoting,
        clock: IReactorTime,
        namesrv_addrs: Sequence[str] = (),
        timeout: float = 3.0,
    ) -> None:
        self.remoting = remoting
        self.clock = clock
        self.timeout = timeout
        self.namesrv_addrs: list[str] = []
        self._ns_index = 0
        self.set_namesrv_addrs(namesrv_addrs)

    def set_namesrv_addrs(self, addrs: Sequence[str]) -> None:
        """Replace the NameServer list (HTTP endpoint refresh); picks a random start."""
        if list(addrs) != self.namesrv_addrs:
            self.namesrv_addrs = list(addrs)
            self._ns_index = random.randrange(len(addrs)) if addrs else 0

    async def invoke_namesrv(self, cmd: RemotingCommand) -> RemotingCommand:
        """Send to the current NameServer, rotating through all of them on transport errors."""
        if not self.namesrv_addrs:
            raise MQClientError("No NameServer address configured")
        errors = []
        n = len(self.namesrv_addrs)
        for k in range(n):
            addr = self.namesrv_addrs[(self._ns_index + k) % n]
            try:
                resp = await self.remoting.invoke(addr, cmd, self.timeout)
            except RemotingError as e:
                errors.append(f"{addr}: {e}")
                continue
            self._ns_index = (self._ns_index + k) % n
            return resp
        raise MQClientError(
            "No NameServer reachable, tried "
            + ", ".join(self.namesrv_addrs)
            + " ("
            + "; ".join(errors)
            + ")"
        )

    async def get_route(self, topic: str) -> TopicRoute:
        """GET_ROUTEINFO_BY_TOPIC; MQBrokerError(17) when the topic has no route."""
        cmd = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        resp = await self.invoke_namesrv(cmd)
        check(resp, "namesrv")
        return TopicRoute.from_json(resp.body)

    def send_message(
        self,
        addr: str,
        mq: MessageQueue,
        header: dict[str, str],
        body: bytes,
        *,
        batch: bool,
        timeout: float,
        msg_id: str = "",
        code: int | None = None,
    ) -> Deferred[SendResult]:
        """SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE with a V2 header (one-letter keys), as a plain
        Deferred (the per-message hot path: no coroutine).

        ``header`` values must already be wire strings (the per-message hot path skips the
        generic conversion); ``msg_id`` is copied into the result. Fails with MQBrokerError for
        a response code that is not a SendStatus, or the remoting error. ``code`` overrides
        the request code (SEND_REPLY_MESSAGE_V2 for a reply, docs/request-reply.md).
        """
        if code is None:
            code = RequestCode.SEND_BATCH_MESSAGE if batch else RequestCode.SEND_MESSAGE_V2
        cmd = RemotingCommand(
            code=code, opaque=next_opaque(), ext_fields=header, body=body, ext_fields_present=True
        )
        d = self.remoting.invoke(addr, cmd, timeout)
        return d.addCallback(_send_result, addr, mq, msg_id)

    async def send_oneway(self, addr: str, header: dict[str, str], body: bytes) -> None:
        """SEND_MESSAGE_V2 as a oneway request (``header`` values are wire strings)."""
        await self.remoting.invoke_oneway(
            addr, new_request(RequestCode.SEND_MESSAGE_V2, header, body, oneway=True)
        )

    async def pull(self, addr: str, header: dict[str, object], timeout: float) -> PullResult:
        """PULL_MESSAGE; messages decoded from the body (code 0) or none."""
        resp = await self.remoting.invoke(
            addr, new_request(RequestCode.PULL_MESSAGE, header), timeout
        )
        status = _PULL_STATUS.get(resp.code)  # type: ignore[call-overload]
        if status is None:
            raise MQBrokerError(resp.code, resp.remark or "", addr)
        ext = resp.ext_fields
        msgs = decode_messages(resp.body) if status is PullStatus.FOUND and resp.body else []
        return PullResult(
            status,
            int(ext.get("nextBeginOffset", str(header.get("queueOffset", 0)))),
            int(ext.get("minOffset", 0)),
            int(ext.get("maxOffset", 0)),
            msgs,
            int(ext.get("suggestWhichBrokerId", 0)),
        )

    async def _request_or_oneway(
        self,
        addr: str,
        code: int,
        header: dict[str, object] | None,
        body: bytes = b"",
        *,
        oneway: bool,
    ) -> None:
        """Send a request whose answer carries nothing but its code: oneway (fires once
        written), or answered (MQBrokerError unless SUCCESS)."""
        if oneway:
            await self.remoting.invoke_oneway(addr, new_request(code, header, body, oneway=True))
        else:
            cmd = new_request(code, header, body)
            check(await self.remoting.invoke(addr, cmd, self.timeout), addr)

    async def _offset_call(self, addr: str, code: int, header: dict[str, object]) -> int:
        resp = await self.remoting.invoke(addr, new_request(code, header), self.timeout)
        check(resp, addr)
        return int(resp.ext_fields.get("offset", 0))

    async def query_consumer_offset(self, addr: str, group: str, mq: MessageQueue) -> int:
        """QUERY_CONSUMER_OFFSET; -1 when the broker has none (22)."""
        header = {
            "consumerGroup": group,
            "topic": mq.topic,
            "queueId": mq.queue_id,
            "bname": mq.broker_name,
        }
        resp = await self.remoting.invoke(
            addr, new_request(RequestCode.QUERY_CONSUMER_OFFSET, header), self.timeout
        )
        if resp.code == ResponseCode.QUERY_NOT_FOUND:
            return -1
        check(resp, addr)
        return int(resp.ext_fields.get("offset", -1))

    async def update_consumer_offset(
        self, addr: str, group: str, mq: MessageQueue, offset: int, *, oneway: bool = True
    ) -> None:
        """UPDATE_CONSUMER_OFFSET, oneway like Java (or as a request)."""
        header: dict[str, object] = {
            "consumerGroup": group,
            "topic": mq.topic,
            "queueId": mq.queue_id,
            "commitOffset": offset,
            "bname": mq.broker_name,
        }
        await self._request_or_oneway(
            addr, RequestCode.UPDATE_CONSUMER_OFFSET, header, oneway=oneway
        )

    async def get_max_offset(self, addr: str, mq: MessageQueue) -> int:
        """GET_MAX_OFFSET: the next offset to be written."""
        header = {"topic": mq.topic, "queueId": mq.queue_id}
        return await self._offset_call(addr, RequestCode.GET_MAX_OFFSET, header)

    async def get_min_offset(self, addr: str, mq: MessageQueue) -> int:
        """GET_MIN_OFFSET."""
        header = {"topic": mq.topic, "queueId": mq.queue_id}
        return await self._offset_call(addr, RequestCode.GET_MIN_OFFSET, header)

    async def search_offset(self, addr: str, mq: MessageQueue, timestamp_ms: int) -> int:
        """SEARCH_OFFSET_BY_TIMESTAMP."""
        header = {"topic": mq.topic, "queueId": mq.queue_id, "timestamp": timestamp_ms}
        return await self._offset_call(addr, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, header)

    async def get_consumer_ids(self, addr: str, group: str) -> list[str]:
        """GET_CONSUMER_LIST_BY_GROUP."""
        cmd = new_request(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": group})
        resp = await self.remoting.invoke(addr, cmd, self.timeout)
        check(resp, addr)
        obj = fastjson.loads(resp.body) if resp.body else {}
        return [str(c) for c in obj.get("consumerIdList") or []]

    async def check_client_config(
        self, addr: str, group: str, client_id: str, sub: SubscriptionData
    ) -> None:
        """CHECK_CLIENT_CONFIG (46): can the broker filter with ``sub``? MQClientError with the
        broker's code and remark when not (Java ``MQClientAPIImpl.checkClientInBroker``)."""
        body = {
            "clientId": client_id,
            "group": group,
            "subscriptionData": sub.to_json_obj(),
        }
        cmd = new_request(RequestCode.CHECK_CLIENT_CONFIG, None, fastjson.dumps(body))
        resp = await self.remoting.invoke(addr, cmd, self.timeout)
        if resp.code != ResponseCode.SUCCESS:
            raise MQClientError(
                f"CODE: {resp.code} DESC: {resp.remark} (broker {addr} refused the "
                f"{sub.expression_type} subscription to {sub.topic})",
                resp.code,
            )

    async def heartbeat(self, addr: str, data: dict[str, Any]) -> int:
        """HEART_BEAT with HeartbeatData; fires with the broker's version."""
        cmd = new_request(RequestCode.HEART_BEAT, None, fastjson.dumps(data))
        resp = await self.remoting.invoke(addr, cmd, self.timeout)
        check(resp, addr)
        return resp.version

    async def unregister_client(
        self, addr: str, client_id: str, producer_group: str | None, consumer_group: str | None
    ) -> None:
        """UNREGISTER_CLIENT for one group."""
        header = {
            "clientID": client_id,
            "producerGroup": producer_group,
            "consumerGroup": consumer_group,
        }
        resp = await self.remoting.invoke(
            addr, new_request(RequestCode.UNREGISTER_CLIENT, header), self.timeout
        )
        check(resp, addr)

    async def send_back(
        self,
        addr: str,
        msg: MessageExt,
        group: str,
        delay_level: int,
        max_reconsume: int,
        broker_name: str | None = None,
    ) -> None:
        """CONSUMER_SEND_MSG_BACK for a failed message."""
        header = {
            "bname": broker_name,
            "offset": msg.commit_log_offset,
            "group": group,
            "delayLevel": delay_level,
            "originMsgId": msg.msg_id,
            "originTopic": msg.topic,
            "unitMode": False,
            "maxReconsumeTimes": max_reconsume,
        }
        cmd = new_request(RequestCode.CONSUMER_SEND_MSG_BACK, header)
        check(await self.remoting.invoke(addr, cmd, self.timeout), addr)

    async def lock_batch(
        self, addr: str, group: str, client_id: str, mqs: Iterable[MessageQueue]
    ) -> set[MessageQueue]:
        """LOCK_BATCH_MQ; fires with the queues now locked by this client."""
        body = _lock_batch_body(group, client_id, mqs)
        cmd = new_request(RequestCode.LOCK_BATCH_MQ, None, body)
        resp = await self.remoting.invoke(addr, cmd, self.timeout)
        check(resp, addr)
        obj = fastjson.loads(resp.body) if resp.body else {}
        return {MessageQueue.from_json_obj(o) for o in obj.get("lockOKMQSet") or []}

    async def unlock_batch(
        self,
        addr: str,
        group: str,
        client_id: str,
        mqs: Iterable[MessageQueue],
        *,
        oneway: bool,
    ) -> None:
        """UNLOCK_BATCH_MQ (oneway on rebalance, a request at shutdown)."""
        body = _lock_batch_body(group, client_id, mqs)
        await self._request_or_oneway(addr, RequestCode.UNLOCK_BATCH_MQ, None, body, oneway=oneway)

    async def end_transaction(
        self, addr: str, header: dict[str, object], remark: str | None = None
    ) -> None:
        """END_TRANSACTION, oneway."""
        cmd = new_request(RequestCode.END_TRANSACTION, header, oneway=True)
        cmd.remark = remark
        await self.remoting.invoke_oneway(addr, cmd)
