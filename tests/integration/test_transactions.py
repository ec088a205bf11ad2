"""Integration: TransactionProducer against a real rmq NameServer + Broker (rmq.testing).

Real loopback sockets, the global reactor. The broker's check-back timing is shortened with its
own config keys (``transactionTimeOut`` / ``transactionCheckInterval``, in ms) so a check arrives
within a few hundred milliseconds instead of 6 s. Waits are for events (a consumed message, a
check-back call), bounded by a deadline; only "this never happens" is checked by waiting out a
window several check intervals long.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    ITransactionListener,
    LocalTransactionState,
    MessageExt,
    PushConsumer,
    SendStatus,
    TransactionProducer,
    new_message,
)
from rmq.common.asyncutil import global_reactor
from rmq.common.message import UNIQ_KEY
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request
from rmq.testing import LocalCluster, start_local_cluster

#: Check-back timing for these tests (ms): first check and re-checks after 300 ms.
CHECK_MS = 300
TX_PROPERTIES = {
    "transactionTimeOut": str(CHECK_MS),
    "transactionCheckInterval": str(CHECK_MS),
    "transactionCheckMax": "15",
}
#: Client timers short enough to follow a restarted broker quickly.
CLIENT_TIMERS = {"poll_name_server_interval": 0.2, "heartbeat_broker_interval": 0.2}
TOPIC = "TopicTx"
QUEUES = 4


class Waiters:
    """Deferreds fired when a condition over some recorded state becomes true."""

    def __init__(self) -> None:
        self._waiting: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def changed(self) -> None:
        """Re-evaluate every condition (call after each state change)."""
        waiting, self._waiting = self._waiting, []
        for cond, d in waiting:
            if d.called:
                continue
            if cond():
                d.callback(None)
            else:
                self._waiting.append((cond, d))

    def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> Deferred[None]:
        """Fire once ``cond()`` is true; fail with AssertionError after ``timeout`` seconds."""
        d: Deferred[None] = Deferred()
        if cond():
            d.callback(None)
            return d
        self._waiting.append((cond, d))
        d.addTimeout(timeout, global_reactor())

        def timed_out(f: Any) -> None:
            raise AssertionError(f"{what}: not within {timeout} s") from f.value

        d.addErrback(timed_out)
        return d


@implementer(ITransactionListener)
class Listener:
    """A local transaction table: ``execute`` decides at send time, ``check`` at check-back."""

    def __init__(self, waiters: Waiters, execute: Any, check: Any) -> None:
        self.waiters = waiters
        self.execute = execute
        self.check = check
        self.executed: list[tuple[str, Any]] = []
        self.checked: list[MessageExt] = []

    def execute_local_transaction(self, msg: Any, arg: Any) -> Any:
        answer = self.execute  # fixed before waiters resume the test
        self.executed.append((msg.properties[UNIQ_KEY], arg))
        self.waiters.changed()
        return answer

    def check_local_transaction(self, msg: MessageExt) -> Any:
        answer = self.check
        self.checked.append(msg)
        self.waiters.changed()
        return answer


class TransactionIntegrationTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.reactor = global_reactor()
        self.waiters = Waiters()
        self.consumed: list[MessageExt] = []

    async def cluster(self) -> LocalCluster:
        """A local cluster with short check-back timing and the topic (stopped at cleanup)."""
        cluster = await start_local_cluster(self.reactor, broker_properties=TX_PROPERTIES)
        self.addCleanup(cluster.stop)
        self.assert_short_checks(cluster)
        await self.create_topic(cluster)
        return cluster

    async def create_topic(self, cluster: LocalCluster) -> None:
        """UPDATE_AND_CREATE_TOPIC on the broker; fires once the NameServer routes the topic.

        Clients then know the broker from the topic's route from their start on (a consumer
        started before the topic existed would only heartbeat at its next 30 s tick).
        """
        client = RemotingClient(self.reactor, tcp_endpoint_factory(self.reactor))
        try:
            header = {
                "topic": TOPIC,
                "defaultTopic": "TBW102",
                "readQueueNums": QUEUES,
                "writeQueueNums": QUEUES,
                "perm": 6,
                "topicFilterType": "SINGLE_TAG",
                "topicSysFlag": 0,
                "order": False,
            }
            cmd = new_request(RequestCode.UPDATE_AND_CREATE_TOPIC, header)
            resp = await client.invoke(cluster.broker_addr, cmd, 5)
            self.assertEqual(resp.code, ResponseCode.SUCCESS, resp.remark)
            deadline = self.reactor.seconds() + 5
            while True:
                cmd = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": TOPIC})
                r = await client.invoke(cluster.namesrv_addr, cmd, 5)
                if r.code == ResponseCode.SUCCESS:
                    return
                self.assertLess(self.reactor.seconds(), deadline, "topic not routed")
                await deferLater(self.reactor, 0.01, lambda: None)
        finally:
            await client.close()

    def assert_short_checks(self, cluster: LocalCluster) -> None:
        """The broker took the check-back timing from its properties."""
        config = cluster.broker.guarantees.transactions.config
        self.assertEqual((config.timeout_ms, config.check_interval_ms), (CHECK_MS, CHECK_MS))

    async def producer(
        self, cluster: LocalCluster, listener: Listener, group: str = "PG_TX"
    ) -> TransactionProducer:
        p = TransactionProducer(
            group,
            listener,
            cluster.namesrv_addr,
            client_ip="127.0.0.1",
            **CLIENT_TIMERS,  # type: ignore[arg-type]
        )
        await p.start()
        self.addCleanup(p.shutdown)
        return p

    async def consumer(self, namesrv_addr: str, group: str = "CG_TX") -> PushConsumer:
        def listener(msgs: list[MessageExt]) -> object:
            self.consumed.extend(msgs)
            self.waiters.changed()
            return CONSUME_SUCCESS

        c = PushConsumer(
            group,
            namesrv_addr,
            client_ip="127.0.0.1",
            listener=listener,
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
            rebalance_interval=0.2,
            poll_name_server_interval=0.2,
        )
        c.subscribe(TOPIC, "*")
        await c.start()
        self.addCleanup(c.shutdown)
        return c

    def consumed_bodies(self) -> list[bytes]:
        return [m.body for m in self.consumed]

    def stored_in_topic(self, cluster: LocalCluster) -> int:
        """Messages on the real topic in the broker's store (all queues)."""
        return sum(cluster.store.get_max_offset_in_queue(TOPIC, q) for q in range(QUEUES))

    async def delivered(self, body: bytes, timeout: float = 15.0) -> None:
        await self.waiters.wait(
            lambda: body in self.consumed_bodies(), timeout, f"{body!r} consumed"
        )

    async def quiet_window(self) -> None:
        """Wait several check intervals of wall time (for "never happens" assertions)."""
        await deferLater(self.reactor, 4 * CHECK_MS / 1000.0, lambda: None)

    async def test_commit_delivered(self) -> None:
        """A committed transaction's message reaches a consumer once, with no check-back."""
        cluster = await self.cluster()
        listener = Listener(self.waiters, LocalTransactionState.COMMIT_MESSAGE, None)
        p = await self.producer(cluster, listener)
        msg = new_message(TOPIC, b"committed", tags="TagT", keys="order-1")
        result = await p.send_message_in_transaction(msg, "arg-1")
        self.assertEqual(result.status, SendStatus.SEND_OK)
        self.assertEqual(result.local_transaction_state, LocalTransactionState.COMMIT_MESSAGE)
        self.assertEqual(listener.executed, [(result.transaction_id, "arg-1")])
        await self.consumer(cluster.namesrv_addr)
        await self.delivered(b"committed")
        [got] = self.consumed
        self.assertEqual((got.topic, got.tags, got.keys), (TOPIC, "TagT", ["order-1"]))
        self.assertEqual(got.properties[UNIQ_KEY], result.transaction_id)
        self.assertEqual(got.queue_id, result.message_queue.queue_id)
        await self.quiet_window()
        self.assertEqual(listener.checked, [])
        self.assertEqual(cluster.broker.guarantees.transactions.pending_offsets(), [])
        self.assertEqual(self.stored_in_topic(cluster), 1)
        self.assertEqual(len(self.consumed), 1)

    async def test_rollback_never_delivered(self) -> None:
        """A rolled-back message never reaches the topic or a consumer, and is never checked;
        a later committed message on the same topic is delivered."""
        cluster = await self.cluster()
        listener = Listener(self.waiters, LocalTransactionState.ROLLBACK_MESSAGE, None)
        p = await self.producer(cluster, listener)
        result = await p.send_message_in_transaction(new_message(TOPIC, b"rolled-back"))
        self.assertEqual(result.local_transaction_state, LocalTransactionState.ROLLBACK_MESSAGE)
        await self.consumer(cluster.namesrv_addr)
        await self.quiet_window()
        self.assertEqual(listener.checked, [])
        self.assertEqual(cluster.broker.guarantees.transactions.pending_offsets(), [])
        self.assertEqual(self.stored_in_topic(cluster), 0)
        listener.execute = LocalTransactionState.COMMIT_MESSAGE
        await p.send_message_in_transaction(new_message(TOPIC, b"later-commit"))
        await self.delivered(b"later-commit")
        self.assertEqual(self.consumed_bodies(), [b"later-commit"])
        self.assertEqual(self.stored_in_topic(cluster), 1)

    async def test_unknown_then_check_commit(self) -> None:
        """UNKNOW at send time leaves the message invisible until the broker's check-back,
        answered COMMIT, makes it deliverable."""
        cluster = await self.cluster()
        listener = Listener(self.waiters, LocalTransactionState.UNKNOW, None)
        p = await self.producer(cluster, listener)
        await self.consumer(cluster.namesrv_addr)
        gate: Deferred[Any] = Deferred()
        listener.check = gate
        result = await p.send_message_in_transaction(new_message(TOPIC, b"decided-later"))
        self.assertEqual(result.local_transaction_state, LocalTransactionState.UNKNOW)
        await self.waiters.wait(lambda: bool(listener.checked), 10.0, "check-back")
        [checked] = listener.checked
        self.assertEqual((checked.topic, checked.body), (TOPIC, b"decided-later"))
        self.assertEqual(checked.properties[UNIQ_KEY], result.transaction_id)
        self.assertEqual(checked.queue_id, result.message_queue.queue_id)
        self.assertEqual(self.stored_in_topic(cluster), 0)
        self.assertEqual(self.consumed, [])
        gate.callback(LocalTransactionState.COMMIT_MESSAGE)
        await self.delivered(b"decided-later")
        await self.quiet_window()
        self.assertEqual(len(listener.checked), 1)
        self.assertEqual(self.consumed_bodies(), [b"decided-later"])
        self.assertEqual(cluster.broker.guarantees.transactions.pending_offsets(), [])

    async def test_unknown_checked_again_then_rollback(self) -> None:
        """A check answered UNKNOW is asked again later; ROLLBACK then closes it for good."""
        cluster = await self.cluster()
        listener = Listener(self.waiters, LocalTransactionState.UNKNOW, None)
        p = await self.producer(cluster, listener)
        await p.send_message_in_transaction(new_message(TOPIC, b"undecided"))
        await self.waiters.wait(lambda: len(listener.checked) >= 2, 10.0, "second check")
        listener.check = LocalTransactionState.ROLLBACK_MESSAGE
        await self.waiters.wait(lambda: len(listener.checked) >= 3, 10.0, "third check")
        await self.quiet_window()
        self.assertEqual(len(listener.checked), 3)
        self.assertEqual(cluster.broker.guarantees.transactions.pending_offsets(), [])
        self.assertEqual(self.stored_in_topic(cluster), 0)

    async def test_check_back_across_broker_restart(self) -> None:
        """A half message left UNKNOW survives a broker restart on the same file store; the
        restarted broker's check-back reaches the running producer and its commit delivers."""
        data = self.mktemp()
        # No check-back from the first broker: its first check would come after 1 hour.
        first = await start_local_cluster(
            self.reactor,
            data_dir=data,
            file_store=True,
            broker_properties={**TX_PROPERTIES, "transactionTimeOut": "3600000"},
        )
        broker_up = [True]

        async def stop_first() -> None:
            if broker_up[0]:
                await first.stop()
            else:
                await first.namesrv_service.stopService()

        self.addCleanup(stop_first)
        await self.create_topic(first)
        service = first.broker.guarantees.transactions
        listener = Listener(self.waiters, LocalTransactionState.UNKNOW, None)
        p = await self.producer(first, listener)
        result = await p.send_message_in_transaction(new_message(TOPIC, b"survives"))
        self.assertEqual(result.local_transaction_state, LocalTransactionState.UNKNOW)
        self.assertEqual(service.pending_offsets(), [result.queue_offset])
        await first.broker_service.stopService()
        broker_up[0] = False
        self.assertEqual(listener.checked, [])

        listener.check = LocalTransactionState.COMMIT_MESSAGE
        second = await start_local_cluster(
            self.reactor,
            data_dir=data,
            file_store=True,
            broker_properties={**TX_PROPERTIES, "namesrvAddr": first.namesrv_addr},
        )
        self.addCleanup(second.stop)
        self.assert_short_checks(second)
        await self.consumer(first.namesrv_addr)
        await self.waiters.wait(lambda: bool(listener.checked), 20.0, "check-back after restart")
        self.assertEqual(listener.checked[0].properties[UNIQ_KEY], result.transaction_id)
        await self.delivered(b"survives", timeout=20.0)
        await self.quiet_window()
        self.assertEqual(self.stored_in_topic(second), 1)
        self.assertEqual(second.broker.guarantees.transactions.pending_offsets(), [])
        self.assertEqual(len(listener.checked), 1)
        self.assertEqual(self.consumed_bodies(), [b"survives"])
