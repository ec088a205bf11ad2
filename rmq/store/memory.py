"""``MemoryMessageStore``: an in-memory ``IMessageStore`` for tests and ``rmq.testing``.

Records are built in the real stored layout (§7.1), so pull bodies are byte-identical to the file
store's; nothing is ever flushed, and records are never deleted (consume queues can be, by
``delete_topics`` and ``clean_expired_consume_queues``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from rmq.common.asyncutil import now_ms
from rmq.common.message import (
    BrokerMessage,
    encode_stored_record,
    record_offset_msg_id,
    record_properties_str,
)
from rmq.store.config import MessageStoreConfig
from rmq.store.interfaces import (
    ArrivalListener,
    GetMessageResult,
    GetMessageStatus,
    IMessageStore,
    IReplicaStore,
    PutMessageResult,
    PutMessageStatus,
    QueryMessageResult,
)
from rmq.store.replica import CORRUPT, NEED_MORE, ReplicaRecord, next_record
from rmq.store.rules import (
    MAX_FILTER_UNITS,
    SCHEDULE_TOPIC,
    begin_get,
    dispatch_tags_code,
    goes_to_consume_queue,
    index_keys,
    key_matches,
    prepare,
    search_by_time,
)


@implementer(IMessageStore, IReplicaStore)
class MemoryMessageStore:
    """A message store held in dicts and lists; every method answers synchronously."""

    log = Logger()

    def __init__(self, clock: IReactorTime, config: MessageStoreConfig | None = None) -> None:
        self._clock = clock
        self._config = config or MessageStoreConfig()
        self._delays = self._config.delay_levels_ms()
        self._records: dict[int, bytes] = {}
        self._offsets: list[int] = []  # commit-log offsets in order
        self._store_times: list[int] = []
        self._max_phy = 0
        # (topic, qid) -> parallel lists of unit fields
        self._queues: dict[tuple[str, int], tuple[list[int], list[int], list[int]]] = {}
        self._next_qoff: dict[tuple[str, int], int] = {}
        self._index: dict[str, list[tuple[int, int]]] = {}
        self._listeners: list[ArrivalListener] = []
        self._last_ts = 0
        self._min_phy = 0
        # Replicated bytes not yet dispatched (a record cut by the end of a master's block).
        self._replica_tail = bytearray()
        self.running = False

    def start(self) -> Deferred[None]:
        """Mark the store running."""
        self.running = True
        return succeed(None)

    def stop(self) -> Deferred[None]:
        """Mark the store stopped (contents stay, like a file store reopened later)."""
        self.running = False
        return succeed(None)

    def _append(self, msg: BrokerMessage, store_ts: int) -> tuple[int, int, str]:
        key = (msg.topic, msg.queue_id)
        in_cq = goes_to_consume_queue(msg.sys_flag)
        qoff = self._next_qoff.get(key, 0) if in_cq else 0
        phys = self._max_phy
        raw = encode_stored_record(msg, qoff, phys, store_ts)
        self._records[phys] = raw
        self._offsets.append(phys)
        self._store_times.append(store_ts)
        self._max_phy = phys + len(raw)
        offset_id = record_offset_msg_id(raw)
        tags = msg.tags_code
        if in_cq:
            self._next_qoff[key] = qoff + 1
            tags = dispatch_tags_code(msg.topic, tags, msg.properties, store_ts, self._delays)
            units = self._queues.setdefault(key, ([], [], []))
            units[0].append(phys)
            units[1].append(tags)
            units[2].append(store_ts)
        for k in index_keys(msg.topic, msg.properties):
            self._index.setdefault(k, []).append((phys, store_ts))
        if in_cq:
            for listener in list(self._listeners):
                listener(msg.topic, msg.queue_id, qoff, tags)
        return phys, qoff, offset_id

    def _store_ts(self) -> int:
        ts = max(now_ms(self._clock), self._last_ts)
        self._last_ts = ts
        return ts

    def put_message(self, msg: BrokerMessage) -> Deferred[PutMessageResult]:
        """Append one record and answer PUT_OK at once."""
        return self.put_messages([msg])

    def put_messages(self, msgs: Sequence[BrokerMessage]) -> Deferred[PutMessageResult]:
        """Append records with consecutive queue offsets and answer PUT_OK at once."""
        if not self.running:
            return succeed(
                PutMessageResult(PutMessageStatus.SERVICE_NOT_AVAILABLE, remark="store not running")
            )
        if not msgs:
            return succeed(PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL, remark="empty batch"))
        for msg in msgs:
            bad = prepare(msg, self._config.max_message_size)
            if bad is not None:
                return succeed(bad)
        store_ts = self._store_ts()
        ids = []
        first = (-1, -1)
        start = self._max_phy
        for msg in msgs:
            phys, qoff, offset_id = self._append(msg, store_ts)
            if first[0] < 0:
                first = (phys, qoff)
            ids.append(offset_id)
        return succeed(
            PutMessageResult(
                PutMessageStatus.PUT_OK,
                wrote_offset=first[0],
                msg_id=",".join(ids),
                queue_offset=first[1],
                store_timestamp=store_ts,
                msg_num=len(msgs),
                wrote_bytes=self._max_phy - start,
            )
        )

    def get_messages(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_count: int,
        tags_filter: set[int] | frozenset[int] | None = None,
    ) -> Deferred[GetMessageResult]:
        """Read records from a queue following Java ``getMessage``'s statuses."""
        units = self._queues.get((topic, queue_id))
        if units is None:
            return succeed(GetMessageResult(GetMessageStatus.NO_MATCHED_LOGIC_QUEUE, 0, 0, 0))
        max_offset = len(units[0])
        min_offset = 0
        result, final = begin_get(offset, min_offset, max_offset)
        if final:
            return succeed(result)
        limit_bytes = self._config.max_transfer_bytes_on_message_in_memory
        total = 0
        i = offset
        end = min(max_offset, offset + max(max_count, MAX_FILTER_UNITS))
        while i < end and len(result.messages) < max_count:
            tags = units[1][i]
            if tags_filter is not None and tags not in tags_filter:
                i += 1
                continue
            raw = self._records[units[0][i]]
            if result.messages and total + len(raw) > limit_bytes:
                break
            result.messages.append(raw)
            result.queue_offsets.append(i)
            result.tags_codes.append(tags)
            total += len(raw)
            i += 1
        result.next_begin_offset = i
        if result.messages:
            result.status = GetMessageStatus.FOUND
        return succeed(result)

    def get_min_offset_in_queue(self, topic: str, queue_id: int) -> int:
        """Always 0: nothing is deleted."""
        return 0

    def get_max_offset_in_queue(self, topic: str, queue_id: int) -> int:
        """Number of units in the queue."""
        units = self._queues.get((topic, queue_id))
        return len(units[0]) if units else 0

    def get_offset_in_queue_by_time(
        self, topic: str, queue_id: int, timestamp_ms: int, nearest: bool = False
    ) -> Deferred[int]:
        """Offset for a time by binary search (see IMessageStore)."""
        units = self._queues.get((topic, queue_id))
        if not units:
            return succeed(0)
        times = units[2]
        return succeed(search_by_time(0, len(times), times.__getitem__, timestamp_ms, nearest))

    def get_message_store_timestamp(self, topic: str, queue_id: int, offset: int) -> Deferred[int]:
        """Store time of the unit at ``offset``, -1 if none."""
        units = self._queues.get((topic, queue_id))
        if not units or not 0 <= offset < len(units[2]):
            return succeed(-1)
        return succeed(units[2][offset])

    def get_earliest_message_time(self, topic: str, queue_id: int) -> Deferred[int]:
        """Store time of the queue's first unit, -1 if empty."""
        return self.get_message_store_timestamp(topic, queue_id, 0)

    def get_earliest_store_time(self) -> Deferred[int]:
        """Store time of the first record, -1 if empty."""
        return succeed(self._store_times[0] if self._store_times else -1)

    def look_message_by_offset(self, commit_log_offset: int) -> Deferred[bytes | None]:
        """The record at ``commit_log_offset`` or None."""
        return succeed(self._records.get(commit_log_offset))

    def query_message(
        self, topic: str, key: str, max_num: int, begin_ms: int, end_ms: int
    ) -> Deferred[QueryMessageResult]:
        """Records whose KEYS or UNIQ_KEY match, newest first."""
        result = QueryMessageResult()
        for phys, ts in reversed(self._index.get(f"{topic}#{key}", [])):
            if len(result.messages) >= max_num:
                break
            if not begin_ms <= ts <= end_ms:
                continue
            raw = self._records[phys]
            if key_matches(key, record_properties_str(raw)):
                result.messages.append(raw)
                result.index_last_update_timestamp = max(result.index_last_update_timestamp, ts)
        result.index_last_update_phyoffset = self._max_phy
        return succeed(result)

    def get_min_phy_offset(self) -> int:
        """0, or where a slave's replicated commit log started."""
        return self._min_phy

    def get_max_phy_offset(self) -> int:
        """End of the last record."""
        return self._max_phy

    def flush(self) -> Deferred[int]:
        """Nothing to flush; fires with the max offset."""
        return succeed(self._max_phy)

    def add_arrival_listener(self, listener: ArrivalListener) -> None:
        """Register an arrival callback."""
        self._listeners.append(listener)

    def remove_arrival_listener(self, listener: ArrivalListener) -> None:
        """Unregister an arrival callback."""
        self._listeners.remove(listener)

    def topic_queues(self) -> dict[str, list[int]]:
        """Topics and queue ids with at least one unit."""
        out: dict[str, list[int]] = {}
        for topic, qid in sorted(self._queues):
            out.setdefault(topic, []).append(qid)
        return out

    def _drop_queues(self, keys: set[tuple[str, int]]) -> None:
        for key in keys:
            self._queues.pop(key, None)
            self._next_qoff.pop(key, None)
            self.log.info("Consume queue {topic}/{qid} removed", topic=key[0], qid=key[1])

    def delete_topics(self, topics: AbstractSet[str]) -> Deferred[int]:
        """Drop the topics' queues and next offsets (records stay); fires with topics removed."""
        keys = {k for k in (*self._queues, *self._next_qoff) if k[0] in topics}
        self._drop_queues(keys)
        return succeed(len({k[0] for k in keys}))

    def clean_expired_consume_queues(self, live_topics: AbstractSet[str]) -> Deferred[int]:
        """Drop queues of topics not in ``live_topics`` and queues whose last record lies below
        the (replicated) commit log's start; fires with queues removed."""
        keys = {
            k
            for k, units in self._queues.items()
            if k[0] != SCHEDULE_TOPIC
            and (k[0] not in live_topics or (units[0] and units[0][-1] < self._min_phy))
        }
        self._drop_queues(keys)
        return succeed(len(keys))

    # --- replication (IReplicaStore) -------------------------------------------------------

    def commit_log_file_size(self) -> int:
        """``mappedFileSizeCommitLog`` of the config (the memory store has no files)."""
        return self._config.mapped_file_size_commit_log

    def read_commit_log(self, offset: int, max_bytes: int) -> bytes:
        """Raw bytes of whole records from ``offset`` (may start inside a record)."""
        end = self._max_phy - len(self._replica_tail)
        if offset < self._min_phy or offset >= end or max_bytes <= 0:
            return b""
        i = bisect.bisect_right(self._offsets, offset) - 1
        out: list[bytes] = []
        total = 0
        pos = offset
        while i < len(self._offsets) and total < max_bytes:
            phys = self._offsets[i]
            raw = self._records[phys]
            if phys + len(raw) <= pos:
                i += 1
                continue
            if phys > pos:
                break  # a gap (blank padding of a replicated file): stop at it
            piece = raw[pos - phys : pos - phys + max_bytes - total]
            out.append(piece)
            total += len(piece)
            pos += len(piece)
            i += 1
        return b"".join(out)

    def append_replica(self, offset: int, data: bytes) -> None:
        """Append a master's raw bytes at the max offset and dispatch complete records."""
        if self._max_phy == 0 and not self._offsets and not self._replica_tail:
            self._min_phy = self._max_phy = offset
        if offset != self._max_phy:
            raise ValueError(f"replica block at {offset}, store ends at {self._max_phy}")
        self._replica_tail += data
        self._max_phy += len(data)
        tail = self._replica_tail
        pos = 0
        base = self._max_phy - len(tail)
        while True:
            rec = next_record(tail, pos)
            if rec == NEED_MORE:
                break
            if rec == CORRUPT or isinstance(rec, str):
                raise ValueError(f"corrupt record at commit-log offset {base + pos}")
            phys = base + pos
            if not rec.blank:
                self._dispatch_replica(phys, bytes(tail[pos : pos + rec.size]), rec)
            pos += rec.size
        del tail[:pos]

    def _dispatch_replica(self, phys: int, raw: bytes, rec: ReplicaRecord) -> None:
        self._records[phys] = raw
        self._offsets.append(phys)
        self._store_times.append(rec.store_timestamp)
        self._last_ts = max(self._last_ts, rec.store_timestamp)
        key = (rec.topic, rec.queue_id)
        props = rec.properties
        in_cq = goes_to_consume_queue(rec.sys_flag)
        tags = rec.tags_code
        if in_cq:
            units = self._queues.setdefault(key, ([], [], []))
            if rec.queue_offset != len(units[0]):
                self.log.error(
                    "Replicated record {topic}/{qid} has queue offset {got}, expected {want}: "
                    "not dispatched",
                    topic=rec.topic,
                    qid=rec.queue_id,
                    got=rec.queue_offset,
                    want=len(units[0]),
                )
                in_cq = False
            else:
                tags = dispatch_tags_code(rec.topic, tags, props, rec.store_timestamp, self._delays)
                units[0].append(phys)
                units[1].append(tags)
                units[2].append(rec.store_timestamp)
                self._next_qoff[key] = rec.queue_offset + 1
        if (rec.sys_flag & 0xC) != 0xC:
            for k in index_keys(rec.topic, props):
                self._index.setdefault(k, []).append((phys, rec.store_timestamp))
        if in_cq:
            for listener in list(self._listeners):
                listener(rec.topic, rec.queue_id, rec.queue_offset, tags)
