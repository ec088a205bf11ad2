"""What both consumers share (:class:`BaseConsumer`): subscriptions, rebalance, per-queue
long-poll pulls and offset tracking; the consumer enums and :class:`ProcessQueue`.
:mod:`rmq.client.push_consumer` and :mod:`rmq.client.pull_consumer` build on it.

Rebalance runs at start, every 20 s and at once on NOTIFY_CONSUMER_IDS_CHANGED. Each owned queue
has a :class:`ProcessQueue` and one pull loop (PULL_MESSAGE with SUSPEND, 15 s hold, 30 s RPC
timeout); a queue holding more than 1,000 messages or 100 MiB waits 50 ms before pulling again.
The committed offset of a queue is the lowest offset still being processed, or the highest pulled
+ 1 when none is (at-least-once).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from rmq.client.allocate import AllocateMessageQueueAveragely
from rmq.client.api import (
    EXPRESSION_TAG,
    RETRY_GROUP_TOPIC_PREFIX,
    MessageSelector,
    PullResult,
    PullStatus,
    PullSysFlag,
    SubscriptionData,
    TopicRoute,
)
from rmq.client.instance import ClientMember, MQClientInstance, RemotingFactory
from rmq.client.interfaces import IAllocateStrategy, IOffsetStore
from rmq.client.message_queue import MessageQueue
from rmq.client.offsets import (
    BlockingRunner,
    LocalFileOffsetStore,
    RemoteBrokerOffsetStore,
    default_offset_dir,
    run_inline,
)
from rmq.common.asyncutil import deferred_api, log_failure, now_ms
from rmq.common.errors import MQClientError, RMQError
from rmq.common.message import MessageExt

PULL_BATCH_SIZE = 32
SUSPEND_TIMEOUT_MS = 15000
PULL_RPC_TIMEOUT = 30.0
PULL_DELAY_ON_ERROR = 1.0
PULL_DELAY_ON_FLOW_CONTROL = 0.05


class ConsumeResult(enum.Enum):
    """What a listener returns (Java ``ConsumeConcurrentlyStatus``; for orderly listeners
    RECONSUME_LATER means ``SUSPEND_CURRENT_QUEUE_A_MOMENT``)."""

    CONSUME_SUCCESS = "CONSUME_SUCCESS"
    RECONSUME_LATER = "RECONSUME_LATER"


CONSUME_SUCCESS = ConsumeResult.CONSUME_SUCCESS
RECONSUME_LATER = ConsumeResult.RECONSUME_LATER


class MessageModel(enum.Enum):
    """Clustering (a group shares the queues) or broadcasting (everyone gets everything)."""

    CLUSTERING = "CLUSTERING"
    BROADCASTING = "BROADCASTING"


class ConsumeFromWhere(enum.Enum):
    """Where a group without a stored offset starts."""

    CONSUME_FROM_LAST_OFFSET = "CONSUME_FROM_LAST_OFFSET"
    CONSUME_FROM_FIRST_OFFSET = "CONSUME_FROM_FIRST_OFFSET"
    CONSUME_FROM_TIMESTAMP = "CONSUME_FROM_TIMESTAMP"


class ProcessQueue:
    """Messages of one queue pulled but not yet consumed (Java ``ProcessQueue``).

    Messages are kept in offset order (pulls arrive in order; dicts keep insertion order).
    """

    def __init__(self) -> None:
        self.msgs: dict[int, MessageExt] = {}
        self.bytes = 0
        self.max_offset = -1
        self.dropped = False
        self.locked = False
        self.last_lock_time = 0.0
        self.consuming = False
        self.next_offset = 0
        self.waiting: Deferred[Any] | None = None

    def put(self, msgs: Sequence[MessageExt]) -> list[MessageExt]:
        """Add pulled messages; fire with those that were new."""
        new = []
        for m in msgs:
            if m.queue_offset not in self.msgs:
                self.msgs[m.queue_offset] = m
                self.bytes += len(m.body)
                new.append(m)
            self.max_offset = max(self.max_offset, m.queue_offset)
        return new

    def remove(self, msgs: Sequence[MessageExt]) -> int:
        """Drop consumed messages; return the offset to commit (-1 if nothing was pulled)."""
        for m in msgs:
            if self.msgs.pop(m.queue_offset, None) is not None:
                self.bytes -= len(m.body)
        if self.msgs:
            return next(iter(self.msgs))
        return self.max_offset + 1 if self.max_offset >= 0 else -1

    @property
    def count(self) -> int:
        """Messages held."""
        return len(self.msgs)

    def stop(self) -> None:
        """Mark dropped and wake the pull loop."""
        self.dropped = True
        w, self.waiting = self.waiting, None
        if w is not None and not w.called:
            w.cancel()


class ConsumerOptions(TypedDict, total=False):
    """The keyword arguments every consumer takes (defaults: :class:`BaseConsumer`'s)."""

    message_model: MessageModel
    consume_from_where: ConsumeFromWhere
    consume_timestamp_ms: int | None
    allocate_strategy: IAllocateStrategy | None
    instance_name: str
    client_ip: str | None
    properties: dict[str, str] | None
    pull_batch_size: int
    pull_threshold_for_queue: int
    pull_threshold_size_for_queue_mib: int
    offset_store_dir: str | None
    blocking: BlockingRunner | None
    remoting_factory: RemotingFactory | None
    rebalance_interval: float
    poll_name_server_interval: float


class BaseConsumer(ClientMember):
    """Subscriptions, rebalance, pull loops and offsets shared by both consumers."""

    log = Logger()
    role = "consumer"
    consume_type = "CONSUME_PASSIVELY"
    subscribe_retry = True

    def __init__(
        self,
        group: str,
        namesrv_addr: str | None = None,
        clock: IReactorTime | None = None,
        *,
        message_model: MessageModel = MessageModel.CLUSTERING,
        consume_from_where: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
        consume_timestamp_ms: int | None = None,
        allocate_strategy: IAllocateStrategy | None = None,
        instance_name: str = "DEFAULT",
        client_ip: str | None = None,
        properties: dict[str, str] | None = None,
        pull_batch_size: int = PULL_BATCH_SIZE,
        pull_threshold_for_queue: int = 1000,
        pull_threshold_size_for_queue_mib: int = 100,
        offset_store_dir: str | None = None,
        blocking: BlockingRunner | None = None,
        remoting_factory: RemotingFactory | None = None,
        rebalance_interval: float = 20.0,
        poll_name_server_interval: float = 30.0,
    ) -> None:
        super().__init__(
            group,
            namesrv_addr,
            clock,
            instance_name=instance_name,
            client_ip=client_ip,
            properties=properties,
            remoting_factory=remoting_factory,
            rebalance_interval=rebalance_interval,
            poll_name_server_interval=poll_name_server_interval,
        )
        #: ``%RETRY%<group>``: where this group's failed messages come back from.
        self.retry_topic = RETRY_GROUP_TOPIC_PREFIX + group
        self.message_model = message_model
        self.consume_from_where = consume_from_where
        self.consume_timestamp_ms = consume_timestamp_ms
        self.allocate_strategy = IAllocateStrategy(
            allocate_strategy or AllocateMessageQueueAveragely()
        )
        self.pull_batch_size = pull_batch_size
        self.pull_threshold_for_queue = pull_threshold_for_queue
        self.pull_threshold_bytes = pull_threshold_size_for_queue_mib * 1024 * 1024
        self.offset_store_dir = offset_store_dir or self.config.properties.get(
            "rocketmq.client.localOffsetStoreDir", default_offset_dir()
        )
        self._blocking = blocking
        self.subscriptions: dict[str, SubscriptionData] = {}
        self.process_queues: dict[MessageQueue, ProcessQueue] = {}
        self.topic_queues: dict[str, list[MessageQueue]] = {}
        self.offset_store: IOffsetStore | None = None
        self._timers: set[IDelayedCall] = set()
        self._loops: set[Deferred[None]] = set()
        self._rebalancing: Deferred[None] | None = None
        self._rebalance_waiters: list[Deferred[None]] = []
        self._rebalance_again = False
        self._locked_new: set[MessageQueue] = set()
        self.running = False

    # --- public -------------------------------------------------------------------------------

    def subscribe(self, topic: str, expression: str | MessageSelector | None = "*") -> None:
        """Subscribe to ``topic`` with a TAG expression (``"TagA || TagB"`` or ``"*"``) or a
        :class:`MessageSelector` (``MessageSelector.by_sql("a > 5")``, docs/filter.md)."""
        if not isinstance(expression, MessageSelector):
            expression = MessageSelector.by_tag(expression)
        self.subscriptions[topic] = SubscriptionData.build(
            topic, expression.expression, now_ms(self.clock), expression.expression_type
        )
        if self._instance is not None:
            self._instance.send_heartbeat_to_all().addErrback(log_failure("heartbeat"))
            self._instance.update_route(topic).addCallbacks(
                lambda _: self._rebalance_soon(),
                lambda f: self.log.warn("No route for {t}: {f}", t=topic, f=f.value),
            )

    def _rebalance_soon(self) -> None:
        if self._instance is not None:
            self._instance.rebalance_soon()

    def unsubscribe(self, topic: str) -> None:
        """Stop consuming ``topic`` (its queues are released at the next rebalance)."""
        self.subscriptions.pop(topic, None)

    def assigned_queues(self) -> list[MessageQueue]:
        """Queues this consumer currently pulls, sorted."""
        return sorted(mq for mq, pq in self.process_queues.items() if not pq.dropped)

    @deferred_api
    async def start(self) -> None:
        """Join the client instance, load offsets, fetch routes, heartbeat and rebalance."""
        if self._instance is not None:
            return
        if self.message_model is MessageModel.CLUSTERING and self.subscribe_retry:
            retry = self.retry_topic
            self.subscriptions.setdefault(
                retry, SubscriptionData.build(retry, "*", now_ms(self.clock))
            )
        inst = self._instance = await self._join_instance()
        if self.message_model is MessageModel.BROADCASTING:
            blocking = self._blocking or _thread_runner(self.clock)
            self.offset_store = LocalFileOffsetStore(
                self.offset_store_dir, inst.client_id, self.group, blocking
            )
        else:
            self.offset_store = RemoteBrokerOffsetStore(inst.api, self.group, inst.master_addr)
        await self.offset_store.load()
        self.running = True
        missing = await self._update_routes(list(self.subscriptions))
        try:
            await self._check_client_in_broker()
        except MQClientError:
            await self.shutdown()
            raise
        await inst.send_heartbeat_to_all()
        if missing:
            # The heartbeat makes the broker create %RETRY%<group>; fetch its route now.
            missing = await self._update_routes(missing)
        for topic in missing:
            self.log.warn("No route for {topic} yet", topic=topic)
        await self.rebalance()

    async def _check_client_in_broker(self) -> None:
        """CHECK_CLIENT_CONFIG for every non-TAG subscription with the brokers of its topic
        (Java ``MQClientInstance.checkClientInBroker``); MQClientError when one refuses."""
        inst = self.instance
        for sub in list(self.subscriptions.values()):
            if sub.expression_type == EXPRESSION_TAG:
                continue
            try:
                route = await inst.update_route(sub.topic)
            except RMQError:
                continue
            names = sorted({mq.broker_name for mq in route.subscribe_queues(sub.topic)})
            for name in names:
                addr = inst.master_addr(name) or inst.broker_addr(name, 1)
                if addr is not None:
                    await inst.api.check_client_config(addr, self.group, inst.client_id, sub)

    async def _update_routes(self, topics: list[str]) -> list[str]:
        missing = []
        for topic in topics:
            try:
                await self.instance.update_route(topic)
            except RMQError:
                missing.append(topic)
        return missing

    @deferred_api
    async def shutdown(self) -> None:
        """Stop pulling, persist offsets, unlock (orderly), unregister, release the instance."""
        inst = self._instance
        if inst is None:
            return
        self.running = False
        await self._rebalance_finished()
        for t in list(self._timers):
            if t.active():
                t.cancel()
        self._timers.clear()
        mqs = list(self.process_queues)
        for pq in self.process_queues.values():
            pq.stop()
        await self._before_release(mqs, shutdown=True)
        if self.offset_store is not None:
            await self.offset_store.persist(mqs)
        self.process_queues.clear()
        await self._wait_loops()
        await inst.unregister(None, self.group)
        self._instance = None
        await inst.shutdown()

    async def _wait_loops(self) -> None:
        for d in list(self._loops):
            try:
                await d
            except Exception:  # noqa: BLE001 - loops log their own failures
                pass

    # --- instance callbacks -------------------------------------------------------------------

    def _register(self, inst: MQClientInstance) -> None:
        inst.register_consumer(self)

    def topics(self) -> set[str]:
        """Subscribed topics (including the retry topic)."""
        return set(self.subscriptions)

    def on_route(self, topic: str, route: TopicRoute) -> None:
        """Remember the readable queues of ``topic``."""
        self.topic_queues[topic] = route.subscribe_queues(topic)

    def heartbeat_data(self) -> dict[str, Any]:
        """ConsumerData for HEART_BEAT."""
        return {
            "consumeFromWhere": self.consume_from_where.value,
            "consumeType": self.consume_type,
            "groupName": self.group,
            "messageModel": self.message_model.value,
            "subscriptionDataSet": [s.to_json_obj() for s in self.subscriptions.values()],
            "unitMode": False,
        }

    def persist_offsets(self) -> Deferred[None]:
        """Persist the offsets of owned queues (every 5 s)."""
        if self.offset_store is None or not self.running:
            return succeed(None)
        return self.offset_store.persist(self.assigned_queues())

    def running_info(self) -> dict[str, Any]:
        """A ConsumerRunningInfo-shaped summary for GET_CONSUMER_RUNNING_INFO."""
        store = self.offset_store.offsets() if self.offset_store else {}
        mq_table = {
            mq.json_key(): {
                "cachedMsgCount": pq.count,
                "cachedMsgSizeInMiB": pq.bytes // (1024 * 1024),
                "commitOffset": store.get(mq, -1),
                "droped": pq.dropped,
                "locked": pq.locked,
            }
            for mq, pq in sorted(self.process_queues.items())
        }
        return {
            "mqTable": mq_table,
            "properties": {
                "consumeType": self.consume_type,
                "messageModel": self.message_model.value,
                "consumeFromWhere": self.consume_from_where.value,
                "PROP_CLIENT_VERSION": "rmq",
                "PROP_CONSUMER_START_TIMESTAMP": str(now_ms(self.clock)),
            },
            "statusTable": {},
            "subscriptionSet": [s.to_json_obj() for s in self.subscriptions.values()],
        }

    @deferred_api
    async def reset_offsets(self, topic: str, offsets: dict[MessageQueue, int]) -> None:
        """RESET_CONSUMER_CLIENT_OFFSET: stop the topic's queues, store new offsets, rebalance."""
        store = self.offset_store
        if store is None:
            return
        for mq, pq in list(self.process_queues.items()):
            if mq.topic == topic:
                pq.stop()
                del self.process_queues[mq]
        reset = [(mq, off) for mq, off in offsets.items() if mq.topic == topic]
        if isinstance(store, RemoteBrokerOffsetStore):
            for mq, off in reset:
                try:
                    await store.persist_now(mq, off)
                except RMQError as e:
                    self.log.warn("Reset of {mq} failed: {e}", mq=mq, e=e)
        else:
            for mq, off in reset:
                store.update_offset(mq, off, False)
            await store.persist(list(offsets))
        await self.rebalance()

    def consume_directly(
        self, msg: MessageExt, broker_name: str | None
    ) -> Deferred[dict[str, Any]]:
        """CONSUME_MESSAGE_DIRECTLY: not supported by this consumer type."""
        return succeed({"consumeResult": "CR_THROW_EXCEPTION", "remark": "not supported"})

    # --- rebalance ----------------------------------------------------------------------------

    def rebalance(self) -> Deferred[None]:
        """Run a rebalance; one at a time (a request during one runs it again afterwards)."""
        if not self.running:
            return succeed(None)
        if self._rebalancing is not None:
            self._rebalance_again = True
            return succeed(None)
        marker: Deferred[None] = Deferred()
        self._rebalancing = marker
        d = Deferred.fromCoroutine(self._rebalance_loop(marker))
        return d

    async def _rebalance_loop(self, marker: Deferred[None]) -> None:
        try:
            while True:
                self._rebalance_again = False
                await self._rebalance_once()
                if not self._rebalance_again or not self.running:
                    return
        finally:
            if self._rebalancing is marker:
                self._rebalancing = None
            waiters, self._rebalance_waiters = self._rebalance_waiters, []
            for w in waiters:
                w.callback(None)

    def _rebalance_finished(self) -> Deferred[None]:
        """Fires when the running rebalance (if any) is over."""
        if self._rebalancing is None:
            return succeed(None)
        w: Deferred[None] = Deferred()
        self._rebalance_waiters.append(w)
        return w

    async def _rebalance_once(self) -> None:
        inst = self.instance
        wanted: dict[str, list[MessageQueue]] = {}
        for topic in list(self.subscriptions):
            if not self.running:
                return
            mq_all = self.topic_queues.get(topic)
            if mq_all is None:
                continue
            if self.message_model is MessageModel.BROADCASTING:
                wanted[topic] = list(mq_all)
                continue
            try:
                cids = sorted(await inst.find_consumer_ids(topic, self.group))
            except RMQError as e:
                self.log.warn("Consumer list of {g} unavailable: {e}", g=self.group, e=e)
                continue
            if not cids or not mq_all:
                wanted[topic] = []
                continue
            wanted[topic] = self.allocate_strategy.allocate(
                self.group, inst.client_id, mq_all, cids
            )
        await self._update_process_queues(wanted)

    async def _update_process_queues(self, wanted: dict[str, list[MessageQueue]]) -> None:
        released = []
        for mq, pq in list(self.process_queues.items()):
            keep = mq.topic in wanted and mq in wanted[mq.topic]
            gone = mq.topic not in self.subscriptions
            if (mq.topic in wanted and not keep) or gone:
                pq.stop()
                del self.process_queues[mq]
                released.append(mq)
        if released:
            self.log.info("Released {mqs}", mqs=[mq.java_str() for mq in released])
            if self.offset_store is not None:
                await self.offset_store.persist(released)
                for mq in released:
                    self.offset_store.remove_offset(mq)
            await self._before_release(released, shutdown=False)
        new = [mq for mqs in wanted.values() for mq in mqs if mq not in self.process_queues]
        if not new:
            return
        new = await self._before_assign(new)
        for mq in new:
            if not self.running or mq in self.process_queues:
                continue
            try:
                offset = await self._compute_pull_from_where(mq)
            except RMQError as e:
                self.log.warn("Start offset of {mq} unknown: {e}", mq=mq, e=e)
                continue
            if offset < 0 or not self.running:
                continue
            pq = ProcessQueue()
            pq.next_offset = offset
            pq.locked = mq in self._locked_new
            pq.last_lock_time = self.clock.seconds()
            self.process_queues[mq] = pq
            self.log.info("Assigned {mq} from offset {o}", mq=mq.java_str(), o=offset)
            self._start_pulling(mq, pq)

    async def _before_assign(self, mqs: list[MessageQueue]) -> list[MessageQueue]:
        return mqs

    async def _before_release(self, mqs: list[MessageQueue], shutdown: bool) -> None:
        return None

    async def _compute_pull_from_where(self, mq: MessageQueue) -> int:
        store = self.offset_store
        assert store is not None
        last = await store.read_offset(mq, True)
        if last >= 0:
            return last
        retry = mq.topic.startswith(RETRY_GROUP_TOPIC_PREFIX)
        api = self.instance.api
        addr = self.instance.master_addr(mq.broker_name)
        if addr is None:
            raise MQClientError(f"The broker[{mq.broker_name}] not exist")
        cfw = self.consume_from_where
        if cfw is ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET:
            return 0
        if cfw is ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET:
            return 0 if retry else await api.get_max_offset(addr, mq)
        if retry:
            return await api.get_max_offset(addr, mq)
        ts = self.consume_timestamp_ms
        if ts is None:
            ts = now_ms(self.clock) - 30 * 60 * 1000
        return await api.search_offset(addr, mq, ts)

    # --- pulling ------------------------------------------------------------------------------

    def _start_pulling(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        d = Deferred.fromCoroutine(self._pull_loop(mq, pq))
        self._loops.add(d)

        def done(r: object) -> object:
            self._loops.discard(d)
            return r

        d.addBoth(done).addErrback(log_failure(f"pull loop of {mq.java_str()}"))

    def _sleep(self, pq: ProcessQueue, seconds: float) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        call = self.clock.callLater(seconds, fire_if_waiting, d)
        self._timers.add(call)

        def cleanup(r: object) -> object:
            self._timers.discard(call)
            if call.active():
                call.cancel()
            return r

        d.addBoth(cleanup)
        return self._wait(pq, d)

    def _wait(self, pq: ProcessQueue, d: Deferred[Any]) -> Deferred[Any]:
        pq.waiting = d
        return d

    def _flow_controlled(self, pq: ProcessQueue) -> bool:
        return pq.count > self.pull_threshold_for_queue or pq.bytes > self.pull_threshold_bytes

    def _may_pull(self, mq: MessageQueue, pq: ProcessQueue) -> bool:
        return True

    async def _pull_loop(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        broker_id = 0
        while self.running and not pq.dropped:
            try:
                if self._flow_controlled(pq) or not self._may_pull(mq, pq):
                    await self._sleep(pq, PULL_DELAY_ON_FLOW_CONTROL)
                    continue
                broker_id = await self._pull_once(mq, pq, broker_id)
            except CancelledError:
                return
            except RMQError as e:
                if pq.dropped or not self.running:
                    return
                self.log.debug("Pull of {mq} failed: {e}", mq=mq, e=e)
                try:
                    await self._sleep(pq, PULL_DELAY_ON_ERROR)
                except CancelledError:
                    return

    def _commit_offset(self, mq: MessageQueue) -> int:
        if self.offset_store is None or self.message_model is MessageModel.BROADCASTING:
            return 0
        return max(self.offset_store.current(mq), 0)

    async def _pull_once(self, mq: MessageQueue, pq: ProcessQueue, broker_id: int) -> int:
        inst = self.instance
        addr = inst.broker_addr(mq.broker_name, broker_id)
        if addr is None:
            await inst.update_route(mq.topic)
            addr = inst.broker_addr(mq.broker_name, broker_id)
            if addr is None:
                raise MQClientError(f"The broker[{mq.broker_name}] not exist")
        sub = self.subscriptions.get(mq.topic)
        if sub is None:
            pq.stop()
            return broker_id
        commit = self._commit_offset(mq) if broker_id == 0 else 0
        sys_flag = PullSysFlag.SUSPEND | PullSysFlag.SUBSCRIPTION
        if commit > 0:
            sys_flag |= PullSysFlag.COMMIT_OFFSET
        header: dict[str, object] = {
            "consumerGroup": self.group,
            "topic": mq.topic,
            "queueId": mq.queue_id,
            "queueOffset": pq.next_offset,
            "maxMsgNums": self.pull_batch_size,
            "sysFlag": sys_flag,
            "commitOffset": commit,
            "suspendTimeoutMillis": SUSPEND_TIMEOUT_MS,
            "subscription": sub.sub_string,
            "subVersion": sub.sub_version,
            "expressionType": sub.expression_type,
            "bname": mq.broker_name,
        }
        pulled = Deferred.fromCoroutine(inst.api.pull(addr, header, PULL_RPC_TIMEOUT))
        result: PullResult = await self._wait(pq, pulled)
        pq.waiting = None
        if pq.dropped:
            return broker_id
        next_id = result.suggest_which_broker_id
        if result.status is PullStatus.OFFSET_ILLEGAL:
            self.log.warn(
                "Offset {o} of {mq} illegal, moving to {n}",
                o=pq.next_offset,
                mq=mq.java_str(),
                n=result.next_begin_offset,
            )
            pq.next_offset = result.next_begin_offset
            if self.offset_store is not None:
                self.offset_store.update_offset(mq, result.next_begin_offset, False)
                await self.offset_store.persist([mq])
            return next_id
        pq.next_offset = result.next_begin_offset
        # FOUND carries messages; NO_NEW_MSG and NO_MATCHED_MSG none.
        msgs = sub.select(result.messages)
        if msgs:
            new = pq.put(msgs)
            if new:
                self._on_messages(mq, pq, new)
        elif pq.count == 0 and self.offset_store is not None:
            # Nothing held: the queue is consumed up to where the broker looked.
            self.offset_store.update_offset(mq, result.next_begin_offset, True)
        return next_id

    def _on_messages(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[MessageExt]) -> None:
        raise NotImplementedError

    def _consumed(self, mq: MessageQueue, pq: ProcessQueue, msgs: Sequence[MessageExt]) -> None:
        offset = pq.remove(msgs)
        if offset >= 0 and not pq.dropped and self.offset_store is not None:
            self.offset_store.update_offset(mq, offset, True)

    def _later(self, seconds: float, f: Callable[[], Any]) -> None:
        def run() -> None:
            self._timers.discard(call)
            if self.running:
                maybeDeferred(f).addErrback(log_failure("delayed consumer task"))

        call = self.clock.callLater(seconds, run)
        self._timers.add(call)


def fire_if_waiting(d: Deferred[None]) -> None:
    """Fire ``d`` with None unless something else fired or cancelled it first."""
    if not d.called:
        d.callback(None)


def _thread_runner(clock: Any) -> BlockingRunner:
    """Run blocking file I/O in the reactor's thread pool when there is one."""
    if hasattr(clock, "getThreadPool") and hasattr(clock, "callFromThread"):
        from twisted.internet.threads import deferToThreadPool

        def run(f: Callable[[], Any]) -> Deferred[Any]:
            return deferToThreadPool(clock, clock.getThreadPool(), f)

        return run
    return run_inline


__all__ = [
    "CONSUME_SUCCESS",
    "RECONSUME_LATER",
    "BaseConsumer",
    "ConsumeFromWhere",
    "ConsumeResult",
    "ConsumerOptions",
    "MessageModel",
    "ProcessQueue",
]
