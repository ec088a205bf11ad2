"""The message-store seam: ``IMessageStore`` and its result types.

Java counterparts: ``MessageStore``, ``PutMessageStatus``, ``PutMessageResult``,
``GetMessageStatus``, ``GetMessageResult``, ``QueryMessageResult``. Kept narrow: a method is added
only when a caller needs it. Methods that may touch the disk return Deferreds; cheap in-memory
lookups (queue min/max offsets, commit-log bounds) return plain values.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from rmq.common.message import BrokerMessage


class PutMessageStatus(enum.Enum):
    """Outcome of a put (Java ``PutMessageStatus``, plus DISK_FULL for the hard disk watermark)."""

    PUT_OK = "PUT_OK"
    FLUSH_DISK_TIMEOUT = "FLUSH_DISK_TIMEOUT"
    FLUSH_SLAVE_TIMEOUT = "FLUSH_SLAVE_TIMEOUT"
    SLAVE_NOT_AVAILABLE = "SLAVE_NOT_AVAILABLE"
    SERVICE_NOT_AVAILABLE = "SERVICE_NOT_AVAILABLE"
    CREATE_MAPPED_FILE_FAILED = "CREATE_MAPPED_FILE_FAILED"
    MESSAGE_ILLEGAL = "MESSAGE_ILLEGAL"
    PROPERTIES_SIZE_EXCEEDED = "PROPERTIES_SIZE_EXCEEDED"
    OS_PAGECACHE_BUSY = "OS_PAGECACHE_BUSY"
    DISK_FULL = "DISK_FULL"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"

    @property
    def stored(self) -> bool:
        """True when the message is in the commit log (perhaps without the wanted guarantee)."""
        return self in _STORED


_STORED = frozenset(
    {
        PutMessageStatus.PUT_OK,
        PutMessageStatus.FLUSH_DISK_TIMEOUT,
        PutMessageStatus.FLUSH_SLAVE_TIMEOUT,
        PutMessageStatus.SLAVE_NOT_AVAILABLE,
    }
)


class GetMessageStatus(enum.Enum):
    """Outcome of a get (Java ``GetMessageStatus``)."""

    FOUND = "FOUND"
    NO_MATCHED_MESSAGE = "NO_MATCHED_MESSAGE"
    MESSAGE_WAS_REMOVING = "MESSAGE_WAS_REMOVING"
    OFFSET_FOUND_NULL = "OFFSET_FOUND_NULL"
    OFFSET_OVERFLOW_BADLY = "OFFSET_OVERFLOW_BADLY"
    OFFSET_OVERFLOW_ONE = "OFFSET_OVERFLOW_ONE"
    OFFSET_TOO_SMALL = "OFFSET_TOO_SMALL"
    NO_MATCHED_LOGIC_QUEUE = "NO_MATCHED_LOGIC_QUEUE"
    NO_MESSAGE_IN_QUEUE = "NO_MESSAGE_IN_QUEUE"


@attrs.define
class PutMessageResult:
    """Result of a put (Java ``PutMessageResult`` + ``AppendMessageResult``).

    ``wrote_offset`` is the commit-log offset of the first record, ``msg_id`` its offset message id
    (for a batch: all offset ids joined by commas, like the SEND_BATCH response), ``queue_offset``
    the first consume-queue offset, ``store_timestamp`` in epoch ms, ``msg_num`` the record count.
    ``remark`` explains a failure status in words.
    """

    status: PutMessageStatus
    wrote_offset: int = -1
    msg_id: str = ""
    queue_offset: int = -1
    store_timestamp: int = 0
    msg_num: int = 0
    wrote_bytes: int = 0
    remark: str | None = None

    @property
    def ok(self) -> bool:
        """True for PUT_OK only."""
        return self.status is PutMessageStatus.PUT_OK


@attrs.define
class GetMessageResult:
    """Result of ``get_messages`` (Java ``GetMessageResult``).

    ``messages`` are the stored records (bytes or memoryviews over the commit log), in queue order;
    ``queue_offsets`` their consume-queue offsets and ``tags_codes`` their units' tags codes (the
    delivery time in SCHEDULE_TOPIC_XXXX). A pull response body is ``body()``.
    """

    status: GetMessageStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    messages: list[bytes | memoryview] = attrs.Factory(list)
    queue_offsets: list[int] = attrs.Factory(list)
    tags_codes: list[int] = attrs.Factory(list)

    @property
    def message_count(self) -> int:
        """Number of records returned."""
        return len(self.messages)

    @property
    def buffer_total_size(self) -> int:
        """Total bytes of the returned records."""
        return sum(len(m) for m in self.messages)

    def body(self) -> bytes:
        """The records back to back: the PULL_MESSAGE response body."""
        return b"".join(self.messages)


@attrs.define
class QueryMessageResult:
    """Result of ``query_message`` (Java ``QueryMessageResult``): records found by key."""

    messages: list[bytes | memoryview] = attrs.Factory(list)
    index_last_update_timestamp: int = 0
    index_last_update_phyoffset: int = 0

    def body(self) -> bytes:
        """The records back to back: the QUERY_MESSAGE response body."""
        return b"".join(self.messages)


ArrivalListener = Callable[[str, int, int, int], None]
"""``(topic, queue_id, queue_offset, tags_code)``: called once per dispatched record, on the
reactor thread, after the record is visible to ``get_messages`` (``queue_offset`` is the new
record's offset, so the queue's max offset is now ``queue_offset + 1``)."""


class IMessageStore(Interface):
    """A RocketMQ message store (Java ``MessageStore``), knowing nothing of the network."""

    running = Attribute("True between a successful start() and stop().")

    def start() -> Deferred[None]:
        """Open (and recover) the store; fires when it accepts puts."""

    def stop() -> Deferred[None]:
        """Flush everything and close cleanly (a later start takes the normal recovery path)."""

    def put_message(msg: BrokerMessage) -> Deferred[PutMessageResult]:
        """Append one record; fires when the configured flush guarantee holds (or timed out).

        Never fails for store conditions: the status says what happened (DISK_FULL,
        MESSAGE_ILLEGAL, FLUSH_DISK_TIMEOUT, SERVICE_NOT_AVAILABLE, ...).
        """

    def put_messages(msgs: Sequence[BrokerMessage]) -> Deferred[PutMessageResult]:
        """Append a batch (one topic and queue): one record each, consecutive queue offsets."""

    def get_messages(
        topic: str,
        queue_id: int,
        offset: int,
        max_count: int,
        tags_filter: set[int] | frozenset[int] | None = None,
    ) -> Deferred[GetMessageResult]:
        """Read up to ``max_count`` records from consume-queue ``offset`` whose tags code is in
        ``tags_filter`` (None = all). Status and next offset follow Java's ``getMessage``."""

    def get_min_offset_in_queue(topic: str, queue_id: int) -> int:
        """Logical offset of the oldest unit still backed by the commit log (0 for no queue)."""

    def get_max_offset_in_queue(topic: str, queue_id: int) -> int:
        """Number of units in the queue = the next queue offset (0 for no queue)."""

    def get_offset_in_queue_by_time(
        topic: str, queue_id: int, timestamp_ms: int, nearest: bool = False
    ) -> Deferred[int]:
        """Queue offset for a store time (ms), by binary search; 0 for an unknown or empty queue.

        ``nearest=False``: the first offset stored at or after ``timestamp_ms`` (the max offset
        if none; what resetting a group's offsets to a time wants). ``nearest=True``: Java
        ``ConsumeQueue.getOffsetInQueueByTime`` (SEARCH_OFFSET_BY_TIMESTAMP, protocol §5.9): an
        offset stored exactly then (the first), else the nearer of its two neighbours, the
        earlier on a tie, the only one at either end (the last message for a later time)."""

    def get_message_store_timestamp(topic: str, queue_id: int, offset: int) -> Deferred[int]:
        """Store time (ms) of the record at ``offset`` in the queue, -1 if there is none."""

    def get_earliest_message_time(topic: str, queue_id: int) -> Deferred[int]:
        """Store time (ms) of the oldest record of the queue, -1 if empty."""

    def get_earliest_store_time() -> Deferred[int]:
        """Store time (ms) of the oldest record in the commit log, -1 if empty."""

    def look_message_by_offset(commit_log_offset: int) -> Deferred[bytes | None]:
        """The record starting at ``commit_log_offset`` (offset msg id), None if there is none."""

    def query_message(
        topic: str, key: str, max_num: int, begin_ms: int, end_ms: int
    ) -> Deferred[QueryMessageResult]:
        """Records of ``topic`` whose KEYS contain ``key`` or whose UNIQ_KEY equals it, stored in
        [begin_ms, end_ms], newest first, at most ``max_num``."""

    def get_min_phy_offset() -> int:
        """Commit-log offset of the oldest byte still stored."""

    def get_max_phy_offset() -> int:
        """Commit-log offset just after the last stored record."""

    def flush() -> Deferred[int]:
        """Force everything written so far to disk; fires with the flushed commit-log offset."""

    def add_arrival_listener(listener: ArrivalListener) -> None:
        """Call ``listener`` for each record dispatched to a consume queue (ArrivalListener)."""

    def remove_arrival_listener(listener: ArrivalListener) -> None:
        """Stop calling ``listener``."""

    def topic_queues() -> dict[str, list[int]]:
        """Every topic that has a consume queue, with its queue ids (rebuilt from disk at start)."""

    def delete_topics(topics: AbstractSet[str]) -> Deferred[int]:
        """Remove every consume queue of ``topics`` (Java ``DefaultMessageStore.deleteTopics``).

        The commit log (and the index) keep the records. Afterwards the queues are unknown
        (``get_messages`` answers NO_MATCHED_LOGIC_QUEUE, min/max offsets 0) and the next put to
        such a topic starts a fresh queue at offset 0, as Java's ``removeQueueFromTopicQueueTable``
        does. Fires with the number of topics that had queues, once the removal is durable (a
        restart never brings the queues back); fails with ``OSError`` if that record cannot be
        written."""

    def clean_expired_consume_queues(live_topics: AbstractSet[str]) -> Deferred[int]:
        """Java ``cleanExpiredConsumerQueue`` plus ``cleanUnusedTopic``: delete consume-queue
        files wholly below the commit log's minimum offset; remove whole queues whose last
        record has left the commit log and every queue of a topic not in ``live_topics``
        (``SCHEDULE_TOPIC_XXXX`` is always kept). Removed queues behave as after
        ``delete_topics``. Fires with the number of queues removed."""


class IReplicaStore(Interface):
    """Raw commit-log access for master/slave replication (what Java's ``HAService`` and
    ``HAConnection`` use of ``CommitLog``). Both the file and the memory store provide it."""

    def get_max_phy_offset() -> int:
        """Commit-log offset just after the last appended byte."""

    def get_min_phy_offset() -> int:
        """Commit-log offset of the oldest byte still stored."""

    def commit_log_file_size() -> int:
        """Size of one commit-log file (``mappedFileSizeCommitLog``): a master starts an empty
        slave at the beginning of its last file."""

    def read_commit_log(offset: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` raw commit-log bytes from ``offset``, never past the end of the
        file holding ``offset`` nor past the appended end; ``b""`` when there are none (also for
        an offset below the oldest stored byte). Java ``CommitLog.getData``."""

    def append_replica(offset: int, data: bytes) -> None:
        """Append a master's raw bytes at ``offset``, which must equal the max offset (an empty
        store accepts the start of a commit-log file). Complete records are dispatched to consume
        queues, index and arrival listeners like local puts; a record cut at the end of ``data``
        is dispatched once the rest arrives. Raises ValueError when ``offset`` does not fit or a
        record is corrupt (the slave then drops the connection). Java ``CommitLog.appendData``."""
