"""Transactions: half messages, END_TRANSACTION, check-backs, restarts (rmq.broker.transaction)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.broker.interfaces import ISendMessageHook
from rmq.broker.topic import TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC
from rmq.common.message import (
    PGROUP,
    REAL_QID,
    REAL_TOPIC,
    TAGS,
    TRAN_MSG,
    TRANSACTION_CHECK_TIMES,
    UNIQ_KEY,
    WAIT,
    MessageExt,
    MessageSysFlag,
    decode_message,
    decode_messages,
)
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from tests.broker.guarantees_support import GuaranteeBroker, make_root, new_clock
from tests.broker.support import FakeConnection
from tests.broker.test_sendback import frame
from tests.broker.test_vectors import CAPTURE_MS
from tests.support.vectors import load_hex

COMMIT = 8
ROLLBACK = 12
UNKNOWN = 0


def end(
    half_offset: int,
    commit_offset: int,
    kind: int,
    group: str = "PG",
    *,
    oneway: bool = True,
    from_check: bool = False,
) -> RemotingCommand:
    """END_TRANSACTION as the Java producer sends it (oneway)."""
    return new_request(
        RequestCode.END_TRANSACTION,
        {
            "producerGroup": group,
            "tranStateTableOffset": half_offset,
            "commitLogOffset": commit_offset,
            "commitOrRollback": kind,
            "fromTransactionCheck": from_check,
            "msgId": "U",
        },
        oneway=oneway,
    )


class TransactionTestsBase(SynchronousTestCase):
    file_store = False

    def setUp(self) -> None:
        self.clock = new_clock()
        self.root = make_root(self)
        self.b = self.incarnation()
        self.producer = FakeConnection("127.0.0.1:51000")
        self.register_producer()

    def incarnation(self) -> GuaranteeBroker:
        b = GuaranteeBroker(self, self.clock, self.root, file_store=self.file_store)
        self.addCleanup(b.stop)
        return b

    def register_producer(self) -> None:
        self.b.broker.producers.register_producer("PG", self.producer, "client-1")

    def half(self, body: bytes = b"tx", queue_id: int = 2, uniq: str = "U") -> tuple[int, int]:
        """Send a half message; (half queue offset, commit-log offset) from the response."""
        props = {TRAN_MSG: "true", PGROUP: "PG", UNIQ_KEY: uniq, TAGS: "TagT"}
        r = self.b.send(
            "TopicTx",
            body,
            props,
            queue_id=queue_id,
            sys_flag=MessageSysFlag.TRANSACTION_PREPARED_TYPE,
        )
        self.assertEqual((r.code, r.ext_fields["queueId"]), (0, str(queue_id)))
        qoff = int(r.ext_fields["queueOffset"])
        (m,) = [m for m in self.b.messages(TRANS_HALF_TOPIC, 0) if m.queue_offset == qoff]
        self.assertEqual(m.offset_msg_id, r.ext_fields["msgId"])
        return qoff, m.commit_log_offset

    def checks(self) -> list[RemotingCommand]:
        return [c for c in self.producer.oneways if c.code == RequestCode.CHECK_TRANSACTION_STATE]

    def answer(self, check: RemotingCommand, kind: int) -> None:
        """The producer answers a check-back (oneway END_TRANSACTION, fromTransactionCheck)."""
        self.b.request(
            end(
                int(check.ext_fields["tranStateTableOffset"]),
                int(check.ext_fields["commitLogOffset"]),
                kind,
                from_check=True,
            )
        )

    def op_bodies(self) -> list[bytes]:
        return [m.body for m in self.b.messages(TRANS_OP_HALF_TOPIC, 0)]


class TransactionTests(TransactionTestsBase):
    def test_half_message(self) -> None:
        """A TRAN_MSG send is stored in the half topic with its real topic and queue."""
        verifyObject(ISendMessageHook, self.b.g.transaction_hook)
        self.half(queue_id=3)
        (h,) = self.b.messages(TRANS_HALF_TOPIC, 0)
        self.assertEqual((h.properties[REAL_TOPIC], h.properties[REAL_QID]), ("TopicTx", "3"))
        self.assertEqual(MessageSysFlag.transaction_type(h.sys_flag), 0)
        self.assertEqual(self.b.all_messages("TopicTx"), [])
        half_topic = self.b.broker.topics.select(TRANS_HALF_TOPIC)
        assert half_topic is not None
        self.assertEqual(half_topic.read_queue_nums, 1)

    def test_commit(self) -> None:
        """Commit stores the message on its real queue (COMMIT type) and writes op record 0."""
        qoff, phys = self.half()
        self.assertIsNone(self.b.request(end(qoff, phys, COMMIT)))
        (m,) = self.b.messages("TopicTx", 2)
        self.assertEqual((m.body, m.tags, m.unique_key), (b"tx", "TagT", "U"))
        self.assertEqual(MessageSysFlag.transaction_type(m.sys_flag), COMMIT)
        self.assertEqual(m.prepared_transaction_offset, phys)
        self.assertEqual(m.properties[TRAN_MSG], "true")
        self.assertEqual(self.op_bodies(), [b"0"])
        (op,) = self.b.messages(TRANS_OP_HALF_TOPIC, 0)
        self.assertEqual(op.tags, "d")
        self.clock.advance(3600)
        self.assertEqual(self.checks(), [])
        self.assertEqual(self.b.g.transactions.progress, 1)

    def test_rollback(self) -> None:
        """Rollback writes only the op record; the message is never delivered nor checked."""
        qoff, phys = self.half()
        self.b.request(end(qoff, phys, ROLLBACK))
        self.assertEqual(self.b.all_messages("TopicTx"), [])
        self.assertEqual(self.op_bodies(), [b"0"])
        self.clock.advance(3600)
        self.assertEqual(self.checks(), [])
        self.assertEqual(self.b.all_messages("TopicTx"), [])

    def test_duplicate_commit_stored_once(self) -> None:
        """A repeated commit does not store the message twice."""
        qoff, phys = self.half()
        self.b.request(end(qoff, phys, COMMIT))
        self.b.request(end(qoff, phys, COMMIT))
        self.assertEqual(len(self.b.messages("TopicTx", 2)), 1)

    def test_checks_of_wrong_requests(self) -> None:
        """Wrong group, queue offset or commit-log offset answer SYSTEM_ERROR and store nothing."""
        qoff, phys = self.half()
        for cmd, remark in (
            (end(qoff, phys, COMMIT, group="OTHER", oneway=False), "producer group"),
            (end(qoff + 5, phys, COMMIT, oneway=False), "state table offset"),
            (end(qoff, phys + 1000, COMMIT, oneway=False), "Find prepared"),
        ):
            r = self.b.request(cmd)
            assert r is not None
            self.assertEqual(r.code, ResponseCode.SYSTEM_ERROR)
            self.assertIn(remark, r.remark or "")
        self.assertEqual(self.b.all_messages("TopicTx"), [])

    def test_unknown_then_check_back_commit(self) -> None:
        """UNKNOWN leaves the half; 6 s later the producer is asked and its commit delivers."""
        qoff, phys = self.half(queue_id=1)
        self.assertIsNone(self.b.request(end(qoff, phys, UNKNOWN)))
        self.clock.advance(5.999)
        self.assertEqual(self.checks(), [])
        self.clock.advance(0.001)
        (check,) = self.checks()
        self.assertTrue(check.is_oneway)
        f = check.ext_fields
        self.assertEqual(f["msgId"], "U")
        self.assertEqual(f["transactionId"], "U")
        self.assertEqual(f["tranStateTableOffset"], "1")
        (body,) = decode_messages(check.body)
        self.assertEqual((body.topic, body.queue_id, body.body), ("TopicTx", 1, b"tx"))
        self.assertEqual(body.properties[TRANSACTION_CHECK_TIMES], "1")
        self.assertEqual(body.commit_log_offset, int(f["commitLogOffset"]))
        self.assertEqual(body.offset_msg_id, f["offsetMsgId"])
        self.answer(check, COMMIT)
        (m,) = self.b.messages("TopicTx", 1)
        self.assertEqual(m.body, b"tx")
        self.clock.advance(600)
        self.assertEqual(len(self.checks()), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_check_schedule_and_discard(self) -> None:
        """Checks come at 6 s then every 60 s; after 15 the message is discarded and logged."""
        self.half()
        times: list[float] = []
        start = self.clock.seconds()
        for _ in range(16 * 60):
            self.clock.advance(1)
            if len(self.checks()) > len(times):
                times.append(self.clock.seconds() - start)
        self.assertEqual(times, [6 + 60 * i for i in range(15)])
        (given_up,) = self.b.messages(TRANS_CHECK_MAX_TIME_TOPIC, 0)
        self.assertEqual(given_up.body, b"tx")
        self.assertEqual(self.b.g.transactions.discarded, 1)
        self.assertEqual(self.b.g.transactions.pending_offsets(), [])
        self.assertEqual(self.b.all_messages("TopicTx"), [])

    def test_no_producer_still_counts(self) -> None:
        """Without a live producer the checks are counted (and logged) all the same."""
        self.b.broker.producers.connection_closed(self.producer)
        self.half()
        self.clock.advance(6)
        self.assertEqual(self.checks(), [])
        self.assertEqual(len(self.b.messages(TRANS_HALF_TOPIC, 0)), 2)

    def test_check_immunity(self) -> None:
        """CHECK_IMMUNITY_TIME_IN_SECONDS delays the first check."""
        props = {
            TRAN_MSG: "true",
            PGROUP: "PG",
            UNIQ_KEY: "U",
            "CHECK_IMMUNITY_TIME_IN_SECONDS": "30",
        }
        self.b.send("TopicTx", b"x", props, sys_flag=4)
        self.clock.advance(29)
        self.assertEqual(self.checks(), [])
        self.clock.advance(1)
        self.assertEqual(len(self.checks()), 1)

    def test_late_commit_for_checked_original(self) -> None:
        """A commit naming the original half after a check copy resolves the copy too."""
        qoff, phys = self.half()
        self.clock.advance(6)
        self.assertEqual(len(self.checks()), 1)
        self.b.request(end(qoff, phys, COMMIT))
        self.assertEqual(len(self.b.messages("TopicTx", 2)), 1)
        self.clock.advance(600)
        self.assertEqual(len(self.checks()), 1)
        self.assertEqual(self.b.g.transactions.pending_offsets(), [])


class TransactionRestartTests(TransactionTestsBase):
    file_store = True

    def restart(self) -> None:
        self.b.stop()
        self.producer.oneways.clear()
        self.b = self.incarnation()
        self.register_producer()

    def test_check_back_after_restart(self) -> None:
        """A half message left by a stopped broker is checked by the next one and committed."""
        self.half()
        self.clock.advance(3)
        self.restart()
        self.clock.advance(2.999)
        self.assertEqual(self.checks(), [])
        self.clock.advance(0.001)
        (check,) = self.checks()
        self.answer(check, COMMIT)
        self.assertEqual([m.body for m in self.b.messages("TopicTx", 2)], [b"tx"])
        self.restart()
        self.clock.advance(3600)
        self.assertEqual(self.checks(), [])
        self.assertEqual([m.body for m in self.b.messages("TopicTx", 2)], [b"tx"])

    def test_resolved_and_copied_halves_not_rechecked(self) -> None:
        """After a restart, committed halves and checked originals are not checked again."""
        q0, p0 = self.half(b"a", uniq="A")
        self.half(b"b", uniq="B")
        self.b.request(end(q0, p0, COMMIT))
        self.clock.advance(6)
        (check,) = self.checks()
        self.assertEqual(check.ext_fields["msgId"], "B")
        self.restart()
        self.clock.advance(59.999)
        self.assertEqual(self.checks(), [])
        self.clock.advance(0.001)
        (check,) = self.checks()
        self.assertEqual(decode_messages(check.body)[0].properties[TRANSACTION_CHECK_TIMES], "2")
        self.answer(check, ROLLBACK)
        self.restart()
        self.clock.advance(3600)
        self.assertEqual(self.checks(), [])
        self.assertEqual([m.body for m in self.b.messages("TopicTx", 2)], [b"a"])
        self.assertEqual(self.b.g.transactions.pending_offsets(), [])


class TransactionVectorTests(SynchronousTestCase):
    """The recorded Java transaction frames replayed against rmq, compared in meaning."""

    def setUp(self) -> None:
        self.clock = new_clock()
        self.clock.advance(CAPTURE_MS / 1000 - self.clock.seconds())
        self.b = GuaranteeBroker(self, self.clock, make_root(self), listen_port=40911)
        self.addCleanup(self.b.stop)
        self.producer = FakeConnection("127.0.0.1:37104")
        self.b.broker.producers.register_producer("PG_TX", self.producer, "c")

    def java_record(self, pos: int) -> MessageExt:
        data = load_hex("store/commitlog-00000000000000000000.first-8299-bytes.hex")
        return decode_message(data, pos)

    def send_half(self) -> tuple[RemotingCommand, MessageExt]:
        ours = self.b.request(frame("java-send-v2-tx-half.req.hex"))
        assert ours is not None
        recorded = frame("java-send-v2-tx-half.resp.hex")
        self.assertEqual((ours.code, ours.opaque), (recorded.code, recorded.opaque))
        self.assertEqual(set(ours.ext_fields), set(recorded.ext_fields))
        self.assertEqual(ours.ext_fields["queueId"], recorded.ext_fields["queueId"])
        half = self.b.messages(TRANS_HALF_TOPIC, 0)[-1]
        self.assertEqual(ours.ext_fields["queueOffset"], str(half.queue_offset))
        return ours, half

    def replay_end(self, name: str, half: MessageExt) -> None:
        request = frame(name)
        request.ext_fields["commitLogOffset"] = str(half.commit_log_offset)
        self.assertIsNone(self.b.request(request))

    def test_half_and_commit(self) -> None:
        """The half record and the committed record have the properties Java stored."""
        ours, half = self.send_half()
        self.assertEqual(ours.ext_fields["queueOffset"], "0")
        theirs = self.java_record(1792)
        self.assertEqual(half.properties, {k: v for k, v in theirs.properties.items() if k != WAIT})
        self.replay_end("java-end-transaction-commit.oneway.hex", half)
        (m,) = self.b.messages("TopicTx", 1)
        committed = self.java_record(2081)
        self.assertEqual(m.properties, {k: v for k, v in committed.properties.items() if k != WAIT})
        self.assertEqual((m.sys_flag, m.prepared_transaction_offset), (8, half.commit_log_offset))
        (op,) = self.b.messages(TRANS_OP_HALF_TOPIC, 0)
        java_op = self.java_record(2353)
        self.assertEqual((op.body, op.tags), (java_op.body, java_op.tags))

    def test_rollback_and_unknown(self) -> None:
        """Rollback writes op record 1 and stores nothing; unknown does nothing."""
        self.send_half()
        _, second = self.send_half()
        self.replay_end("java-end-transaction-rollback.oneway.hex", second)
        self.assertEqual([m.body for m in self.b.messages(TRANS_OP_HALF_TOPIC, 0)], [b"1"])
        _, third = self.send_half()
        self.replay_end("java-end-transaction-unknown.oneway.hex", third)
        self.assertEqual(len(self.b.messages(TRANS_OP_HALF_TOPIC, 0)), 1)
        self.assertEqual(self.b.all_messages("TopicTx"), [])

    def test_check_back_like_java(self) -> None:
        """The check-back has Java's shape and the producer's answer from it commits."""
        self.send_half()
        self.clock.advance(6)
        (check,) = self.producer.oneways
        recorded = frame("broker-check-transaction-state.oneway.hex")
        self.assertEqual((check.code, check.flag), (recorded.code, recorded.flag))
        self.assertEqual(set(check.ext_fields), set(recorded.ext_fields))
        self.assertEqual(
            (check.ext_fields["msgId"], check.ext_fields["transactionId"]),
            ("FD0000000000000000000000000000024A7230946E096B85B1780000",) * 2,
        )
        (ours,) = decode_messages(check.body)
        (theirs,) = decode_messages(recorded.body)
        self.assertEqual((ours.topic, ours.body), (theirs.topic, b"tx-commit"))
        self.assertEqual(ours.queue_id, 1)
        self.assertEqual(ours.properties[TRANSACTION_CHECK_TIMES], "1")
        self.assertEqual(ours.properties[REAL_TOPIC], theirs.properties[REAL_TOPIC])
        answer = frame("java-end-transaction-from-check.oneway.hex")
        answer.ext_fields["commitLogOffset"] = check.ext_fields["commitLogOffset"]
        answer.ext_fields["tranStateTableOffset"] = check.ext_fields["tranStateTableOffset"]
        self.assertIsNone(self.b.request(answer))
        (m,) = self.b.messages("TopicTx", 1)
        self.assertEqual(m.body, b"tx-commit")
        self.assertEqual(m.properties[TRANSACTION_CHECK_TIMES], "1")


class TransactionConfigTests(SynchronousTestCase):
    def test_broker_conf_keys(self) -> None:
        """The three transaction keys of broker.conf reach the check-back service."""
        from rmq.broker.config import configs_from_properties
        from rmq.broker.service import build_broker
        from rmq.broker.transaction import TransactionConfig
        from rmq.store.memory import MemoryMessageStore
        from tests.broker.support import FakeNameServerClient

        clock = new_clock()
        props = {
            "transactionTimeOut": "500",
            "transactionCheckInterval": "700",
            "transactionCheckMax": "3",
            "storePathRootDir": make_root(self),
        }
        config, store_config = configs_from_properties(props)
        broker = build_broker(
            config,
            clock,
            MemoryMessageStore(clock),
            FakeNameServerClient(),
            store_config=store_config,
        )
        self.assertEqual(
            broker.guarantees.transactions.config,
            TransactionConfig(timeout_ms=500, check_interval_ms=700, check_max=3),
        )
