"""``IMessageStoreContract``: one test mixin every IMessageStore implementation must pass."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.common.message import (
    DELAY,
    KEYS,
    TAGS,
    UNIQ_KEY,
    BrokerMessage,
    MessageSysFlag,
    decode_messages,
    decode_offset_msg_id,
    properties_to_string,
    tags_hash,
)
from rmq.store.interfaces import (
    GetMessageResult,
    GetMessageStatus,
    IMessageStore,
    PutMessageResult,
    PutMessageStatus,
)

T0 = 1_700_000_000.0


def make_msg(
    topic: str = "T",
    queue_id: int = 0,
    body: bytes = b"hello",
    tags: str | None = "TagA",
    keys: str | None = None,
    uniq: str | None = None,
    **extra: Any,
) -> BrokerMessage:
    """A BrokerMessage with the given tags/keys/unique key."""
    props: dict[str, str] = {}
    if tags:
        props[TAGS] = tags
    if keys:
        props[KEYS] = keys
    if uniq:
        props[UNIQ_KEY] = uniq
    props.update(extra.pop("props", {}))
    return BrokerMessage(
        topic=topic,
        queue_id=queue_id,
        body=body,
        properties=props,
        properties_str=properties_to_string(props),
        tags_code=tags_hash(tags),
        born_timestamp=1234,
        born_host="10.0.0.1:5555",
        store_host="127.0.0.1:10911",
        **extra,
    )


class IMessageStoreContract:
    """Mixin: subclasses are SynchronousTestCases defining ``make_store(clock)``."""

    clock: Clock
    store: Any

    def make_store(self, clock: Clock) -> Any:
        """Return a started store using ``clock``."""
        raise NotImplementedError

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = self.make_store(self.clock)

    @property
    def tc(self) -> SynchronousTestCase:
        assert isinstance(self, SynchronousTestCase)
        return self

    def put(self, msg: BrokerMessage) -> PutMessageResult:
        r: PutMessageResult = self.tc.successResultOf(self.store.put_message(msg))
        return r

    def get(
        self, topic: str, qid: int, offset: int, n: int = 32, tags: Any = None
    ) -> GetMessageResult:
        r: GetMessageResult = self.tc.successResultOf(
            self.store.get_messages(topic, qid, offset, n, tags)
        )
        return r

    def test_provides_interface(self) -> None:
        """The store provides IMessageStore."""
        self.tc.assertTrue(verifyObject(IMessageStore, self.store))

    def test_put_result(self) -> None:
        """A put answers PUT_OK with offset, offset msg id, queue offset and store time."""
        r = self.put(make_msg())
        self.tc.assertEqual(r.status, PutMessageStatus.PUT_OK)
        self.tc.assertEqual((r.wrote_offset, r.queue_offset, r.msg_num), (0, 0, 1))
        self.tc.assertEqual(r.store_timestamp, int(T0 * 1000))
        mid = decode_offset_msg_id(r.msg_id)
        self.tc.assertEqual((mid.host, mid.port, mid.offset), ("127.0.0.1", 10911, 0))
        r2 = self.put(make_msg())
        self.tc.assertEqual(r2.wrote_offset, r.wrote_bytes)
        self.tc.assertEqual(r2.queue_offset, 1)
        self.tc.assertEqual(self.store.get_max_phy_offset(), r.wrote_bytes + r2.wrote_bytes)

    def test_get_round_trip(self) -> None:
        """A stored record decodes back to the message that was put."""
        self.put(make_msg(body=b"abc", keys="k1 k2", uniq="U1", flag=7))
        g = self.get("T", 0, 0)
        self.tc.assertEqual(g.status, GetMessageStatus.FOUND)
        (m,) = decode_messages(g.body(), check_crc=True)
        self.tc.assertEqual((m.topic, m.queue_id, m.body, m.flag), ("T", 0, b"abc", 7))
        self.tc.assertEqual(m.keys, ["k1", "k2"])
        self.tc.assertEqual(m.unique_key, "U1")
        self.tc.assertEqual(m.born_host, "10.0.0.1:5555")
        self.tc.assertEqual(m.store_timestamp, int(T0 * 1000))
        self.tc.assertEqual((g.next_begin_offset, g.min_offset, g.max_offset), (1, 0, 1))
        self.tc.assertEqual(g.queue_offsets, [0])

    def test_queue_offsets_per_queue(self) -> None:
        """Queue offsets count per topic and queue id independently."""
        offs = [
            self.put(make_msg(topic=t, queue_id=q)).queue_offset
            for t, q in [("A", 0), ("A", 1), ("A", 0), ("B", 0), ("A", 0)]
        ]
        self.tc.assertEqual(offs, [0, 0, 1, 0, 2])
        self.tc.assertEqual(self.store.get_max_offset_in_queue("A", 0), 3)
        self.tc.assertEqual(self.store.get_max_offset_in_queue("A", 1), 1)
        self.tc.assertEqual(self.store.get_max_offset_in_queue("C", 0), 0)
        self.tc.assertEqual(self.store.get_min_offset_in_queue("A", 0), 0)
        self.tc.assertEqual(self.store.topic_queues(), {"A": [0, 1], "B": [0]})

    def test_batch(self) -> None:
        """A batch gets one record per message with consecutive queue offsets."""
        self.put(make_msg())
        msgs = [make_msg(body=b"m%d" % i, uniq=f"U{i}") for i in range(3)]
        r = self.tc.successResultOf(self.store.put_messages(msgs))
        self.tc.assertEqual(r.status, PutMessageStatus.PUT_OK)
        self.tc.assertEqual((r.queue_offset, r.msg_num), (1, 3))
        ids = r.msg_id.split(",")
        self.tc.assertEqual(len(ids), 3)
        self.tc.assertEqual(decode_offset_msg_id(ids[0]).offset, r.wrote_offset)
        g = self.get("T", 0, 1)
        ms = decode_messages(g.body())
        self.tc.assertEqual([m.body for m in ms], [b"m0", b"m1", b"m2"])
        self.tc.assertEqual([m.queue_offset for m in ms], [1, 2, 3])
        self.tc.assertEqual(
            [m.commit_log_offset for m in ms], [decode_offset_msg_id(i).offset for i in ids]
        )

    def test_get_statuses(self) -> None:
        """Offsets outside the queue give Java's statuses and next offsets."""
        g = self.get("T", 0, 0)
        self.tc.assertEqual(g.status, GetMessageStatus.NO_MATCHED_LOGIC_QUEUE)
        for _ in range(3):
            self.put(make_msg())
        g = self.get("T", 0, 3)
        self.tc.assertEqual(
            (g.status, g.next_begin_offset), (GetMessageStatus.OFFSET_OVERFLOW_ONE, 3)
        )
        g = self.get("T", 0, 9)
        self.tc.assertEqual(
            (g.status, g.next_begin_offset), (GetMessageStatus.OFFSET_OVERFLOW_BADLY, 0)
        )
        g = self.get("T", 0, 1, n=1)
        self.tc.assertEqual(
            (g.status, g.message_count, g.next_begin_offset), (GetMessageStatus.FOUND, 1, 2)
        )

    def test_tag_filter(self) -> None:
        """Only records whose tags code is in the filter are returned; others are skipped."""
        for t in ["TagA", "TagB", "TagA", "TagB"]:
            self.put(make_msg(tags=t))
        g = self.get("T", 0, 0, tags={tags_hash("TagB")})
        self.tc.assertEqual(g.queue_offsets, [1, 3])
        self.tc.assertEqual(g.next_begin_offset, 4)
        g = self.get("T", 0, 0, tags={tags_hash("TagC")})
        self.tc.assertEqual(
            (g.status, g.next_begin_offset), (GetMessageStatus.NO_MATCHED_MESSAGE, 4)
        )

    def test_max_count(self) -> None:
        """At most max_count records come back, next offset after the last."""
        for i in range(40):
            self.put(make_msg(body=b"%d" % i))
        g = self.get("T", 0, 5, n=32)
        self.tc.assertEqual(g.message_count, 32)
        self.tc.assertEqual(g.next_begin_offset, 37)

    def test_look_by_offset(self) -> None:
        """A record is found by its commit-log offset; other offsets give None."""
        self.put(make_msg(body=b"one"))
        r = self.put(make_msg(body=b"two"))
        raw = self.tc.successResultOf(self.store.look_message_by_offset(r.wrote_offset))
        self.tc.assertEqual(decode_messages(raw)[0].body, b"two")
        self.tc.assertIsNone(self.tc.successResultOf(self.store.look_message_by_offset(10**9)))

    def test_query_by_key(self) -> None:
        """Messages are found by KEYS entry and by UNIQ_KEY within the time range, newest first."""
        self.put(make_msg(body=b"a", keys="k1 k2", uniq="U1"))
        self.clock.advance(10)
        self.put(make_msg(body=b"b", keys="k2", uniq="U2"))
        self.put(make_msg(topic="X", body=b"c", keys="k2"))
        now = int(self.clock.seconds() * 1000)
        q = self.tc.successResultOf(self.store.query_message("T", "k2", 32, 0, now))
        self.tc.assertEqual([m.body for m in decode_messages(q.body())], [b"b", b"a"])
        q = self.tc.successResultOf(self.store.query_message("T", "U1", 32, 0, now))
        self.tc.assertEqual([m.body for m in decode_messages(q.body())], [b"a"])
        q = self.tc.successResultOf(self.store.query_message("T", "k2", 32, now - 1000, now))
        self.tc.assertEqual([m.body for m in decode_messages(q.body())], [b"b"])
        q = self.tc.successResultOf(self.store.query_message("T", "k2", 1, 0, now))
        self.tc.assertEqual(len(q.messages), 1)
        q = self.tc.successResultOf(self.store.query_message("T", "nope", 32, 0, now))
        self.tc.assertEqual(q.messages, [])

    def test_offset_by_time_nearest_like_java(self) -> None:
        """With nearest=True the offset for a time is Java's getOffsetInQueueByTime: the first
        message stored exactly then, else the nearer neighbour (the earlier on a tie), the
        only one at either end; without, the first stored at or after the time."""
        t0 = int(T0 * 1000)
        # store times (ms after t0) of offsets 0..5
        for step in (0, 1000, 1000, 0, 3000, 4000):
            self.clock.advance(step / 1000)
            self.put(make_msg())
        self.put(make_msg(queue_id=1))
        times = [0, 1000, 2000, 2000, 5000, 9000]
        s = self.store

        def at(ms: int, nearest: bool = True) -> int:
            r: int = self.tc.successResultOf(
                s.get_offset_in_queue_by_time("T", 0, t0 + ms, nearest=nearest)
            )
            return r

        for off, ms in enumerate(times):
            self.tc.assertEqual(
                self.tc.successResultOf(s.get_message_store_timestamp("T", 0, off)), t0 + ms
            )
        self.tc.assertEqual(at(2000), 2)  # exact: the first stored then
        self.tc.assertEqual(at(2900), 3)  # 900 ms after offset 3, 2100 before offset 4
        self.tc.assertEqual(at(4100), 4)  # nearer the later one
        self.tc.assertEqual(at(3500), 3)  # tie: the earlier one
        self.tc.assertEqual(at(7000), 4)  # tie again
        self.tc.assertEqual(at(7001), 5)
        self.tc.assertEqual(at(-5000), 0)  # before all: the first
        self.tc.assertEqual(at(60000), 5)  # after all: the last message, not the max offset
        self.tc.assertEqual(at(2900, nearest=False), 4)
        self.tc.assertEqual(at(2000, nearest=False), 2)
        self.tc.assertEqual(at(60000, nearest=False), 6)
        self.tc.assertEqual(at(-5000, nearest=False), 0)
        for nearest in (True, False):
            self.tc.assertEqual(
                self.tc.successResultOf(s.get_offset_in_queue_by_time("T", 7, t0, nearest)), 0
            )
            self.tc.assertEqual(
                self.tc.successResultOf(s.get_offset_in_queue_by_time("nope", 0, t0, nearest)), 0
            )

    def test_times(self) -> None:
        """Offset by time, store time of an offset and earliest times follow the clock."""
        self.tc.assertEqual(self.tc.successResultOf(self.store.get_earliest_store_time()), -1)
        for _ in range(3):
            self.put(make_msg())
            self.clock.advance(1)
        t0 = int(T0 * 1000)
        s = self.store
        self.tc.assertEqual(
            self.tc.successResultOf(s.get_offset_in_queue_by_time("T", 0, t0 + 1000)), 1
        )
        self.tc.assertEqual(self.tc.successResultOf(s.get_offset_in_queue_by_time("T", 0, 0)), 0)
        self.tc.assertEqual(
            self.tc.successResultOf(s.get_offset_in_queue_by_time("T", 0, t0 + 9000)), 3
        )
        self.tc.assertEqual(
            self.tc.successResultOf(s.get_offset_in_queue_by_time("T", 0, t0 + 9000, True)), 2
        )
        self.tc.assertEqual(
            self.tc.successResultOf(s.get_message_store_timestamp("T", 0, 2)), t0 + 2000
        )
        self.tc.assertEqual(self.tc.successResultOf(s.get_message_store_timestamp("T", 0, 5)), -1)
        self.tc.assertEqual(self.tc.successResultOf(s.get_earliest_message_time("T", 0)), t0)
        self.tc.assertEqual(self.tc.successResultOf(s.get_earliest_store_time()), t0)

    def test_arrival_listener(self) -> None:
        """The arrival listener hears each dispatched record with its queue offset and tags code."""
        heard: list[tuple[str, int, int, int]] = []

        def listener(topic: str, qid: int, qoff: int, tags: int) -> None:
            g = self.get(topic, qid, qoff)
            self.tc.assertEqual(g.status, GetMessageStatus.FOUND)
            heard.append((topic, qid, qoff, tags))

        self.store.add_arrival_listener(listener)
        self.put(make_msg(queue_id=2))
        self.put(make_msg(queue_id=2, tags="TagB"))
        self.tc.successResultOf(self.store.flush())
        self.tc.assertEqual(heard, [("T", 2, 0, tags_hash("TagA")), ("T", 2, 1, tags_hash("TagB"))])
        self.store.remove_arrival_listener(listener)
        self.put(make_msg(queue_id=2))
        self.tc.successResultOf(self.store.flush())
        self.tc.assertEqual(len(heard), 2)

    def test_prepared_not_in_queue(self) -> None:
        """A PREPARED transactional record gets queue offset 0 and no consume-queue unit."""
        r = self.put(make_msg(sys_flag=MessageSysFlag.TRANSACTION_PREPARED_TYPE))
        self.tc.assertEqual(r.status, PutMessageStatus.PUT_OK)
        self.tc.assertEqual(self.store.get_max_offset_in_queue("T", 0), 0)
        raw = self.tc.successResultOf(self.store.look_message_by_offset(r.wrote_offset))
        self.tc.assertEqual(decode_messages(raw)[0].queue_offset, 0)

    def test_schedule_topic_tags_code(self) -> None:
        """Units of SCHEDULE_TOPIC_XXXX carry store time + level delay as the tags code."""
        self.put(make_msg(topic="SCHEDULE_TOPIC_XXXX", queue_id=1, props={DELAY: "2"}))
        g = self.get("SCHEDULE_TOPIC_XXXX", 1, 0)
        self.tc.assertEqual(g.tags_codes, [int(T0 * 1000) + 5000])

    def test_illegal_messages(self) -> None:
        """Bad or over-long topics, properties and bodies are refused with their own statuses."""
        r = self.put(make_msg(topic="t" * 128))
        self.tc.assertEqual(r.status, PutMessageStatus.MESSAGE_ILLEGAL)
        for bad in ("../x", "a/b", "..", ""):
            r = self.put(make_msg(topic=bad))
            self.tc.assertEqual(r.status, PutMessageStatus.MESSAGE_ILLEGAL, bad)
        r = self.put(make_msg(props={"big": "x" * 40000}))
        self.tc.assertEqual(r.status, PutMessageStatus.PROPERTIES_SIZE_EXCEEDED)
        r = self.put(make_msg(body=b"x" * (4 * 1024 * 1024 + 1)))
        self.tc.assertEqual(r.status, PutMessageStatus.MESSAGE_ILLEGAL)
        self.tc.assertEqual(self.store.get_max_phy_offset(), 0)

    def test_transfer_byte_limit(self) -> None:
        """A get stops before exceeding the in-memory transfer byte limit (at least one record)."""
        for _ in range(3):
            self.put(make_msg(body=b"x" * 200_000))
        g = self.get("T", 0, 0)
        self.tc.assertEqual(g.message_count, 1)
        self.tc.assertEqual(g.next_begin_offset, 1)

    def test_stop_refuses_puts(self) -> None:
        """After stop, puts are answered SERVICE_NOT_AVAILABLE."""
        self.tc.successResultOf(self.store.stop())
        r = self.put(make_msg())
        self.tc.assertEqual(r.status, PutMessageStatus.SERVICE_NOT_AVAILABLE)

    def test_delete_topics(self) -> None:
        """delete_topics drops every queue of the topics but keeps their records in the commit
        log; the queues answer NO_MATCHED_LOGIC_QUEUE and offsets 0, and a later put to the topic
        starts a fresh queue at offset 0."""
        first = self.put(make_msg(body=b"old-0"))
        self.put(make_msg(body=b"old-1"))
        self.put(make_msg(queue_id=3, body=b"old-q3"))
        self.put(make_msg(topic="U", body=b"u"))
        phys = self.store.get_max_phy_offset()
        n = self.tc.successResultOf(self.store.delete_topics({"T", "Absent"}))
        self.tc.assertEqual(n, 1)
        self.tc.assertEqual(self.store.topic_queues(), {"U": [0]})
        for qid in (0, 3):
            g = self.get("T", qid, 0)
            self.tc.assertEqual(g.status, GetMessageStatus.NO_MATCHED_LOGIC_QUEUE)
            self.tc.assertEqual(self.store.get_max_offset_in_queue("T", qid), 0)
            self.tc.assertEqual(self.store.get_min_offset_in_queue("T", qid), 0)
        self.tc.assertEqual(self.store.get_max_phy_offset(), phys)
        raw = self.tc.successResultOf(self.store.look_message_by_offset(first.wrote_offset))
        self.tc.assertEqual(decode_messages(raw)[0].body, b"old-0")
        self.tc.assertEqual([m.body for m in decode_messages(self.get("U", 0, 0).body())], [b"u"])
        r = self.put(make_msg(body=b"new-0"))
        self.tc.assertEqual((r.status, r.queue_offset), (PutMessageStatus.PUT_OK, 0))
        g = self.get("T", 0, 0)
        self.tc.assertEqual([m.body for m in decode_messages(g.body())], [b"new-0"])
        self.tc.assertEqual(decode_messages(g.body())[0].queue_offset, 0)
        self.tc.assertEqual(self.store.get_max_offset_in_queue("T", 0), 1)
        self.tc.assertEqual(self.tc.successResultOf(self.store.delete_topics(set())), 0)

    def test_clean_expired_consume_queues_drops_dead_topics(self) -> None:
        """clean_expired_consume_queues removes the queues of topics not in the live set
        (never SCHEDULE_TOPIC_XXXX's) and keeps live ones; a second pass removes nothing."""
        self.put(make_msg(topic="Live"))
        self.put(make_msg(topic="Dead", queue_id=0))
        self.put(make_msg(topic="Dead", queue_id=1))
        self.put(make_msg(topic="SCHEDULE_TOPIC_XXXX", queue_id=1, props={DELAY: "2"}))
        n = self.tc.successResultOf(self.store.clean_expired_consume_queues({"Live"}))
        self.tc.assertEqual(n, 2)
        self.tc.assertEqual(self.store.topic_queues(), {"Live": [0], "SCHEDULE_TOPIC_XXXX": [1]})
        self.tc.assertEqual(self.get("Dead", 1, 0).status, GetMessageStatus.NO_MATCHED_LOGIC_QUEUE)
        self.tc.assertEqual(self.get("Live", 0, 0).status, GetMessageStatus.FOUND)
        n = self.tc.successResultOf(self.store.clean_expired_consume_queues({"Live"}))
        self.tc.assertEqual(n, 0)
        self.tc.assertEqual(self.put(make_msg(topic="Dead", queue_id=1)).queue_offset, 0)
