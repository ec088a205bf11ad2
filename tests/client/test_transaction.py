"""TransactionProducer against a recording fake cluster on a Clock; headers vs Java vectors."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import rmq.client
from rmq.client import (
    ITransactionListener,
    LocalTransactionState,
    SendStatus,
    TransactionProducer,
    TransactionSendResult,
    new_message,
)
from rmq.client.transaction import coerce_state, end_transaction_code
from rmq.common.errors import MQBrokerError, MQClientError
from rmq.common.message import (
    DELAY,
    PGROUP,
    TRAN_MSG,
    UNIQ_KEY,
    Message,
    MessageExt,
    MessageSysFlag,
    create_offset_msg_id,
    decode_messages,
    string_to_properties,
)
from rmq.remoting.codes import RequestCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.dispatch import Dispatcher, FunctionProcessor
from rmq.remoting.protocol import RemotingProtocol
from tests.client.fakes import NAMESRV, FakeCluster, FakeRemoting
from tests.support.vectors import load_command, load_frame

BROKER_A = "127.0.0.1:10911"


@implementer(ITransactionListener)
class RecordingListener:
    """Answers from ``execute`` / ``check`` (values, Deferreds, exceptions or callables)."""

    def __init__(self, execute: Any = None, check: Any = None) -> None:
        self.execute = execute
        self.check = check
        self.calls: list[tuple[str, Any, Any]] = []

    def execute_local_transaction(self, msg: Any, arg: Any) -> Any:
        self.calls.append(("execute", msg, arg))
        return self._answer(self.execute, msg)

    def check_local_transaction(self, msg: Any) -> Any:
        self.calls.append(("check", msg, None))
        return self._answer(self.check, msg)

    @staticmethod
    def _answer(how: Any, msg: Any) -> Any:
        if isinstance(how, BaseException):
            raise how
        if callable(how):
            return how(msg)
        return how


class TxCluster(FakeCluster):
    """A FakeCluster whose send answers can be pinned to given ``msgId``/``queueOffset``."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.pinned: dict[str, object] | None = None

    def _b310(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        resp = super()._b310(remote, broker, cmd)
        if self.pinned is not None and resp.code == 0:
            return new_response(cmd, 0, None, {**resp.ext_fields, **self.pinned})
        return resp


class PeerConnection:
    """The broker connection a check request arrives on (only its address is used)."""

    def __init__(self, remote_address: str) -> None:
        self.remote_address = remote_address


def ends(cluster: FakeCluster) -> list[tuple[str, RemotingCommand]]:
    """Recorded END_TRANSACTION requests."""
    return cluster.sent(RequestCode.END_TRANSACTION)


class TransactionProducerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))
        self.cluster = TxCluster(self.clock)
        self.cluster.create_topic("TopicTx")
        self.listener = RecordingListener(execute=LocalTransactionState.COMMIT_MESSAGE)
        self.producer = self.make_producer("PG_TX", self.listener)

    def make_producer(self, group: str, listener: Any) -> TransactionProducer:
        producer = TransactionProducer(
            group,
            listener,
            NAMESRV,
            self.clock,
            remoting_factory=self.cluster.connect,
            client_ip="10.1.2.3",
        )
        self.successResultOf(producer.start())
        self.addCleanup(lambda: self.successResultOf(producer.shutdown()))
        return producer

    def check_request(self, name: str = "broker-check-transaction-state.oneway.hex") -> Any:
        """Deliver a CHECK_TRANSACTION_STATE vector from broker-a; returns the handler's answer."""
        return self.producer.instance.process_request(PeerConnection(BROKER_A), load_command(name))

    # --- half message and END_TRANSACTION ------------------------------------------------------

    def test_half_message_then_commit(self) -> None:
        """The half message carries TRAN_MSG, PGROUP and the PREPARED sysFlag; the listener runs
        after it is stored and its COMMIT goes to the storing broker as a oneway END_TRANSACTION."""
        msg = new_message("TopicTx", b"tx-body", tags="TagT")
        result = self.successResultOf(self.producer.send_message_in_transaction(msg, "my-arg"))
        [(_, send)] = self.cluster.sent(RequestCode.SEND_MESSAGE_V2)
        self.assertEqual(int(send.ext_fields["f"]), MessageSysFlag.TRANSACTION_PREPARED_TYPE)
        props = string_to_properties(send.ext_fields["i"])
        self.assertEqual((props[TRAN_MSG], props[PGROUP]), ("true", "PG_TX"))
        self.assertEqual(self.listener.calls, [("execute", msg, "my-arg")])
        [(addr, end)] = ends(self.cluster)
        self.assertEqual(addr, BROKER_A)
        self.assertTrue(end.is_oneway)
        stored = decode_messages(self.cluster.queues[("broker-a", "TopicTx", 0)][0])[0]
        self.assertEqual(
            end.ext_fields,
            {
                "producerGroup": "PG_TX",
                "bname": "broker-a",
                "commitLogOffset": str(stored.commit_log_offset),
                "msgId": msg.properties[UNIQ_KEY],
                "tranStateTableOffset": "0",
                "commitOrRollback": "8",
                "fromTransactionCheck": "false",
            },
        )
        self.assertIsInstance(result, TransactionSendResult)
        self.assertEqual(result.status, SendStatus.SEND_OK)
        self.assertEqual(result.local_transaction_state, LocalTransactionState.COMMIT_MESSAGE)
        self.assertEqual(result.transaction_id, msg.properties[UNIQ_KEY])
        self.assertEqual(result.msg_id, msg.properties[UNIQ_KEY])
        self.assertEqual(result.message_queue.broker_name, "broker-a")

    def end_for_vector(self, name: str, state: Any) -> RemotingCommand:
        """Send a transaction whose half message got the vector's offsets; the END sent."""
        want = load_command(name)
        ext = want.ext_fields
        self.cluster.pinned = {
            "msgId": create_offset_msg_id("127.0.0.1", 40911, int(ext["commitLogOffset"])),
            "queueOffset": ext["tranStateTableOffset"],
        }
        self.listener.execute = state
        msg = new_message("TopicTx", b"tx", tags="TagT", properties={UNIQ_KEY: ext["msgId"]})
        self.successResultOf(self.producer.send_message_in_transaction(msg, None))
        [(_, end)] = ends(self.cluster)
        return end

    def test_commit_matches_java(self) -> None:
        """A commit's END_TRANSACTION header equals Java 4.9.7's (java-end-transaction-commit)."""
        name = "java-end-transaction-commit.oneway.hex"
        end = self.end_for_vector(name, LocalTransactionState.COMMIT_MESSAGE)
        want = load_command(name)
        self.assertEqual(end.ext_fields, want.ext_fields)
        self.assertEqual((end.code, end.flag, end.remark), (want.code, want.flag, want.remark))

    def test_rollback_matches_java(self) -> None:
        """A rollback's END_TRANSACTION header equals Java's (commitOrRollback 12)."""
        name = "java-end-transaction-rollback.oneway.hex"
        end = self.end_for_vector(name, LocalTransactionState.ROLLBACK_MESSAGE)
        self.assertEqual(end.ext_fields, load_command(name).ext_fields)

    def test_unknown_matches_java(self) -> None:
        """An UNKNOW outcome is still reported, as Java does (commitOrRollback 0)."""
        name = "java-end-transaction-unknown.oneway.hex"
        end = self.end_for_vector(name, LocalTransactionState.UNKNOWN)
        self.assertEqual(end.ext_fields, load_command(name).ext_fields)

    def test_listener_deferred(self) -> None:
        """A Deferred from execute_local_transaction holds END_TRANSACTION and the result until
        it fires."""
        pending: Deferred[Any] = Deferred()
        self.listener.execute = pending
        d = self.producer.send_message_in_transaction(new_message("TopicTx", b"x"), 1)
        self.assertNoResult(d)
        self.assertEqual(len(self.cluster.sent(RequestCode.SEND_MESSAGE_V2)), 1)
        self.assertEqual(ends(self.cluster), [])
        pending.callback(LocalTransactionState.ROLLBACK_MESSAGE)
        result = self.successResultOf(d)
        self.assertEqual(result.local_transaction_state, LocalTransactionState.ROLLBACK_MESSAGE)
        self.assertEqual(ends(self.cluster)[0][1].ext_fields["commitOrRollback"], "12")

    def test_listener_coroutine(self) -> None:
        """An ``async def`` listener method is awaited."""

        @implementer(ITransactionListener)
        class AsyncListener:
            async def execute_local_transaction(self, msg: Any, arg: Any) -> Any:
                return LocalTransactionState.COMMIT_MESSAGE

            async def check_local_transaction(self, msg: Any) -> Any:
                return LocalTransactionState.COMMIT_MESSAGE

        producer = self.make_producer("PG_ASYNC", AsyncListener())
        result = self.successResultOf(
            producer.send_message_in_transaction(new_message("TopicTx", b"x"))
        )
        self.assertEqual(result.local_transaction_state, LocalTransactionState.COMMIT_MESSAGE)
        self.assertEqual(ends(self.cluster)[0][1].ext_fields["commitOrRollback"], "8")

    def test_listener_exception_is_unknown(self) -> None:
        """An exception in execute_local_transaction is logged and reported as UNKNOW with
        Java's remark."""
        self.listener.execute = RuntimeError("db down")
        result = self.successResultOf(
            self.producer.send_message_in_transaction(new_message("TopicTx", b"x"))
        )
        self.assertEqual(result.local_transaction_state, LocalTransactionState.UNKNOW)
        [(_, end)] = ends(self.cluster)
        self.assertEqual(end.ext_fields["commitOrRollback"], "0")
        self.assertEqual(
            end.remark, "executeLocalTransactionBranch exception: RuntimeError: db down"
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_listener_failed_deferred_is_unknown(self) -> None:
        """A Deferred that fails counts as UNKNOW too."""
        pending: Deferred[Any] = Deferred()
        self.listener.execute = pending
        d = self.producer.send_message_in_transaction(new_message("TopicTx", b"x"))
        pending.errback(ValueError("nope"))
        self.assertEqual(self.successResultOf(d).local_transaction_state.name, "UNKNOW")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_listener_none_and_names(self) -> None:
        """None means UNKNOW; state names are accepted; anything else is an error (UNKNOW)."""
        for answer, want in [
            (None, "0"),
            ("COMMIT_MESSAGE", "8"),
            ("ROLLBACK_MESSAGE", "12"),
            ("UNKNOWN", "0"),
            (42, "0"),
        ]:
            self.listener.execute = answer
            self.successResultOf(
                self.producer.send_message_in_transaction(new_message("TopicTx", b"x"))
            )
            self.assertEqual(ends(self.cluster)[-1][1].ext_fields["commitOrRollback"], want)
        self.assertEqual(len(self.flushLoggedErrors(MQClientError)), 1)

    def test_not_stored_ok_rolls_back(self) -> None:
        """A half message stored without its guarantee (FLUSH_DISK_TIMEOUT) is rolled back and
        the listener is not called (Java)."""
        self.cluster.send_code["broker-a"] = 10
        result = self.successResultOf(
            self.producer.send_message_in_transaction(new_message("TopicTx", b"x"))
        )
        self.assertEqual(result.status, SendStatus.FLUSH_DISK_TIMEOUT)
        self.assertEqual(result.local_transaction_state, LocalTransactionState.ROLLBACK_MESSAGE)
        self.assertEqual(self.listener.calls, [])
        self.assertEqual(ends(self.cluster)[0][1].ext_fields["commitOrRollback"], "12")

    def test_send_refused(self) -> None:
        """When the half message is refused the call fails, the listener is not called and no
        END_TRANSACTION is sent."""
        self.cluster.send_code["broker-a"] = 13
        f = self.failureResultOf(
            self.producer.send_message_in_transaction(new_message("TopicTx", b"x")),
            MQBrokerError,
        )
        self.assertEqual(f.value.code, 13)
        self.assertEqual((self.listener.calls, ends(self.cluster)), ([], []))

    def test_bad_message_refused(self) -> None:
        """An empty body, a system topic or a batch fails with MQClientError before any
        request."""
        batch: Any = [Message("TopicTx", b"x")]
        for msg in [Message("TopicTx", b""), Message("RMQ_SYS_TRANS_HALF_TOPIC", b"x"), batch]:
            self.failureResultOf(self.producer.send_message_in_transaction(msg), MQClientError)
        self.assertEqual(self.cluster.sent(RequestCode.SEND_MESSAGE_V2), [])

    def test_delay_dropped(self) -> None:
        """A DELAY property is removed from a transactional message (Java clears it)."""
        msg = new_message("TopicTx", b"x", delay_level=3)
        self.successResultOf(self.producer.send_message_in_transaction(msg))
        [(_, send)] = self.cluster.sent(RequestCode.SEND_MESSAGE_V2)
        self.assertNotIn(DELAY, string_to_properties(send.ext_fields["i"]))

    def test_compressed_half_message(self) -> None:
        """A large half message is compressed and still flagged PREPARED."""
        self.successResultOf(
            self.producer.send_message_in_transaction(new_message("TopicTx", b"a" * 5000))
        )
        [(_, send)] = self.cluster.sent(RequestCode.SEND_MESSAGE_V2)
        flags = int(send.ext_fields["f"])
        self.assertEqual(flags & MessageSysFlag.TRANSACTION_TYPE_MASK, 4)
        self.assertEqual(flags & MessageSysFlag.COMPRESSED_FLAG, 1)

    def test_plain_send_not_transactional(self) -> None:
        """Plain send() on a TransactionProducer is an ordinary send (sysFlag 0, no listener)."""
        self.successResultOf(self.producer.send(new_message("TopicTx", b"x")))
        [(_, send)] = self.cluster.sent(RequestCode.SEND_MESSAGE_V2)
        self.assertEqual(send.ext_fields["f"], "0")
        self.assertNotIn(TRAN_MSG, string_to_properties(send.ext_fields["i"]))
        self.assertEqual((self.listener.calls, ends(self.cluster)), ([], []))

    def test_end_not_sendable_is_logged(self) -> None:
        """When the storing broker's address is gone the outcome is still returned (the broker
        will ask back)."""
        self.listener.execute = lambda msg: self.producer.instance.broker_addrs.clear()
        result = self.successResultOf(
            self.producer.send_message_in_transaction(new_message("TopicTx", b"x"))
        )
        self.assertEqual(result.local_transaction_state, LocalTransactionState.UNKNOW)
        self.assertEqual(ends(self.cluster), [])

    # --- check-back ---------------------------------------------------------------------------

    def test_check_back_matches_java(self) -> None:
        """CHECK_TRANSACTION_STATE (broker vector) calls check_local_transaction with the stored
        message and is answered like Java (java-end-transaction-from-check) to the asking broker;
        the check itself gets no response."""
        self.listener.check = LocalTransactionState.COMMIT_MESSAGE
        self.assertIsNone(self.check_request())
        [(kind, msg, _)] = self.listener.calls
        self.assertEqual(kind, "check")
        self.assertIsInstance(msg, MessageExt)
        self.assertEqual((msg.topic, msg.body, msg.queue_id), ("TopicTx", b"tx-unknown", 3))
        [(addr, end)] = ends(self.cluster)
        self.assertEqual(addr, BROKER_A)
        want = load_command("java-end-transaction-from-check.oneway.hex")
        self.assertEqual(end.ext_fields, want.ext_fields)
        self.assertTrue(end.is_oneway)
        self.assertIsNone(end.remark)
        self.assertEqual(self.producer.pending_checks(), 0)

    def test_check_back_from_wire_bytes(self) -> None:
        """The broker's CHECK_TRANSACTION_STATE frame bytes, read by a RemotingProtocol whose
        dispatcher is the client's, reach the listener; the END goes to the peer broker and
        nothing is written back on the check's connection (oneway)."""
        self.listener.check = LocalTransactionState.ROLLBACK_MESSAGE
        handler = FunctionProcessor(self.producer.instance.process_request)
        proto = RemotingProtocol(
            Dispatcher({RequestCode.CHECK_TRANSACTION_STATE: handler}), self.clock
        )
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 10911))
        proto.makeConnection(transport)
        proto.dataReceived(load_frame("broker-check-transaction-state.oneway.hex"))
        self.assertEqual(len(self.listener.calls), 1)
        [(addr, end)] = ends(self.cluster)
        self.assertEqual(addr, BROKER_A)
        self.assertEqual(end.ext_fields["commitOrRollback"], "12")
        self.assertEqual(transport.value(), b"")
        proto.connectionLost(Failure(ConnectionDone()))

    def test_check_back_deferred(self) -> None:
        """A Deferred from check_local_transaction delays the answer until it fires."""
        pending: Deferred[Any] = Deferred()
        self.listener.check = pending
        self.check_request()
        self.assertEqual(ends(self.cluster), [])
        self.assertEqual(self.producer.pending_checks(), 1)
        pending.callback(LocalTransactionState.ROLLBACK_MESSAGE)
        [(_, end)] = ends(self.cluster)
        self.assertEqual(
            (end.ext_fields["commitOrRollback"], end.ext_fields["fromTransactionCheck"]),
            ("12", "true"),
        )
        self.assertEqual(self.producer.pending_checks(), 0)

    def test_check_back_exception(self) -> None:
        """An exception in check_local_transaction is answered UNKNOW with Java's remark."""
        self.listener.check = KeyError("order-1")
        self.check_request()
        [(_, end)] = ends(self.cluster)
        self.assertEqual(end.ext_fields["commitOrRollback"], "0")
        self.assertEqual(end.remark, "checkLocalTransactionState Exception: KeyError: 'order-1'")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_check_back_without_peer_address(self) -> None:
        """Without a usable peer address the answer goes to the message's store host."""
        self.listener.check = LocalTransactionState.COMMIT_MESSAGE
        self.producer.instance.process_request(
            None, load_command("broker-check-transaction-state.oneway.hex")
        )
        [(addr, _)] = ends(self.cluster)
        self.assertEqual(addr, "127.0.0.1:40911")

    def test_check_back_after_shutdown_dropped(self) -> None:
        """A check answered after the producer shut down sends nothing."""
        pending: Deferred[Any] = Deferred()
        self.listener.check = pending
        self.check_request()
        self.successResultOf(self.producer.shutdown())
        pending.callback(LocalTransactionState.COMMIT_MESSAGE)
        self.assertEqual(ends(self.cluster), [])
        self.assertEqual(self.producer.pending_checks(), 0)

    def test_check_back_other_group_ignored(self) -> None:
        """A check for a group this client does not produce for is ignored."""
        cmd = load_command("broker-check-transaction-state.oneway.hex")
        msg = decode_messages(cmd.body)[0]
        self.assertEqual(msg.properties[PGROUP], "PG_TX")
        other = self.make_producer("PG_OTHER", RecordingListener())
        self.successResultOf(self.producer.shutdown())
        self.assertIsNone(other.instance.process_request(PeerConnection(BROKER_A), cmd))
        self.assertEqual(ends(self.cluster), [])

    def test_check_back_bad_header(self) -> None:
        """A check without offsets is ignored with a warning (the listener is not called)."""
        cmd = load_command("broker-check-transaction-state.oneway.hex")
        bad = new_request(
            RequestCode.CHECK_TRANSACTION_STATE,
            {"msgId": cmd.ext_fields["msgId"], "commitLogOffset": "x"},
            cmd.body,
            oneway=True,
        )
        self.producer.instance.process_request(PeerConnection(BROKER_A), bad)
        self.assertEqual((self.listener.calls, ends(self.cluster)), ([], []))

    # --- values and wiring --------------------------------------------------------------------

    def test_listener_interface_checked(self) -> None:
        """The listener must provide ITransactionListener (TypeError otherwise)."""
        verifyObject(ITransactionListener, self.listener)
        self.assertRaises(TypeError, TransactionProducer, "PG_BAD", object(), NAMESRV, self.clock)

    def test_states(self) -> None:
        """Java's spelling UNKNOW with the UNKNOWN alias; codes 8 / 12 / 0."""
        self.assertIs(LocalTransactionState.UNKNOWN, LocalTransactionState.UNKNOW)
        self.assertEqual([end_transaction_code(s) for s in LocalTransactionState], [8, 12, 0])
        self.assertIs(coerce_state("UNKNOW"), LocalTransactionState.UNKNOW)
        self.assertRaises(MQClientError, coerce_state, "COMMIT")

    def test_exports(self) -> None:
        """rmq.client exports the transaction API."""
        for name in [
            "TransactionProducer",
            "TransactionSendResult",
            "LocalTransactionState",
            "ITransactionListener",
        ]:
            self.assertIn(name, rmq.client.__all__)
            self.assertTrue(hasattr(rmq.client, name))
