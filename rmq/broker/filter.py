"""SQL92 property filtering on the broker: Java ``ConsumerFilterManager``, ``ConsumerFilterData``,
``ExpressionMessageFilter`` and ``ClientManageProcessor.checkClientConfig`` (docs/filter.md).

* :class:`ConsumerFilterManager` keeps, per topic and consumer group, the compiled SQL92
  expression of the group's newest heartbeat subscription (``clientVersion`` = its
  ``subVersion``), marks it dead when the group goes away and forgets it 24 h later
  (``filterDataCleanTimeSpan``); it is persisted as ``config/consumerFilter.json`` in Java's
  layout (with Java's bloom-filter positions, so a Java broker loads the file).
* :class:`SqlPullFilter` is what PULL_MESSAGE uses for a subscription whose ``expressionType``
  is not ``TAG``: the Java checks and codes (23 SUBSCRIPTION_PARSE_FAILED, 27
  FILTER_DATA_NOT_EXIST, 28 FILTER_DATA_NOT_LATEST, 1 when ``enablePropertyFilter=false``), and
  the per-message evaluation of the expression against the stored record's properties.
* :class:`CheckClientConfigProcessor` answers CHECK_CLIENT_CONFIG (46).

TAG subscriptions never reach this module.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rmq.broker.clients import EXPRESSION_TAG, SubscriptionData, build_subscription
from rmq.broker.codetable import CodeTableProcessor
from rmq.broker.selector import Selector, SelectorParseError, compile_selector
from rmq.common import fastjson
from rmq.common.asyncutil import now_ms
from rmq.common.message import record_properties_str, string_to_properties
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection
from rmq.store.interfaces import GetMessageResult, GetMessageStatus, IMessageStore

EXPRESSION_SQL92 = "SQL92"
FILTER_DATA_CLEAN_TIME_SPAN_MS = 24 * 3600 * 1000
_M64 = (1 << 64) - 1


# --- Java's BloomFilter (rocketmq-filter util), for consumerFilter.json -----------------------


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    k ^= k >> 33
    return k


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3 x64 128 (Guava ``Hashing.murmur3_128``): the two 64-bit halves, unsigned."""
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
    h1 = h2 = seed & _M64
    n = len(data)
    full = n - n % 16
    for i in range(0, full, 16):
        k1, k2 = struct.unpack_from("<QQ", data, i)
        k1 = (_rotl((k1 * c1) & _M64, 31) * c2) & _M64
        h1 ^= k1
        h1 = (_rotl(h1, 27) + h2) & _M64
        h1 = (h1 * 5 + 0x52DCE729) & _M64
        k2 = (_rotl((k2 * c2) & _M64, 33) * c1) & _M64
        h2 ^= k2
        h2 = (_rotl(h2, 31) + h1) & _M64
        h2 = (h2 * 5 + 0x38495AB5) & _M64
    tail = data[full:]
    k1 = k2 = 0
    for i in range(len(tail) - 1, 7, -1):
        k2 |= tail[i] << (8 * (i - 8))
    if len(tail) > 8:
        k2 = (_rotl((k2 * c2) & _M64, 33) * c1) & _M64
        h2 ^= k2
    for i in range(min(len(tail), 8) - 1, -1, -1):
        k1 |= tail[i] << (8 * i)
    if tail:
        k1 = (_rotl((k1 * c1) & _M64, 31) * c2) & _M64
        h1 ^= k1
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    return h1, h2


def _int32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


@attrs.frozen
class BloomFilterData:
    """Bit positions of one ``group#topic`` (Java ``BloomFilterData``)."""

    bit_pos: tuple[int, ...]
    bit_num: int

    def to_json(self) -> dict[str, Any]:
        """fastjson bean form."""
        return {"bitNum": self.bit_num, "bitPos": list(self.bit_pos)}


@attrs.frozen
class BloomFilter:
    """Java ``BloomFilter.createByFn(f, n)``: error rate ``f`` %, ``n`` expected consumers."""

    f: int = 20
    n: int = 32

    @property
    def k(self) -> int:
        """Number of hash functions."""
        return math.ceil(math.log(self.f / 100.0) / math.log(0.5))

    @property
    def m(self) -> int:
        """Number of bits (a multiple of 8)."""
        bits = math.ceil(
            self.n * (math.log(100.0 / self.f) / math.log(2)) * (math.log(math.e) / math.log(2))
        )
        return 8 * math.ceil(bits / 8.0)

    def generate(self, text: str) -> BloomFilterData:
        """``BloomFilter.generate``: k positions from one murmur3 hash (Kirsch–Mitzenmacher)."""
        h1, _ = murmur3_x64_128(text.encode("utf-8"))
        hash1, hash2 = _int32(h1), _int32(h1 >> 32)
        m = self.m
        positions = []
        for i in range(1, self.k + 1):
            combined = _int32(hash1 + i * hash2)
            if combined < 0:
                combined = ~combined
            positions.append(combined % m)
        return BloomFilterData(tuple(positions), m)

    def is_valid(self, data: BloomFilterData | None) -> bool:
        """Java ``isValid``: same bit count and number of positions."""
        return data is not None and data.bit_num == self.m and len(data.bit_pos) == self.k


# --- filter data -----------------------------------------------------------------------------


@attrs.define
class ConsumerFilterData:
    """One group's compiled expression for one topic (Java ``ConsumerFilterData``)."""

    consumer_group: str
    topic: str
    expression: str
    expression_type: str
    born_time: int
    client_version: int
    dead_time: int = 0
    bloom_filter_data: BloomFilterData | None = None
    selector: Selector | None = None

    @property
    def is_dead(self) -> bool:
        """Java ``isDead``: the group left after this data was born."""
        return self.dead_time >= self.born_time

    def to_json(self) -> dict[str, Any]:
        """fastjson bean form (getters in alphabetical order, ``dead`` included)."""
        obj: dict[str, Any] = {}
        if self.bloom_filter_data is not None:
            obj["bloomFilterData"] = self.bloom_filter_data.to_json()
        obj.update(
            bornTime=self.born_time,
            clientVersion=self.client_version,
            consumerGroup=self.consumer_group,
            dead=self.is_dead,
            deadTime=self.dead_time,
            expression=self.expression,
            expressionType=self.expression_type,
            topic=self.topic,
        )
        return obj


def build_filter_data(
    topic: str, group: str, expression: str, expression_type: str, client_version: int, now: int
) -> ConsumerFilterData | None:
    """``ConsumerFilterManager.build``: None for TAG or an expression that does not compile."""
    if expression_type == EXPRESSION_TAG or expression_type != EXPRESSION_SQL92:
        return None
    try:
        selector = compile_selector(expression)
    except SelectorParseError:
        return None
    return ConsumerFilterData(
        group, topic, expression, expression_type, now, client_version, selector=selector
    )


class ConsumerFilterManager:
    """Compiled SQL92 subscriptions by topic and group (Java ``ConsumerFilterManager``)."""

    log = Logger()
    file_name = "consumerFilter.json"

    def __init__(
        self,
        clock: IReactorTime,
        bloom: BloomFilter | None = None,
        clean_time_span_ms: int = FILTER_DATA_CLEAN_TIME_SPAN_MS,
    ) -> None:
        self._clock = clock
        self.bloom = bloom or BloomFilter()
        self.clean_time_span_ms = clean_time_span_ms
        self._by_topic: dict[str, dict[str, ConsumerFilterData]] = {}
        #: Called after a change that should be persisted.
        self.listeners: list[Any] = []

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def get(self, topic: str, group: str) -> ConsumerFilterData | None:
        """The group's filter data for ``topic`` (dead ones included, as Java)."""
        return self._by_topic.get(topic, {}).get(group)

    def by_group(self, group: str) -> list[ConsumerFilterData]:
        """Every topic's filter data of ``group``."""
        return [d for groups in self._by_topic.values() for g, d in groups.items() if g == group]

    def register_group(self, group: str, subscriptions: Iterable[SubscriptionData]) -> None:
        """A heartbeat's subscriptions (Java REGISTER event): register each SQL92 one and mark
        the group's filters of topics it no longer subscribes to dead."""
        subs = list(subscriptions)
        changed = False
        for sub in subs:
            changed |= self.register(
                sub.topic, group, sub.sub_string, sub.expression_type, sub.sub_version
            )
        topics = {s.topic for s in subs}
        now = now_ms(self._clock)
        for data in self.by_group(group):
            if data.topic not in topics and not data.is_dead:
                data.dead_time = now
                changed = True
                self.log.info(
                    "Consumer filter of {group} on {topic} is dead (topic unsubscribed)",
                    group=group,
                    topic=data.topic,
                )
        if changed:
            self._changed()

    def register(
        self, topic: str, group: str, expression: str, expression_type: str, client_version: int
    ) -> bool:
        """Register or refresh one subscription; True when something changed (Java rules:
        an older or equal ``client_version`` is ignored unless it revives dead data)."""
        if expression_type == EXPRESSION_TAG or not expression:
            return False
        groups = self._by_topic.setdefault(topic, {})
        old = groups.get(group)
        now = now_ms(self._clock)
        bloom = self.bloom.generate(f"{group}#{topic}")
        if old is not None and client_version <= old.client_version:
            if client_version == old.client_version and old.is_dead:
                old.dead_time = 0
                return True
            return False
        if (
            old is not None
            and old.expression == expression
            and old.expression_type == expression_type
            and old.bloom_filter_data == bloom
        ):
            old.client_version = client_version
            if old.is_dead:
                old.dead_time = 0
            return True
        data = build_filter_data(topic, group, expression, expression_type, client_version, now)
        if data is None:
            self.log.warn(
                "Consumer {group} subscribes {topic} with an invalid {type} expression: {expr}",
                group=group,
                topic=topic,
                type=expression_type,
                expr=expression,
            )
            if old is not None:
                del groups[group]
            elif not groups:
                del self._by_topic[topic]
            return old is not None
        data.bloom_filter_data = bloom
        groups[group] = data
        self.log.info(
            "Consumer filter of {group} on {topic}: {expr}",
            group=group,
            topic=topic,
            expr=expression,
        )
        return True

    def unregister(self, group: str) -> None:
        """The group has no member left (Java UNREGISTER event): mark its filters dead."""
        now = now_ms(self._clock)
        changed = False
        for data in self.by_group(group):
            if not data.is_dead:
                data.dead_time = now
                changed = True
        if changed:
            self._changed()

    def clean(self) -> None:
        """Forget filter data dead for longer than ``clean_time_span_ms``."""
        now = now_ms(self._clock)
        for topic, groups in list(self._by_topic.items()):
            for group, data in list(groups.items()):
                if data.is_dead and now - data.dead_time >= self.clean_time_span_ms:
                    del groups[group]
            if not groups:
                del self._by_topic[topic]

    def encode(self) -> bytes:
        """``consumerFilter.json`` (cleaned first, as Java does)."""
        self.clean()
        table = {
            topic: {
                "groupFilterData": {g: d.to_json() for g, d in groups.items()},
                "topic": topic,
            }
            for topic, groups in self._by_topic.items()
        }
        return fastjson.dumps_pretty({"filterDataByTopic": table})

    def decode(self, data: bytes) -> None:
        """Load ``consumerFilter.json``; data of a different bloom filter is ignored (Java).

        Loaded data that is not dead gets a dead time 30 s ago (its consumers must heartbeat
        again to revive it), as Java does at start.
        """
        obj = fastjson.loads_object(data, self.file_name)
        loaded: dict[str, dict[str, ConsumerFilterData]] = {}
        now = now_ms(self._clock)
        for topic, entry in (obj.get("filterDataByTopic") or {}).items():
            if not isinstance(entry, dict):
                continue
            groups: dict[str, ConsumerFilterData] = {}
            for group, raw in (entry.get("groupFilterData") or {}).items():
                if not isinstance(raw, dict):
                    continue
                bloom_raw = raw.get("bloomFilterData")
                bloom = None
                if isinstance(bloom_raw, dict):
                    bloom = BloomFilterData(
                        tuple(int(p) for p in bloom_raw.get("bitPos") or ()),
                        int(bloom_raw.get("bitNum", 0)),
                    )
                if not self.bloom.is_valid(bloom):
                    self.log.info("Bloom filter changed: persisted consumer filters ignored")
                    return
                expression = str(raw.get("expression") or "")
                etype = str(raw.get("expressionType") or EXPRESSION_SQL92)
                try:
                    selector: Selector | None = compile_selector(expression)
                except SelectorParseError:
                    selector = None
                item = ConsumerFilterData(
                    str(raw.get("consumerGroup", group)),
                    str(raw.get("topic", topic)),
                    expression,
                    etype,
                    int(raw.get("bornTime", 0)),
                    int(raw.get("clientVersion", 0)),
                    int(raw.get("deadTime", 0)),
                    bloom,
                    selector,
                )
                if item.dead_time == 0:
                    dead = now - 30_000
                    item.dead_time = item.born_time if dead <= item.born_time else dead
                groups[str(group)] = item
            loaded[str(topic)] = groups
        self._by_topic = loaded


# --- pull ------------------------------------------------------------------------------------

Refusal = tuple[int, str]
_PARSE_FAILED: Refusal = (
    ResponseCode.SUBSCRIPTION_PARSE_FAILED,
    "parse the consumer's subscription failed",
)


def _disabled(expression_type: str) -> Refusal:
    return (
        ResponseCode.SYSTEM_ERROR,
        "The broker does not support consumer to filter message by " + expression_type,
    )


class SqlPullFilter:
    """SQL92 in PULL_MESSAGE (Java ``PullMessageProcessor``, ``ExpressionMessageFilter``)."""

    log = Logger()

    def __init__(self, filters: ConsumerFilterManager, enabled: bool) -> None:
        self.filters = filters
        self.enabled = enabled

    def from_request(
        self, topic: str, expression: str | None, expression_type: str, sub_version: int
    ) -> SubscriptionData | Refusal:
        """A pull with FLAG_SUBSCRIPTION and a non-TAG expression."""
        if not expression:
            return (
                ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                "parse the consumer's subscription failed",
            )
        if not self.enabled:
            return _disabled(expression_type)
        if expression_type != EXPRESSION_SQL92:
            return (
                ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                "parse the consumer's subscription failed",
            )
        try:
            compile_selector(expression)
        except SelectorParseError:
            return (
                ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                "parse the consumer's subscription failed",
            )
        return build_subscription(topic, expression, sub_version, expression_type)

    def from_heartbeat(
        self, sub: SubscriptionData, group: str, sub_version: int
    ) -> SubscriptionData | Refusal:
        """A pull without FLAG_SUBSCRIPTION whose heartbeat subscription is not TAG."""
        data = self.filters.get(sub.topic, group)
        if data is None:
            return (
                ResponseCode.FILTER_DATA_NOT_EXIST,
                "The broker's consumer filter data is not exist!Your expression may be wrong!",
            )
        if data.client_version < sub_version:
            return (
                ResponseCode.FILTER_DATA_NOT_LATEST,
                "the consumer's consumer filter data not latest",
            )
        if not self.enabled:
            return _disabled(sub.expression_type)
        if data.expression == sub.sub_string:
            return sub
        return attrs.evolve(sub, sub_string=data.expression)

    def filter(
        self, got: Deferred[GetMessageResult], sub: SubscriptionData
    ) -> Deferred[GetMessageResult]:
        """The store's result keeping only the records whose properties match ``sub``."""
        try:
            selector = compile_selector(sub.sub_string)
        except SelectorParseError:
            return got  # Java: no compiled expression, no filtering
        return got.addCallback(filter_result, selector)

    def get_messages(
        self,
        store: IMessageStore,
        topic: str,
        queue_id: int,
        offset: int,
        max_count: int,
        sub: SubscriptionData,
    ) -> Deferred[GetMessageResult]:
        """Up to ``max_count`` records from ``offset`` matching ``sub``, scanning on past
        non-matching ones as Java's ``getMessage`` does: at most ``max(800, max_count)`` units
        (Java's 16,000 consume-queue bytes). Fires synchronously when the store does."""
        try:
            selector = compile_selector(sub.sub_string)
        except SelectorParseError:
            return store.get_messages(topic, queue_id, offset, max_count)
        return Deferred.fromCoroutine(_scan(store, topic, queue_id, offset, max_count, selector))


#: Java scans at most max(16000 bytes, maxMsgNums * 20) of consume queue per filtered pull.
SCAN_UNITS = 16_000 // 20


async def _scan(
    store: IMessageStore,
    topic: str,
    queue_id: int,
    offset: int,
    max_count: int,
    selector: Selector,
) -> GetMessageResult:
    """Read, filter and read on until ``max_count`` matches, the scan budget, or the end."""
    budget = max(SCAN_UNITS, max_count)
    first = filter_result(await store.get_messages(topic, queue_id, offset, max_count), selector)
    result = first
    if first.status not in (GetMessageStatus.FOUND, GetMessageStatus.NO_MATCHED_MESSAGE):
        return first
    messages = list(first.messages)
    offsets = list(first.queue_offsets)
    codes = list(first.tags_codes)
    scanned = first.next_begin_offset - offset
    next_offset = first.next_begin_offset
    while (
        len(messages) < max_count
        and scanned < budget
        and next_offset < result.max_offset
        and next_offset > offset
    ):
        more = await store.get_messages(
            topic, queue_id, next_offset, min(max_count - len(messages), budget - scanned)
        )
        if more.status is not GetMessageStatus.FOUND or more.next_begin_offset <= next_offset:
            break
        result = filter_result(more, selector)
        messages.extend(result.messages)
        offsets.extend(result.queue_offsets)
        codes.extend(result.tags_codes)
        scanned += more.next_begin_offset - next_offset
        next_offset = more.next_begin_offset
    if next_offset == first.next_begin_offset:
        return first
    status = GetMessageStatus.FOUND if messages else GetMessageStatus.NO_MATCHED_MESSAGE
    return attrs.evolve(
        result,
        status=status,
        next_begin_offset=next_offset,
        messages=messages,
        queue_offsets=offsets,
        tags_codes=codes,
    )


def filter_result(result: GetMessageResult, selector: Selector) -> GetMessageResult:
    """Drop the records ``selector`` does not match; FOUND with none left → NO_MATCHED_MESSAGE.

    ``next_begin_offset`` stays past every scanned unit, so the consumer moves on.
    """
    if not result.messages:
        return result
    messages: list[bytes | memoryview] = []
    offsets: list[int] = []
    codes: list[int] = []
    has_codes = len(result.tags_codes) == len(result.messages)
    for i, record in enumerate(result.messages):
        try:
            props = string_to_properties(record_properties_str(record))
        except (struct.error, IndexError, UnicodeDecodeError):
            continue
        if selector.matches(props):
            messages.append(record)
            offsets.append(result.queue_offsets[i] if i < len(result.queue_offsets) else 0)
            if has_codes:
                codes.append(result.tags_codes[i])
    if len(messages) == len(result.messages):
        return result
    status = result.status
    if not messages and status is GetMessageStatus.FOUND:
        status = GetMessageStatus.NO_MATCHED_MESSAGE
    return attrs.evolve(
        result, status=status, messages=messages, queue_offsets=offsets, tags_codes=codes
    )


# --- CHECK_CLIENT_CONFIG ---------------------------------------------------------------------


class CheckClientConfigProcessor(CodeTableProcessor):
    """CHECK_CLIENT_CONFIG (46): can this broker filter with the client's subscription?"""

    log = Logger()

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.handlers = {RequestCode.CHECK_CLIENT_CONFIG: self.check_client_config}

    def check_client_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Java ``ClientManageProcessor.checkClientConfig``."""
        body = fastjson.loads(request.body) if request.body else None
        sub = body.get("subscriptionData") if isinstance(body, dict) else None
        if not isinstance(sub, dict):
            return new_response(request)
        etype = str(sub.get("expressionType") or EXPRESSION_TAG)
        if etype == EXPRESSION_TAG:
            return new_response(request)
        if not self.enabled:
            code, remark = _disabled(etype)
            return new_response(request, code, remark)
        try:
            if etype != EXPRESSION_SQL92:
                raise SelectorParseError(f"Filter spi type({etype}) not register!")
            compile_selector(str(sub.get("subString") or ""))
        except SelectorParseError as e:
            self.log.warn(
                "Client {client}@{group} filters with an expression that does not compile: {e}",
                client=body.get("clientId"),  # type: ignore[union-attr]
                group=body.get("group"),  # type: ignore[union-attr]
                e=e,
            )
            return new_response(request, ResponseCode.SUBSCRIPTION_PARSE_FAILED, str(e))
        return new_response(request)


def install_filter(broker: Any) -> ConsumerFilterManager:
    """Plug SQL92 filtering into a :class:`rmq.broker.service.Broker`: the filter registry fed
    by heartbeats, ``consumerFilter.json``, CHECK_CLIENT_CONFIG, and the pull processor's
    SQL92 path."""
    config = broker.config
    filters = ConsumerFilterManager(
        broker.clock,
        BloomFilter(config.max_error_rate_of_bloom_filter, config.expect_consumer_num_use_filter),
        config.filter_data_clean_time_span_ms,
    )
    broker.consumers.register_listeners.append(filters.register_group)
    broker.consumers.group_removed_listeners.append(filters.unregister)
    broker.tables.append(filters)
    filters.listeners.append(lambda: broker.persister.request(filters))
    check = CheckClientConfigProcessor(config.enable_property_filter)
    broker.register_processor(check.codes(), check)
    pull = broker.dispatcher.processor_for(RequestCode.PULL_MESSAGE)
    while pull is not None and not hasattr(pull, "sql") and hasattr(pull, "inner"):
        pull = pull.inner  # wrappers such as rmq.broker.stats.CountingPullProcessor
    if pull is not None and hasattr(pull, "sql"):
        pull.sql = SqlPullFilter(filters, config.enable_property_filter)
    return filters
