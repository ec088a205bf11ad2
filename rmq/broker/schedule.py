"""Delayed messages: the 18 delay levels (protocol §9.6, §10.9) and RocketMQ 5 timer messages.

Java counterparts: ``CommitLog.asyncPutMessage`` (parking a ``DELAY`` message in
``SCHEDULE_TOPIC_XXXX``), ``ScheduleMessageService`` (one timer per level, ``delayOffset.json``)
and, for arbitrary delivery times, RocketMQ 5's ``TimerMessageStore`` (properties
``TIMER_DELIVER_MS``, ``TIMER_DELAY_SEC``, ``TIMER_DELAY_MS``).

Delay levels. :class:`DelayHook` (a send hook) moves a message with ``DELAY`` > 0 to queue
``level - 1`` of ``SCHEDULE_TOPIC_XXXX`` with ``REAL_TOPIC``/``REAL_QID``; the store writes the due
time (store time + level delay) as the unit's tags code. :class:`ScheduleMessageService` keeps, per
level, the next queue offset to deliver (persisted as ``config/delayOffset.json`` in RocketMQ's
format, so a 4.9.7 store resumes where Java stopped). A level is drained when a message arrives in
its queue and by a ``callLater`` at the exact due time of its head, so a message is delivered when
due, not at the next poll. Delivered messages go back to their real topic and queue with ``DELAY``
removed (``REAL_TOPIC``/``REAL_QID`` stay, as Java leaves them).

Timer messages. A send with ``TIMER_DELIVER_MS`` (epoch ms), ``TIMER_DELAY_SEC`` or
``TIMER_DELAY_MS`` (relative) due later than now is parked in the system topic
``rmq_sys_wheel_timer`` (queue 0) with ``REAL_TOPIC``/``REAL_QID`` and ``TIMER_OUT_MS`` = the due
time, which is also its consume-queue tags code. :class:`TimerMessageService` keeps the pending ones
in a heap ordered by due time and a ``callLater`` at the earliest. Its durable progress
(``config/timerProgress.json``) is the first queue offset not yet delivered plus the delivered
offsets above it; at start it re-scans the timer queue from that progress, so parked messages
survive a restart and none is delivered twice (except deliveries made after the last progress write
before a crash: at-least-once, like Java's delay offsets).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rmq.broker.interfaces import ISendMessageHook
from rmq.broker.records import BATCH, copy_record, read_batch, stored_properties
from rmq.broker.topic import SCHEDULE_TOPIC, TRANS_HALF_TOPIC
from rmq.common import fastjson
from rmq.common.asyncutil import CoalescingRunner, deferred_api, now_ms
from rmq.common.errors import RMQError
from rmq.common.message import (
    DELAY,
    REAL_QID,
    REAL_TOPIC,
    WAIT,
    BrokerMessage,
    MessageExt,
    MessageSysFlag,
    decode_message,
)
from rmq.remoting.codes import ResponseCode
from rmq.store.config import DEFAULT_DELAY_LEVELS, parse_delay_levels
from rmq.store.interfaces import GetMessageStatus, IMessageStore

TIMER_TOPIC = "rmq_sys_wheel_timer"
TIMER_DELIVER_MS = "TIMER_DELIVER_MS"
TIMER_DELAY_SEC = "TIMER_DELAY_SEC"
TIMER_DELAY_MS = "TIMER_DELAY_MS"
TIMER_OUT_MS = "TIMER_OUT_MS"
#: RocketMQ 5's ``timerMaxDelaySec`` default: 3 days.
TIMER_MAX_DELAY_MS = 3 * 86_400_000
#: ``flushDelayOffsetInterval``: progress tables are written at most this often (seconds).
FLUSH_DELAY_OFFSET_INTERVAL_S = 10.0
#: Retry after a failed delivery put (Java waits DELAY_FOR_A_PERIOD = 10 s).
DELIVERY_RETRY_S = 10.0

_TIMER_PROPS = (TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS)


def delivered_message(
    ext: MessageExt, drop: tuple[str, ...] = (DELAY,), *, wait: bool = False
) -> BrokerMessage:
    """The message to store on ``REAL_TOPIC``/``REAL_QID`` for a parked record ``ext``.

    ``ext`` must be decoded without decompression (the body is stored as it came). Java
    counterpart: ``ScheduleMessageService.messageTimeup``: same body, flag, sysFlag, born
    timestamp/host, store host and reconsume times; tags code recomputed; ``WAIT=false``.
    """
    props = {k: v for k, v in ext.properties.items() if k not in drop and k != WAIT}
    # WAIT stays out of the stored record (as on rmq's send path) but tells the store not to
    # hold the delivery for a flush.
    props[WAIT] = "true" if wait else "false"
    return copy_record(
        ext,
        props.get(REAL_TOPIC, ext.topic),
        int(props.get(REAL_QID, ext.queue_id)),
        props,
        sys_flag=MessageSysFlag.reset_transaction_type(
            ext.sys_flag, MessageSysFlag.TRANSACTION_NOT_TYPE
        ),
    )


def park_delayed(msg: BrokerMessage, max_level: int) -> bool:
    """Move ``msg`` with ``DELAY`` > 0 to ``SCHEDULE_TOPIC_XXXX`` queue ``level - 1``.

    The level is clamped to ``max_level``; ``REAL_TOPIC``/``REAL_QID`` record where it goes when
    due. Returns False (and leaves ``msg`` alone) when it has no positive delay level.
    """
    raw = msg.properties.get(DELAY)
    if not raw:
        return False
    try:
        level = int(raw)
    except ValueError:
        return False
    if level <= 0 or max_level <= 0:
        return False
    level = min(level, max_level)
    props = msg.properties
    props[DELAY] = str(level)
    props[REAL_TOPIC] = msg.topic
    props[REAL_QID] = str(msg.queue_id)
    msg.topic = SCHEDULE_TOPIC
    msg.queue_id = level - 1
    msg.properties_str = stored_properties(msg.properties)
    return True


def timer_due_ms(props: dict[str, str], now: int) -> int | None:
    """Due time (epoch ms) asked by the RocketMQ 5 timer properties, None when there is none.

    Raises ValueError for a value that is not an integer.
    """
    if TIMER_DELIVER_MS in props:
        return int(props[TIMER_DELIVER_MS])
    if TIMER_DELAY_SEC in props:
        return now + int(props[TIMER_DELAY_SEC]) * 1000
    if TIMER_DELAY_MS in props:
        return now + int(props[TIMER_DELAY_MS])
    return None


class DelayOffsetTable:
    """``config/delayOffset.json``: ``{"offsetTable":{<level>:<next offset>}}`` (Java's format)."""

    file_name = "delayOffset.json"

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def encode(self) -> bytes:
        """The file content, fastjson pretty form with unquoted integer keys."""
        return fastjson.dumps_pretty({"offsetTable": dict(sorted(self.offsets.items()))})

    def decode(self, data: bytes) -> None:
        """Load a file written by rmq or by RocketMQ 4.9.7."""
        obj = fastjson.loads_object(data, "delayOffset.json")
        self.offsets = {int(k): int(v) for k, v in (obj.get("offsetTable") or {}).items()}


class TimerProgressTable:
    """``config/timerProgress.json`` (rmq's own): first undelivered timer-queue offset and the
    delivered offsets above it."""

    file_name = "timerProgress.json"

    def __init__(self) -> None:
        self.progress = 0
        self.delivered: set[int] = set()

    def encode(self) -> bytes:
        """The file content (fastjson pretty form)."""
        return fastjson.dumps_pretty(
            {"delivered": sorted(self.delivered), "progress": self.progress}
        )

    def decode(self, data: bytes) -> None:
        """Load the file."""
        obj = fastjson.loads_object(data, "timerProgress.json")
        self.progress = int(obj.get("progress", 0))
        self.delivered = {int(x) for x in obj.get("delivered") or [] if int(x) >= self.progress}


class _Persist:
    """Coalesced writes of one table: at most one write per ``interval`` seconds while changing."""

    def __init__(
        self, clock: IReactorTime, request: Callable[[Any], None], table: Any, interval: float
    ) -> None:
        self._clock = clock
        self._request = request
        self._table = table
        self._interval = interval
        self._call: IDelayedCall | None = None

    def changed(self) -> None:
        if self._call is None:
            self._call = self._clock.callLater(self._interval, self._write)

    def _write(self) -> None:
        self._call = None
        self._request(self._table)

    def stop(self) -> None:
        """Cancel the pending write and write now if one was pending."""
        if self._call is not None:
            self._call.cancel()
            self._call = None
            self._request(self._table)


@implementer(ISendMessageHook)
class DelayHook:
    """Send hook: timer properties → ``rmq_sys_wheel_timer``; ``DELAY`` → the schedule topic."""

    def __init__(
        self,
        clock: IReactorTime,
        max_level: int,
        max_timer_delay_ms: int = TIMER_MAX_DELAY_MS,
        ensure_timer_topic: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self.max_level = max_level
        self.max_timer_delay_ms = max_timer_delay_ms
        self._ensure_timer_topic = ensure_timer_topic

    def before_put(self, context: Any) -> None:
        """Park the message of ``context`` when it asks for a later delivery."""
        msg: BrokerMessage = context.message
        props = msg.properties
        if (
            DELAY not in props
            and TIMER_DELIVER_MS not in props
            and TIMER_DELAY_SEC not in props
            and TIMER_DELAY_MS not in props
        ):
            return  # the common case, kept to a few dict lookups per send
        if msg.topic in (TRANS_HALF_TOPIC, SCHEDULE_TOPIC, TIMER_TOPIC):
            return
        if MessageSysFlag.transaction_type(msg.sys_flag) in (
            MessageSysFlag.TRANSACTION_PREPARED_TYPE,
            MessageSysFlag.TRANSACTION_ROLLBACK_TYPE,
        ):
            return
        if self.park_timer(msg):
            return
        park_delayed(msg, self.max_level)

    def park_timer(self, msg: BrokerMessage) -> bool:
        """Park ``msg`` in the timer topic when its timer properties ask for a future time.

        Raises RMQError(MESSAGE_ILLEGAL) for a malformed value or a delay beyond the maximum.
        """
        props = msg.properties
        if not (TIMER_DELIVER_MS in props or TIMER_DELAY_SEC in props or TIMER_DELAY_MS in props):
            return False
        now = now_ms(self._clock)
        try:
            due = timer_due_ms(props, now)
        except ValueError as e:
            raise RMQError(
                f"timer property is not an integer: {e}", ResponseCode.MESSAGE_ILLEGAL
            ) from e
        if due is None or due <= now:
            return False
        if due - now > self.max_timer_delay_ms:
            raise RMQError(
                f"timer message delay {due - now} ms exceeds the maximum "
                f"{self.max_timer_delay_ms} ms (timerMaxDelaySec)",
                ResponseCode.MESSAGE_ILLEGAL,
            )
        if self._ensure_timer_topic is not None:
            self._ensure_timer_topic()
        props[REAL_TOPIC] = msg.topic
        props[REAL_QID] = str(msg.queue_id)
        props[TIMER_OUT_MS] = str(due)
        props.pop(DELAY, None)
        msg.topic = TIMER_TOPIC
        msg.queue_id = 0
        msg.tags_code = due
        msg.properties_str = stored_properties(msg.properties)
        return True


class _Level:
    def __init__(self, level: int, delay_ms: int) -> None:
        self.level = level
        self.delay_ms = delay_ms
        self.running = False
        self.again = False
        self.call: IDelayedCall | None = None


class ScheduleMessageService:
    """Delivers ``SCHEDULE_TOPIC_XXXX`` messages when due (Java ``ScheduleMessageService``).

    ``start()`` (after the store started) loads nothing itself: the broker loads
    :attr:`table` with the other config files. Then each level is drained once; afterwards a level
    runs when a message arrives in its queue or at its head's due time.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: IMessageStore,
        persist: Callable[[Any], None],
        levels_text: str = DEFAULT_DELAY_LEVELS,
        flush_interval_s: float = FLUSH_DELAY_OFFSET_INTERVAL_S,
    ) -> None:
        self._clock = clock
        self._store = store
        self.delays = parse_delay_levels(levels_text)
        self.table = DelayOffsetTable()
        self._persist = _Persist(clock, persist, self.table, flush_interval_s)
        self._levels = {lv: _Level(lv, ms) for lv, ms in self.delays.items()}
        self.running = False
        self._tasks: set[Deferred[None]] = set()

    @property
    def max_level(self) -> int:
        """The highest delay level."""
        return max(self.delays) if self.delays else 0

    def offset(self, level: int) -> int:
        """Next queue offset of ``level`` to deliver."""
        return self.table.offsets.get(level, 0)

    def start(self) -> Deferred[None]:
        """Listen for arrivals and drain every level once."""
        self.running = True
        self._store.add_arrival_listener(self._on_arrival)
        for lv in self._levels.values():
            self._run(lv)
        return succeed(None)

    def stop(self) -> Deferred[None]:
        """Cancel the timers and write the offsets if they changed."""
        self.running = False
        self._store.remove_arrival_listener(self._on_arrival)
        for lv in self._levels.values():
            if lv.call is not None and lv.call.active():
                lv.call.cancel()
            lv.call = None
        self._persist.stop()
        return succeed(None)

    def _on_arrival(self, topic: str, queue_id: int, queue_offset: int, tags_code: int) -> None:
        if topic != SCHEDULE_TOPIC:
            return
        lv = self._levels.get(queue_id + 1)
        if lv is not None and lv.call is None:
            self._run(lv)

    def _run(self, lv: _Level) -> None:
        if not self.running:
            return
        if lv.running:
            lv.again = True
            return
        lv.running = True
        d = self._drain(lv)
        self._tasks.add(d)

        def done(result: object) -> None:
            self._tasks.discard(d)
            lv.running = False
            if isinstance(result, Failure):
                self.log.failure(
                    "Delivering delay level {delay_level} failed", result, delay_level=lv.level
                )
                self._wake_later(lv, DELIVERY_RETRY_S)
            if lv.again:
                lv.again = False
                self._run(lv)

        d.addBoth(done)

    def _wake_later(self, lv: _Level, seconds: float) -> None:
        if not self.running:
            return
        if lv.call is not None and lv.call.active():
            lv.call.cancel()

        def fire() -> None:
            lv.call = None
            self._run(lv)

        lv.call = self._clock.callLater(max(0.0, seconds), fire)

    @deferred_api
    async def _drain(self, lv: _Level) -> None:
        store = self._store
        qid = lv.level - 1
        while self.running:
            offset = self.offset(lv.level)
            low = store.get_min_offset_in_queue(SCHEDULE_TOPIC, qid)
            high = store.get_max_offset_in_queue(SCHEDULE_TOPIC, qid)
            if offset < low:
                self.log.warn(
                    "Delay level {delay_level}: offset {offset} below the queue's minimum {low}; "
                    "skipping ahead",
                    delay_level=lv.level,
                    offset=offset,
                    low=low,
                )
                self._set_offset(lv.level, low)
                continue
            if offset >= high:
                return
            result = await store.get_messages(SCHEDULE_TOPIC, qid, offset, BATCH)
            if result.status is not GetMessageStatus.FOUND or not result.messages:
                if result.next_begin_offset > offset:
                    self._set_offset(lv.level, result.next_begin_offset)
                    continue
                return
            parked = [
                (qoff, tags, decode_message(raw, decompress=False))
                for raw, qoff, tags in zip(
                    result.messages, result.queue_offsets, result.tags_codes, strict=False
                )
            ]
            for qoff, due, ext in parked:
                now = now_ms(self._clock)
                if due > now + lv.delay_ms:
                    due = now  # the clock went back: Java's correctDeliverTimestamp
                if due > now:
                    self._wake_later(lv, (due - now) / 1000.0)
                    return
                put = await store.put_message(delivered_message(ext))
                if not put.status.stored:
                    self.log.error(
                        "Delivering delayed message {id} to {topic} failed: {status}; "
                        "retrying in {retry} s",
                        id=ext.offset_msg_id,
                        topic=ext.properties.get(REAL_TOPIC),
                        status=put.status.value,
                        retry=DELIVERY_RETRY_S,
                    )
                    self._wake_later(lv, DELIVERY_RETRY_S)
                    return
                self._set_offset(lv.level, qoff + 1)
                if not self.running:
                    return

    def _set_offset(self, level: int, offset: int) -> None:
        if self.table.offsets.get(level) != offset:
            self.table.offsets[level] = offset
            self._persist.changed()


class TimerMessageService:
    """Delivers ``rmq_sys_wheel_timer`` messages at their ``TIMER_OUT_MS`` (see module doc)."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: IMessageStore,
        persist: Callable[[Any], None],
        flush_interval_s: float = FLUSH_DELAY_OFFSET_INTERVAL_S,
    ) -> None:
        self._clock = clock
        self._store = store
        self.table = TimerProgressTable()
        self._persist = _Persist(clock, persist, self.table, flush_interval_s)
        self._heap: list[tuple[int, int]] = []  # (due ms, queue offset)
        self._scanned = 0
        self._runner = CoalescingRunner(clock, self._work, self._work_failed)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._runner.active

    def pending(self) -> list[tuple[int, int]]:
        """``(due ms, queue offset)`` of the parked messages known so far, earliest first."""
        return sorted(self._heap)

    def start(self) -> Deferred[None]:
        """Re-scan the timer queue from the persisted progress and schedule the earliest."""
        self._scanned = self.table.progress
        self._store.add_arrival_listener(self._on_arrival)
        self._runner.start()
        return succeed(None)

    def stop(self) -> Deferred[None]:
        """Cancel the timer and write the progress if it changed."""
        self._runner.stop()
        self._store.remove_arrival_listener(self._on_arrival)
        self._persist.stop()
        return succeed(None)

    def _on_arrival(self, topic: str, queue_id: int, queue_offset: int, tags_code: int) -> None:
        if topic == TIMER_TOPIC:
            self._runner.kick()

    def _work_failed(self, failure: Failure) -> None:
        self.log.failure("Timer message delivery failed", failure)
        self._runner.run_at(now_ms(self._clock) + int(DELIVERY_RETRY_S * 1000))

    @deferred_api
    async def _work(self) -> None:
        store = self._store
        high = store.get_max_offset_in_queue(TIMER_TOPIC, 0)
        while True:
            result, self._scanned = await read_batch(store, TIMER_TOPIC, 0, self._scanned, high)
            if result is None:
                break
            for qoff, due in zip(result.queue_offsets, result.tags_codes, strict=False):
                if qoff not in self.table.delivered and qoff >= self.table.progress:
                    heapq.heappush(self._heap, (due, qoff))
                self._scanned = qoff + 1
        while self._heap and self.running:
            due, qoff = self._heap[0]
            now = now_ms(self._clock)
            if due > now:
                self._runner.run_at(due)
                return
            got = await store.get_messages(TIMER_TOPIC, 0, qoff, 1)
            if got.status is GetMessageStatus.FOUND and got.messages:
                ext = decode_message(got.messages[0], decompress=False)
                msg = delivered_message(ext, (DELAY, *_TIMER_PROPS))
                put = await store.put_message(msg)
                if not put.status.stored:
                    self.log.error(
                        "Delivering timer message {id} to {topic} failed: {status}",
                        id=ext.offset_msg_id,
                        topic=msg.topic,
                        status=put.status.value,
                    )
                    self._runner.run_at(now + int(DELIVERY_RETRY_S * 1000))
                    return
            else:
                self.log.warn(
                    "Timer message at queue offset {offset} is gone ({status}); skipped",
                    offset=qoff,
                    status=got.status.value,
                )
            heapq.heappop(self._heap)
            self._mark_delivered(qoff)

    def _mark_delivered(self, qoff: int) -> None:
        t = self.table
        t.delivered.add(qoff)
        while t.progress in t.delivered:
            t.delivered.discard(t.progress)
            t.progress += 1
        self._persist.changed()
