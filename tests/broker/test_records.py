"""rmq.broker.records: reading the broker's system queues and copying stored records."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.records import copy_record, read_batch, stored_properties
from rmq.common.message import (
    TAGS,
    WAIT,
    BrokerMessage,
    decode_message,
    encode_stored_record,
    tags_hash,
)
from rmq.store.interfaces import GetMessageResult, GetMessageStatus


class HoleyStore:
    """``get_messages`` over a queue whose offsets 0-4 were cleaned and 5-6 hold records."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def get_messages(
        self, topic: str, queue_id: int, offset: int, max_count: int
    ) -> Deferred[GetMessageResult]:
        self.asked.append(offset)
        if offset < 5:
            return succeed(GetMessageResult(GetMessageStatus.OFFSET_TOO_SMALL, 5, 5, 7))
        records = [b"r%d" % q for q in range(offset, 7)]
        return succeed(
            GetMessageResult(
                GetMessageStatus.FOUND, 7, 5, 7, list(records), list(range(offset, 7)), [0, 0]
            )
        )


class ReadBatchTests(SynchronousTestCase):
    def read(self, store: Any, offset: int, high: int) -> tuple[GetMessageResult | None, int]:
        return self.successResultOf(Deferred.fromCoroutine(read_batch(store, "T", 0, offset, high)))

    def test_skips_holes(self) -> None:
        """A cleaned range is skipped; the batch comes with the offset it starts at."""
        store = HoleyStore()
        result, offset = self.read(store, 0, 7)
        assert result is not None
        self.assertEqual((offset, result.queue_offsets), (5, [5, 6]))
        self.assertEqual(store.asked, [0, 5])

    def test_nothing_left(self) -> None:
        """At or past ``high`` nothing is read and the offset stays."""
        store = HoleyStore()
        self.assertEqual(self.read(store, 7, 7), (None, 7))
        self.assertEqual(store.asked, [])


class CopyRecordTests(SynchronousTestCase):
    def test_copy_keeps_record_fields_and_drops_wait(self) -> None:
        """A copy keeps body, flag, hosts, times and sysFlag; WAIT is not stored; tags re-hashed."""
        original = BrokerMessage(
            topic="T",
            queue_id=2,
            body=b"body",
            flag=7,
            properties={TAGS: "a"},
            born_timestamp=123,
            born_host="10.0.0.1:5000",
            store_host="10.0.0.2:10911",
            sys_flag=0,
            reconsume_times=2,
        )
        ext = decode_message(encode_stored_record(original, 4, 1000, 456), decompress=False)
        props = {TAGS: "b", WAIT: "false"}
        copy = copy_record(ext, "U", 1, props, reconsume_times=3)
        self.assertEqual(
            (copy.topic, copy.queue_id, copy.body, copy.flag, copy.born_timestamp),
            ("U", 1, b"body", 7, 123),
        )
        self.assertEqual((copy.born_host, copy.store_host), ("10.0.0.1:5000", "10.0.0.2:10911"))
        self.assertEqual((copy.sys_flag, copy.reconsume_times), (ext.sys_flag, 3))
        self.assertEqual(copy.properties_str, stored_properties({TAGS: "b"}))
        self.assertNotIn(WAIT, copy.properties_str)
        self.assertEqual(copy.properties[WAIT], "false")
        self.assertEqual(copy.tags_code, tags_hash("b"))
