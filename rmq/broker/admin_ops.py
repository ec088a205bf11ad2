"""More broker admin codes: consume time spans, offset cloning, stats items, broker-wide consume
stats, consumer status relay, producer table, store maintenance, half-message resume, ACL stubs.

Java counterpart: the rest of ``AdminBrokerProcessor`` (4.9.7), ``Broker2Client.getConsumeStatus``,
``BrokerStatsManager``/``StatsItem`` (the sampled windows behind VIEW_BROKER_STATS_DATA). Split in
thin processors, registered by :func:`install_admin_ops` (called from
:func:`rmq.broker.admin.install_admin`):

* :class:`ConsumeAdminProcessor`: QUERY_CONSUME_TIME_SPAN (303), QUERY_CORRECTION_OFFSET (308),
  CLONE_GROUP_OFFSET (314), GET_BROKER_CONSUME_STATS (317),
  INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223), GET_ALL_PRODUCER_INFO (328);
* :class:`StatsDataProcessor`: VIEW_BROKER_STATS_DATA (315) over a :class:`StatsSampler`;
* :class:`StoreAdminProcessor`: GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305),
  CLEAN_EXPIRED_CONSUMEQUEUE (306), CLEAN_UNUSED_TOPIC (316), DELETE_EXPIRED_COMMITLOG (329),
  RESUME_CHECK_HALF_MESSAGE (323);
* :class:`AclDisabledProcessor`: the ACL codes 50-54, answered as a 4.9.7 broker with
  ``aclEnable=false`` answers them (rmq has no ACL).

Codes a 4.9.7 broker does not handle (13 QUERY_BROKER_OFFSET, 22 GET_TOPIC_CONFIG_LIST,
23 GET_TOPIC_NAME_LIST, 27 TRIGGER_DELETE_FILES, 214 WHO_CONSUME_THE_MESSAGE) stay unregistered,
so they get REQUEST_CODE_NOT_SUPPORTED as from Java.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rmq.broker.clients import ConsumerManager, ProducerManager
from rmq.broker.codetable import CodeTableProcessor
from rmq.broker.config import BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.broker.offsets import ConsumerOffsetManager
from rmq.broker.records import copy_record
from rmq.broker.stats import BrokerStats
from rmq.broker.subscription import SubscriptionGroupManager
from rmq.broker.topic import (
    AUTO_CREATE_TOPIC,
    BENCHMARK_TOPIC,
    NOT_ALLOWED_SEND_TOPICS,
    REPLY_TOPIC_POSTFIX,
    SCHEDULE_TOPIC,
    TRACE_TOPIC,
    TRANS_HALF_TOPIC,
    TopicConfigManager,
    is_system_topic,
)
from rmq.common import fastjson
from rmq.common.asyncutil import now_ms
from rmq.common.errors import RMQError
from rmq.common.message import (
    TRANSACTION_CHECK_TIMES,
    decode_message,
    decode_offset_msg_id,
)
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.interfaces import IRemotingConnection
from rmq.store.interfaces import IMessageStore, PutMessageStatus

if TYPE_CHECKING:
    from rmq.broker.service import Broker

#: Java's Long.MAX_VALUE (QUERY_CORRECTION_OFFSET's "no correction" marker).
LONG_MAX = 2**63 - 1
#: Oldest client version answering GET_CONSUMER_STATUS_FROM_CLIENT (V3_0_7_SNAPSHOT).
MIN_STATUS_CLIENT_VERSION = 28
STATUS_TIMEOUT_S = 5.0

#: Stats item names VIEW_BROKER_STATS_DATA answers (Java ``Stats``), with the key each uses.
TOPIC_PUT_NUMS = "TOPIC_PUT_NUMS"  # key: topic
GROUP_GET_NUMS = "GROUP_GET_NUMS"  # key: topic@group
GROUP_GET_SIZE = "GROUP_GET_SIZE"  # key: topic@group
BROKER_PUT_NUMS = "BROKER_PUT_NUMS"  # key: cluster name
BROKER_GET_NUMS = "BROKER_GET_NUMS"  # key: cluster name
STATS_NAMES = (TOPIC_PUT_NUMS, GROUP_GET_NUMS, GROUP_GET_SIZE, BROKER_PUT_NUMS, BROKER_GET_NUMS)

#: Windows like Java's StatsItem: (name, window seconds, snapshot spacing seconds).
_WINDOWS = (("statsMinute", 60, 10), ("statsHour", 3600, 600), ("statsDay", 86400, 3600))


def _mq(topic: str, broker_name: str, queue_id: int) -> dict[str, Any]:
    return {"brokerName": broker_name, "queueId": queue_id, "topic": topic}


def mq_key(topic: str, broker_name: str, queue_id: int) -> fastjson.ObjectKey:
    """A MessageQueue map key as fastjson writes it (``{"brokerName":…,"queueId":…,"topic":…}``)."""
    return fastjson.ObjectKey.of(brokerName=broker_name, queueId=queue_id, topic=topic)


async def offset_wrapper(
    store: IMessageStore, offsets: ConsumerOffsetManager, group: str, topic: str, queue_id: int
) -> dict[str, int]:
    """One queue's Java ``OffsetWrapper`` for ``group``: brokerOffset, consumerOffset (both at
    least 0) and lastTimestamp (store time of the last consumed message, 0 when none).
    """
    broker_offset = max(0, store.get_max_offset_in_queue(topic, queue_id))
    consumer_offset = max(0, offsets.query_offset(group, topic, queue_id))
    last = 0
    if consumer_offset > 0:
        last = await store.get_message_store_timestamp(topic, queue_id, consumer_offset - 1)
    return {
        "brokerOffset": broker_offset,
        "consumerOffset": consumer_offset,
        "lastTimestamp": max(0, last),
    }


def java_time_text(ms: int) -> str:
    """``UtilAll.formatDate(ms, "yyyy-MM-dd#HH:mm:ss:SSS")`` in local time (negative ms too)."""
    secs, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%d#%H:%M:%S", time.localtime(secs)) + f":{millis:03d}"


# ---------------------------------------------------------------------------------------------
# stats items


@attrs.define
class _Snapshot:
    at: float
    values: dict[tuple[str, str], tuple[int, int]]


class StatsSampler:
    """Minute/hour/day windows over :class:`BrokerStats` counters (Java ``StatsItem``).

    Java samples every item every 10 s, 10 min and hour from timers and compares the newest and
    oldest samples of each window. rmq keeps no timer (an idle broker has no delayed call): a
    snapshot of every counter as ``(value, times)`` is taken when the counters are sampled anyway
    (:meth:`BrokerStats.maybe_sample`: reads, pulls, every 1024th put) or read here, at most every
    10 s for the minute window, 10 min for the hour window and 1 h for the day window. A window
    compares the counters now with the newest snapshot at least the window old (else the oldest,
    taken at boot), exactly the window when the item did not change between that snapshot and the
    next one; otherwise, with sparse traffic, a window is the time since that snapshot (like the
    rates of :mod:`rmq.broker.stats`). ``times`` counts the calls behind a value: FOUND pulls for
    GROUP_GET_*, messages for TOPIC_PUT_NUMS (rmq counts puts per record), none for BROKER_*.
    """

    def __init__(self, clock: IReactorTime, stats: BrokerStats, cluster_name: str) -> None:
        self.clock = clock
        self.stats = stats
        self.cluster_name = cluster_name
        boot = _Snapshot(clock.seconds(), {})
        self._series: dict[str, list[_Snapshot]] = {name: [boot] for name, _, _ in _WINDOWS}
        stats.sample_listeners.append(self.maybe_snapshot)

    def values(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Every stats item that has data, ``(name, key) → (value, times)``."""
        s = self.stats
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for topic, n in s.topic_puts.items():
            out[(TOPIC_PUT_NUMS, topic)] = (n, n)
        for key, (msgs, size, pulls) in s.topic_group_gets.items():
            out[(GROUP_GET_NUMS, key)] = (msgs, pulls)
            out[(GROUP_GET_SIZE, key)] = (size, pulls)
        if s.put_total:
            out[(BROKER_PUT_NUMS, self.cluster_name)] = (s.put_total, 0)
        if s.get_total:
            out[(BROKER_GET_NUMS, self.cluster_name)] = (s.get_total, 0)
        return out

    def maybe_snapshot(self) -> None:
        """Snapshot the counters into each window whose last snapshot is old enough."""
        now = self.clock.seconds()
        snap: _Snapshot | None = None
        for name, window, spacing in _WINDOWS:
            series = self._series[name]
            if now - series[-1].at < spacing:
                continue
            if snap is None:
                snap = _Snapshot(now, self.values())
            series.append(snap)
            # Keep the newest snapshot older than the window and everything after it.
            while len(series) > 1 and series[1].at <= now - window:
                del series[0]

    def item(self, name: str, key: str) -> dict[str, dict[str, Any]] | None:
        """BrokerStatsData of one item (``statsMinute``/``statsHour``/``statsDay`` each with
        ``sum``, ``tps``, ``avgpt``), or None when the item has no data (Java: not exist)."""
        self.maybe_snapshot()
        current = self.values().get((name, key))
        if current is None:
            return None
        now = self.clock.seconds()
        out: dict[str, dict[str, Any]] = {}
        for window_name, window, _ in _WINDOWS:
            series = self._series[window_name]
            start = now - window
            i = len(series) - 1
            while i > 0 and series[i].at > start:
                i -= 1
            base = series[i]
            value, times = base.values.get((name, key), (0, 0))
            span = now - base.at
            if base.at <= start and i + 1 < len(series):
                # Unchanged up to the next snapshot: the value at the window's start is known.
                if series[i + 1].values.get((name, key), (0, 0)) == (value, times):
                    span = float(window)
            span = max(span, 1.0)
            total = current[0] - value
            calls = current[1] - times
            out[window_name] = {
                "avgpt": total / calls if calls > 0 else 0.0,
                "sum": total,
                "tps": total / span,
            }
        return dict(sorted(out.items()))  # fastjson's bean order: statsDay, statsHour, ...

    def minute_tps(self, name: str, key: str) -> float:
        """The item's per-second rate over the minute window (0.0 without data)."""
        item = self.item(name, key)
        return float(item["statsMinute"]["tps"]) if item else 0.0


class StatsDataProcessor(CodeTableProcessor):
    """VIEW_BROKER_STATS_DATA (315): header ``statsName``, ``statsKey`` → BrokerStatsData."""

    def __init__(self, sampler: StatsSampler) -> None:
        self.sampler = sampler
        self.handlers = {RequestCode.VIEW_BROKER_STATS_DATA: self._view}

    def _view(self, connection: IRemotingConnection, request: RemotingCommand) -> RemotingCommand:
        name = request.ext_str("statsName")
        key = request.ext_str("statsKey")
        item = self.sampler.item(name, key)
        if item is None:
            raise RMQError(f"The stats <{name}> <{key}> not exist", ResponseCode.SYSTEM_ERROR)
        return new_response(request, body=fastjson.dumps(item))


# ---------------------------------------------------------------------------------------------
# consumption


class ConsumeAdminProcessor(CodeTableProcessor):
    """Codes 303, 308, 314, 317, 223, 328 (Java ``AdminBrokerProcessor``, ``Broker2Client``)."""

    log = Logger()

    def __init__(
        self,
        identity: BrokerIdentity,
        clock: IReactorTime,
        topics: TopicConfigManager,
        groups: SubscriptionGroupManager,
        offsets: ConsumerOffsetManager,
        consumers: ConsumerManager,
        producers: ProducerManager,
        store: IMessageStore,
        sampler: StatsSampler,
    ) -> None:
        self.identity = identity
        self.clock = clock
        self.topics = topics
        self.groups = groups
        self.offsets = offsets
        self.consumers = consumers
        self.producers = producers
        self.store = store
        self.sampler = sampler
        self.handlers = {
            RequestCode.QUERY_CONSUME_TIME_SPAN: self._consume_time_span,
            RequestCode.QUERY_CORRECTION_OFFSET: self._correction_offset,
            RequestCode.CLONE_GROUP_OFFSET: self._clone_group_offset,
            RequestCode.GET_BROKER_CONSUME_STATS: self._broker_consume_stats,
            RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS: self._consumer_status,
            RequestCode.GET_ALL_PRODUCER_INFO: self._all_producer_info,
        }

    async def _consume_time_span(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        group = request.ext_str("group")
        config = self.topics.select(topic)
        if config is None:
            raise RMQError(f"topic[{topic}] not exist", ResponseCode.TOPIC_NOT_EXIST)
        store = self.store
        spans = []
        for qid in range(config.write_queue_nums):
            min_time = await store.get_earliest_message_time(topic, qid)
            max_offset = store.get_max_offset_in_queue(topic, qid)
            max_time = await store.get_message_store_timestamp(topic, qid, max_offset - 1)
            consumer_offset = self.offsets.query_offset(group, topic, qid)
            if consumer_offset > 0:
                consume_time = await store.get_message_store_timestamp(
                    topic, qid, consumer_offset - 1
                )
            else:
                consume_time = min_time
            delay = 0
            if consumer_offset < max_offset:
                # Java reads the store time at the raw offset (-1 for a group without one);
                # rmq reads the first message the group has still to consume.
                first = max(consumer_offset, store.get_min_offset_in_queue(topic, qid))
                next_time = await store.get_message_store_timestamp(topic, qid, first)
                if next_time > 0:
                    delay = now_ms(self.clock) - next_time
            spans.append(
                {
                    "consumeTimeStamp": consume_time,
                    "consumeTimeStampStr": java_time_text(consume_time),
                    "delayTime": delay,
                    "maxTimeStamp": max_time,
                    "maxTimeStampStr": java_time_text(max_time),
                    "messageQueue": _mq(topic, self.identity.broker_name, qid),
                    "minTimeStamp": min_time,
                    "minTimeStampStr": java_time_text(min_time),
                }
            )
        return new_response(request, body=fastjson.dumps({"consumeTimeSpanSet": spans}))

    def _correction_offset(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        compare = request.ext_str("compareGroup")
        filtered = {g for g in (request.ext_fields.get("filterGroups") or "").split(",") if g}
        correction: dict[int, int] = {}
        for group in sorted(self.offsets.groups_of_topic(topic) - filtered):
            for qid, offset in self.offsets.query_offsets(group, topic).items():
                if offset >= self.store.get_min_offset_in_queue(topic, qid):
                    correction[qid] = min(offset, correction.get(qid, LONG_MAX))
        for qid, offset in self.offsets.query_offsets(compare, topic).items():
            if qid in correction and correction[qid] > offset:
                correction[qid] = LONG_MAX
        body = {"correctionOffsets": dict(sorted(correction.items()))}
        return new_response(request, body=fastjson.dumps(body))

    def _clone_group_offset(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        src = request.ext_str("srcGroup")
        dest = request.ext_str("destGroup")
        wanted = request.ext_fields.get("topic") or ""
        offline = request.ext_bool("offline", False)
        topics = [wanted] if wanted.strip() else sorted(self.offsets.topics_of_group(src))
        online = self.consumers.group(src)
        for topic in topics:
            if self.topics.select(topic) is None:
                self.log.warn("[cloneGroupOffset] topic config not exist, {topic}", topic=topic)
                continue
            if (
                not offline
                and online is not None
                and online.subscriptions
                and topic not in online.subscriptions
            ):
                self.log.warn(
                    "[cloneGroupOffset] the consumer group[{group}], topic[{topic}] not exist",
                    group=src,
                    topic=topic,
                )
                continue
            for qid, offset in self.offsets.query_offsets(src, topic).items():
                self.offsets.commit_offset(dest, topic, qid, offset)
        return new_response(request)

    async def _broker_consume_stats(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        is_order = request.ext_bool("isOrder")
        broker = self.identity.broker_name
        stats_list = []
        total_diff = 0
        for group in sorted(self.groups.groups()):
            online = self.consumers.group(group)
            subscribed = online.subscriptions if online is not None else {}
            group_stats = []
            for topic in sorted(self.offsets.topics_of_group(group)):
                config = self.topics.select(topic)
                if config is None or (is_order and not config.order):
                    continue
                if subscribed and topic not in subscribed:
                    continue
                table: dict[Any, Any] = {}
                for qid in range(config.write_queue_nums):
                    entry = await offset_wrapper(self.store, self.offsets, group, topic, qid)
                    total_diff += entry["brokerOffset"] - entry["consumerOffset"]
                    table[mq_key(topic, broker, qid)] = entry
                tps = self.sampler.minute_tps(GROUP_GET_NUMS, f"{topic}@{group}")
                group_stats.append({"consumeTps": tps, "offsetTable": table})
            stats_list.append({group: group_stats})
        body = {
            "brokerAddr": self.identity.broker_addr,
            "consumeStatsList": stats_list,
            "totalDiff": total_diff,
        }
        return new_response(request, body=fastjson.dumps(body))

    async def _consumer_status(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        group = request.ext_str("group")
        origin = (request.ext_fields.get("clientAddr") or "").strip()
        info = self.consumers.group(group)
        if info is None or not info.channels:
            raise RMQError(
                f"No Any Consumer online in the consumer group: [{group}]",
                ResponseCode.SYSTEM_ERROR,
            )
        table: dict[str, Any] = {}
        for channel in list(info.channels.values()):
            if 0 < channel.version < MIN_STATUS_CLIENT_VERSION:
                raise RMQError(
                    f"the client does not support this feature. version={channel.version}",
                    ResponseCode.SYSTEM_ERROR,
                )
            if origin and origin != channel.client_id:
                continue
            ask = new_request(
                RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT, {"topic": topic, "group": group}
            )
            try:
                answer: RemotingCommand = await channel.connection.invoke(ask, STATUS_TIMEOUT_S)
                if answer.code == ResponseCode.SUCCESS and answer.body:
                    obj = fastjson.loads(answer.body)
                    queues = obj.get("messageQueueTable") if isinstance(obj, dict) else None
                    table[channel.client_id] = queues if isinstance(queues, dict) else {}
            except Exception as e:  # Java logs and goes on with the next consumer
                self.log.warn(
                    "[get-consumer-status] {client} of {group} failed: {error}",
                    client=channel.client_id,
                    group=group,
                    error=e,
                )
            if origin:
                break
        body = {"consumerTable": table, "messageQueueTable": {}}
        return new_response(request, body=fastjson.dumps(body))

    def _all_producer_info(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        data = {}
        for group in sorted(self.producers.groups()):
            data[group] = [
                {
                    "clientId": c.client_id,
                    "language": c.language,
                    "lastUpdateTimestamp": c.last_update_ms,
                    "remoteIP": "/" + c.address,
                    "version": c.version,
                }
                for c in self.producers.channels(group)
            ]
        return new_response(request, body=fastjson.dumps({"data": data}))


# ---------------------------------------------------------------------------------------------
# store maintenance, system topics, half messages


def system_topics(config: BrokerConfig) -> list[str]:
    """TopicValidator's system topic set as a 4.9.7 broker has it after start (sorted)."""
    names = set(NOT_ALLOWED_SEND_TOPICS) | {AUTO_CREATE_TOPIC, BENCHMARK_TOPIC, TRACE_TOPIC}
    names |= {
        config.cluster_name,
        config.broker_name,
        config.cluster_name + "_" + REPLY_TOPIC_POSTFIX.lstrip("_"),
    }
    if config.trace_topic_enable:
        names.add(config.msg_trace_topic_name)
    return sorted(names)


class StoreAdminProcessor(CodeTableProcessor):
    """Codes 305, 306, 316, 329, 323 (Java ``AdminBrokerProcessor``).

    The store maintenance codes call the store (``clean_expired_consume_queues(live topics)``,
    ``delete_topics(unused topics)``, and ``delete_expired_files(now)`` when the store has it)
    and answer 0 like Java.
    """

    log = Logger()

    def __init__(
        self,
        config: Callable[[], BrokerConfig],
        clock: IReactorTime,
        topics: TopicConfigManager,
        store: IMessageStore,
    ) -> None:
        self.config = config
        self.clock = clock
        self.topics = topics
        self.store = store
        self.handlers = {
            RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_BROKER: self._system_topics,
            RequestCode.CLEAN_EXPIRED_CONSUMEQUEUE: self._clean_expired_cq,
            RequestCode.CLEAN_UNUSED_TOPIC: self._clean_unused_topic,
            RequestCode.DELETE_EXPIRED_COMMITLOG: self._delete_expired_commitlog,
            RequestCode.RESUME_CHECK_HALF_MESSAGE: self._resume_half,
        }

    def _system_topics(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        body = {"topicList": system_topics(self.config())}
        return new_response(request, body=fastjson.dumps(body))

    async def _clean_expired_cq(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        self.log.warn("invoke cleanExpiredConsumeQueue start.")
        unused = set(self.unused_topics())
        live = {t for t in self.store.topic_queues() if t not in unused}
        removed = await self.store.clean_expired_consume_queues(live)
        self.log.warn("invoke cleanExpiredConsumeQueue end ({removed}).", removed=removed)
        return new_response(request)

    def unused_topics(self) -> list[str]:
        """Topics with consume queues but no topic config (system topics never count)."""
        return sorted(
            t
            for t in self.store.topic_queues()
            if t not in self.topics and t != SCHEDULE_TOPIC and not is_system_topic(t)
        )

    async def _clean_unused_topic(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        unused = self.unused_topics()
        self.log.warn("invoke cleanUnusedTopic start: {topics}", topics=unused)
        removed = await self.store.delete_topics(set(unused))
        self.log.warn("invoke cleanUnusedTopic end ({removed} topics).", removed=removed)
        return new_response(request)

    def _delete_expired_commitlog(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        self.log.warn("invoke deleteExpiredCommitLog start.")
        delete = getattr(self.store, "delete_expired_files", None)
        deleted = delete(self.clock.seconds()) if callable(delete) else 0
        self.log.warn("invoke deleteExpiredCommitLog end: {n} files deleted.", n=deleted)
        return new_response(request)

    async def _resume_half(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        msg_id = request.ext_fields.get("msgId") or ""
        failed = "Exception was thrown when putting message back to RMQ_SYS_TRANS_HALF_TOPIC."
        try:
            offset = decode_offset_msg_id(msg_id).offset
            raw = await self.store.look_message_by_offset(offset)
            if raw is None:
                raise ValueError(f"no message at commit-log offset {offset}")
            ext = decode_message(raw, decompress=False)
        except ValueError as e:
            self.log.error("resumeCheckHalfMessage {id}: {error}", id=msg_id, error=e)
            raise RMQError(failed, ResponseCode.SYSTEM_ERROR) from e
        props = dict(ext.properties)
        props[TRANSACTION_CHECK_TIMES] = "0"
        result = await self.store.put_message(copy_record(ext, TRANS_HALF_TOPIC, 0, props))
        if result.status is not PutMessageStatus.PUT_OK:
            raise RMQError(
                "Put message back to RMQ_SYS_TRANS_HALF_TOPIC failed.", ResponseCode.SYSTEM_ERROR
            )
        self.log.info(
            "Put message back to RMQ_SYS_TRANS_HALF_TOPIC. real topic={topic}",
            topic=props.get("REAL_TOPIC"),
        )
        return new_response(request)


# ---------------------------------------------------------------------------------------------
# ACL (disabled)


class AclDisabledProcessor(CodeTableProcessor):
    """Codes 50-54 as a 4.9.7 broker with ``aclEnable=false`` answers them.

    Java has no access validator then: 50/51/53 fail with their ``*_FAILED`` code (209/210/211)
    and no remark (the NullPointerException's message), 52 and 54 send no answer at all (the
    tool times out). The required header fields are still checked first, as Java decodes them.
    """

    def __init__(self) -> None:
        self.handlers = {
            RequestCode.UPDATE_AND_CREATE_ACL_CONFIG: self._update,
            RequestCode.DELETE_ACL_CONFIG: self._delete,
            RequestCode.GET_BROKER_CLUSTER_ACL_INFO: self._no_answer,
            RequestCode.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: self._white_addrs,
            RequestCode.GET_BROKER_CLUSTER_ACL_CONFIG: self._no_answer,
        }

    def _update(self, connection: IRemotingConnection, request: RemotingCommand) -> RemotingCommand:
        request.ext_str("accessKey")
        return new_response(request, ResponseCode.UPDATE_AND_CREATE_ACL_CONFIG_FAILED)

    def _delete(self, connection: IRemotingConnection, request: RemotingCommand) -> RemotingCommand:
        request.ext_str("accessKey")
        return new_response(request, ResponseCode.DELETE_ACL_CONFIG_FAILED)

    def _white_addrs(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        request.ext_str("globalWhiteAddrs")
        request.ext_str("aclFileFullPath")
        return new_response(request, ResponseCode.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED)

    def _no_answer(self, connection: IRemotingConnection, request: RemotingCommand) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# wiring


@attrs.define
class AdminOps:
    """What :func:`install_admin_ops` registered (tests and tools reach the sampler here)."""

    sampler: StatsSampler
    processors: list[CodeTableProcessor]

    def codes(self) -> Iterable[int]:
        """Every request code registered."""
        return [code for p in self.processors for code in p.codes()]


def install_admin_ops(broker: Broker, stats: BrokerStats) -> AdminOps:
    """Register the processors of this module on ``broker``."""
    sampler = StatsSampler(broker.clock, stats, broker.identity.cluster_name)
    processors: list[CodeTableProcessor] = [
        ConsumeAdminProcessor(
            broker.identity,
            broker.clock,
            broker.topics,
            broker.groups,
            broker.offsets,
            broker.consumers,
            broker.producers,
            broker.store,
            sampler,
        ),
        StatsDataProcessor(sampler),
        StoreAdminProcessor(lambda: broker.config, broker.clock, broker.topics, broker.store),
        AclDisabledProcessor(),
    ]
    for processor in processors:
        processor.register_with(broker.dispatcher)
    return AdminOps(sampler, processors)


__all__ = [
    "AclDisabledProcessor",
    "AdminOps",
    "ConsumeAdminProcessor",
    "STATS_NAMES",
    "StatsDataProcessor",
    "StatsSampler",
    "StoreAdminProcessor",
    "install_admin_ops",
    "java_time_text",
    "mq_key",
    "offset_wrapper",
    "system_topics",
]
