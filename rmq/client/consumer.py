"""Consumers: ``PushConsumer`` (Java ``DefaultMQPushConsumer``) and ``PullConsumer`` (Java
``DefaultLitePullConsumer``), sharing subscriptions, rebalance, per-queue long-poll pulls and
offset tracking.

Rebalance runs at start, every 20 s and at once on NOTIFY_CONSUMER_IDS_CHANGED. Each owned queue
has a :class:`ProcessQueue` and one pull loop (PULL_MESSAGE with SUSPEND, 15 s hold, 30 s RPC
timeout); a queue holding more than 1,000 messages or 100 MiB waits 50 ms before pulling again.
The committed offset of a queue is the lowest offset still being processed, or the highest pulled
+ 1 when none is (at-least-once).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypedDict, Unpack

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
from rmq.common.message import (
    DELAY,
    MAX_RECONSUME_TIMES,
    ORIGIN_MESSAGE_ID,
    RECONSUME_TIME,
    RETRY_TOPIC,
    TRAN_MSG,
    Message,
    MessageExt,
)

PULL_BATCH_SIZE = 32
SUSPEND_TIMEOUT_MS = 15000
PULL_RPC_TIMEOUT = 30.0
PULL_DELAY_ON_ERROR = 1.0
PULL_DELAY_ON_FLOW_CONTROL = 0.05
LOCK_RENEW_INTERVAL = 20.0
LOCK_MAX_LIVE = 30.0


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
    """The keyword arguments every consumer takes (defaults: :class:`_ConsumerBase`)."""

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


class _ConsumerBase(ClientMember):
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
        if isinstance(expression, MessageSelector):
            self.subscriptions[topic] = SubscriptionData.build(
                topic, expression.expression, now_ms(self.clock), expression.expression_type
            )
        else:
            self.subscriptions[topic] = SubscriptionData.build(
                topic, expression, now_ms(self.clock)
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
        for mq, off in offsets.items():
            if mq.topic != topic:
                continue
            if isinstance(store, RemoteBrokerOffsetStore):
                try:
                    await store.persist_now(mq, off)
                except RMQError as e:
                    self.log.warn("Reset of {mq} failed: {e}", mq=mq, e=e)
            else:
                store.update_offset(mq, off, False)
        if not isinstance(store, RemoteBrokerOffsetStore):
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
        call = self.clock.callLater(seconds, _fire, d)
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
        if result.status is PullStatus.FOUND:
            pq.next_offset = result.next_begin_offset
            msgs = sub.select(result.messages)
            if msgs:
                new = pq.put(msgs)
                if new:
                    self._on_messages(mq, pq, new)
            elif pq.count == 0 and self.offset_store is not None:
                self.offset_store.update_offset(mq, result.next_begin_offset, True)
        elif result.status in (PullStatus.NO_NEW_MSG, PullStatus.NO_MATCHED_MSG):
            pq.next_offset = result.next_begin_offset
            if pq.count == 0 and self.offset_store is not None:
                self.offset_store.update_offset(mq, result.next_begin_offset, True)
        else:  # OFFSET_ILLEGAL
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


def _fire(d: Deferred[None]) -> None:
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


#: A listener returns, or fires a Deferred with, a ConsumeResult (or its name as a string).
Listener = Callable[[list[MessageExt]], Any]


class PushConsumer(_ConsumerBase):
    """Consumes subscribed topics by calling ``listener(msgs)``.

    The listener gets a list of messages (``consume_batch_size``, default 1) and returns, or
    fires a Deferred with, ``CONSUME_SUCCESS`` or ``RECONSUME_LATER`` (an exception counts as
    RECONSUME_LATER). Concurrent mode runs up to ``consume_concurrency`` listener calls at once;
    failed messages are sent back to the broker (CONSUMER_SEND_MSG_BACK) for redelivery through
    ``%RETRY%<group>``; if that request fails they are re-sent there with the client's inner
    producer, and only if that fails too retried locally after 5 s. Orderly mode
    (``orderly=True``) locks each queue on its broker (LOCK_BATCH_MQ), consumes one queue's
    messages one batch at a time in offset order, and retries a failed batch locally after
    ``suspend_current_queue_time`` (1 s); a message that failed ``max_reconsume_times`` retries
    (``-1`` = 16) goes to ``%DLQ%<group>`` and the queue moves on.
    """

    def __init__(
        self,
        group: str,
        namesrv_addr: str | None = None,
        clock: IReactorTime | None = None,
        *,
        listener: Listener | None = None,
        orderly: bool = False,
        consume_batch_size: int = 1,
        consume_concurrency: int = 20,
        max_reconsume_times: int = -1,
        suspend_current_queue_time: float = 1.0,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        super().__init__(group, namesrv_addr, clock, **options)
        self.listener = listener
        self.orderly = orderly
        self.consume_batch_size = max(1, consume_batch_size)
        self.max_reconsume_times = max_reconsume_times
        self.suspend_current_queue_time = suspend_current_queue_time
        self._consume_limit = max(1, consume_concurrency)
        self._consuming_now = 0
        self._draining = False
        self._consume_backlog: deque[tuple[MessageQueue, ProcessQueue, list[MessageExt]]] = deque()

    def register_listener(self, listener: Listener) -> None:
        """Set the message listener (before start)."""
        self.listener = listener

    @deferred_api
    async def start(self) -> None:
        """Start consuming (MQClientError if no listener or no subscription)."""
        if self.listener is None:
            raise MQClientError("messageListener is null")
        if not self.subscriptions:
            raise MQClientError("no subscription: call subscribe() first")
        await _ConsumerBase.start(self)
        if self.orderly and self.message_model is MessageModel.CLUSTERING:
            self._schedule_lock_renewal()

    # --- listener calls -----------------------------------------------------------------------

    def _invoke_listener(self, msgs: list[MessageExt]) -> Deferred[ConsumeResult]:
        assert self.listener is not None
        d: Deferred[Any] = maybeDeferred(self.listener, msgs)
        return d.addCallbacks(self._check_result, self._listener_failed)

    def _check_result(self, result: object) -> ConsumeResult:
        """A listener's answer as a ConsumeResult (its name as a string counts too)."""
        if isinstance(result, ConsumeResult):
            return result
        if result in ("CONSUME_SUCCESS", "SUCCESS"):
            return ConsumeResult.CONSUME_SUCCESS
        if result is None:
            self.log.warn("Listener returned None; counted as RECONSUME_LATER")
        return ConsumeResult.RECONSUME_LATER

    def _listener_failed(self, f: Any) -> ConsumeResult:
        self.log.failure("Listener of {g} raised", f, g=self.group)
        return ConsumeResult.RECONSUME_LATER

    def _restore_retry_topic(self, msgs: Sequence[MessageExt]) -> None:
        retry = self.retry_topic
        for m in msgs:
            if m.topic == retry:
                real = m.properties.get(RETRY_TOPIC)
                if real:
                    m.topic = real

    def _on_messages(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[MessageExt]) -> None:
        if self.orderly:
            self._kick_orderly(mq, pq)
            return
        for i in range(0, len(msgs), self.consume_batch_size):
            batch = msgs[i : i + self.consume_batch_size]
            self._submit_concurrent(mq, pq, batch)

    # --- concurrent ---------------------------------------------------------------------------

    def _submit_concurrent(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]
    ) -> None:
        if self._consuming_now >= self._consume_limit or self._draining:
            self._consume_backlog.append((mq, pq, batch))
            if not self._draining:
                self._drain_backlog()
            return
        self._run_concurrent(mq, pq, batch)

    def _run_concurrent(self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]) -> None:
        """Call the listener; a plain return value is handled at once (no Deferred needed)."""
        if pq.dropped or not self.running:
            return
        assert self.listener is not None
        self._restore_retry_topic(batch)
        self._consuming_now += 1
        try:
            result: object = self.listener(batch)
        except Exception:
            self.log.failure("Listener of {g} raised", g=self.group)
            result = ConsumeResult.RECONSUME_LATER
        if isinstance(result, Deferred):
            result.addCallbacks(self._check_result, self._listener_failed).addCallback(
                lambda st: self._finish_concurrent(mq, pq, batch, st)
            ).addErrback(log_failure(f"consume of {mq.java_str()}"))
        else:
            self._finish_concurrent(mq, pq, batch, self._check_result(result))

    def _finish_concurrent(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt], status: ConsumeResult
    ) -> None:
        self._consuming_now -= 1
        try:
            if pq.dropped:
                return
            if status is ConsumeResult.CONSUME_SUCCESS:
                self._consumed(mq, pq, batch)
            elif self.message_model is MessageModel.BROADCASTING:
                for m in batch:
                    self.log.warn("Broadcast message {id} failed; dropped", id=m.msg_id)
                self._consumed(mq, pq, batch)
            else:
                d = Deferred.fromCoroutine(self._send_back_batch(mq, pq, batch))
                d.addErrback(log_failure(f"send back from {mq.java_str()}"))
        finally:
            if not self._draining:
                self._drain_backlog()

    def _drain_backlog(self) -> None:
        self._draining = True
        try:
            while self._consume_backlog and self._consuming_now < self._consume_limit:
                self._run_concurrent(*self._consume_backlog.popleft())
        finally:
            self._draining = False

    async def _send_back_batch(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]
    ) -> None:
        ok: list[MessageExt] = []
        failed_back: list[MessageExt] = []
        for m in batch:
            (ok if await self._send_back(m, mq) else failed_back).append(m)
        self._consumed(mq, pq, ok)
        if failed_back:
            for m in failed_back:
                m.reconsume_times += 1
            self._later(5.0, lambda: self._submit_concurrent(mq, pq, failed_back))

    def _max_reconsume(self) -> int:
        """The effective max reconsume times (``-1`` means 16, for orderly consumers too)."""
        return 16 if self.max_reconsume_times == -1 else self.max_reconsume_times

    async def _send_back(self, msg: MessageExt, mq: MessageQueue) -> bool:
        """CONSUMER_SEND_MSG_BACK (delay level 0: the broker decides); if that fails, re-send
        through the inner producer (Java ``DefaultMQPushConsumerImpl.sendMessageBack``).
        True when one of them stored the message."""
        inst = self.instance
        addr = inst.master_addr(mq.broker_name) or msg.store_host
        try:
            await inst.api.send_back(
                addr, msg, self.group, 0, self._max_reconsume(), mq.broker_name
            )
            return True
        except RMQError as e:
            self.log.warn(
                "Send back of {id} failed: {e}; re-sending to the retry topic", id=msg.msg_id, e=e
            )
        try:
            await self._resend_to_retry(msg, msg.reconsume_times + 1)
            return True
        except RMQError as e:
            self.log.warn("Re-send of {id} to the retry topic failed: {e}", id=msg.msg_id, e=e)
            return False

    async def _resend_to_retry(self, msg: MessageExt, reconsume_time: int) -> None:
        """Send a copy of ``msg`` to ``%RETRY%<group>`` with the inner producer.

        The copy keeps body, flag and properties (so ``UNIQ_KEY``), and carries ``RETRY_TOPIC``,
        ``ORIGIN_MESSAGE_ID``, ``RECONSUME_TIME`` = ``reconsume_time``, ``MAX_RECONSUME_TIMES`` and
        delay level ``3 + reconsumeTimes``. The send header's ``reconsumeTimes`` /
        ``maxReconsumeTimes`` come from those properties, so a broker (rmq's or Java's) files
        the copy into ``%DLQ%<group>`` once ``reconsume_time`` reaches the maximum.
        """
        props = dict(msg.properties)
        props.pop(TRAN_MSG, None)
        props[ORIGIN_MESSAGE_ID] = props.get(ORIGIN_MESSAGE_ID) or msg.msg_id
        props[RETRY_TOPIC] = msg.topic
        props[RECONSUME_TIME] = str(reconsume_time)
        props[MAX_RECONSUME_TIMES] = str(self._max_reconsume())
        props[DELAY] = str(3 + msg.reconsume_times)
        copy = Message(self.retry_topic, msg.body, msg.flag, props)
        await self.instance.inner_producer().send(copy)

    # --- orderly ------------------------------------------------------------------------------

    def _kick_orderly(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        if pq.consuming or pq.dropped:
            return
        pq.consuming = True
        d = Deferred.fromCoroutine(self._consume_orderly(mq, pq))
        d.addErrback(log_failure(f"orderly consume of {mq.java_str()}"))

    def _lock_valid(self, pq: ProcessQueue) -> bool:
        if self.message_model is MessageModel.BROADCASTING:
            return True
        return pq.locked and self.clock.seconds() - pq.last_lock_time < LOCK_MAX_LIVE

    async def _consume_orderly(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        try:
            while self.running and not pq.dropped and pq.msgs:
                if not self._lock_valid(pq):
                    self._later(1.0, lambda: self._kick_orderly(mq, pq))
                    return
                batch = list(pq.msgs.values())[: self.consume_batch_size]
                self._restore_retry_topic(batch)
                status = await self._invoke_listener(batch)
                if pq.dropped:
                    return
                if status is ConsumeResult.CONSUME_SUCCESS:
                    self._consumed(mq, pq, batch)
                    continue
                if not await self._orderly_failed(mq, pq, batch):
                    self._later(self.suspend_current_queue_time, lambda: self._kick_orderly(mq, pq))
                    return
        finally:
            pq.consuming = False

    async def _orderly_failed(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]
    ) -> bool:
        """A failed orderly batch (Java ``ConsumeMessageOrderlyService.checkReconsumeTimes``).

        A message that has been retried ``max_reconsume_times`` times already is re-sent to
        ``%RETRY%<group>`` with ``RECONSUME_TIME`` = its count, which the broker files into
        ``%DLQ%<group>``; it then counts as consumed. Every other message (and one whose re-send
        failed) gets ``reconsume_times + 1`` for a local retry. True when nothing is left to
        retry (the queue moves on), False when the caller must suspend and retry.
        """
        limit = self._max_reconsume()
        sent: list[MessageExt] = []
        retry = False
        for m in batch:
            if m.reconsume_times >= limit:
                try:
                    await self._resend_to_retry(m, m.reconsume_times)
                except RMQError as e:
                    self.log.warn(
                        "Orderly message {id} exceeded {n} retries; its re-send failed: {e}",
                        id=m.msg_id,
                        n=limit,
                        e=e,
                    )
                else:
                    self.log.warn(
                        "Orderly message {id} of {mq} failed {n} retries; sent to the DLQ",
                        id=m.msg_id,
                        mq=mq.java_str(),
                        n=m.reconsume_times,
                    )
                    sent.append(m)
                    continue
            retry = True
            m.reconsume_times += 1
        if sent and not pq.dropped:
            self._consumed(mq, pq, sent)
        return not retry

    def _may_pull(self, mq: MessageQueue, pq: ProcessQueue) -> bool:
        return not self.orderly or self._lock_valid(pq)

    async def _before_assign(self, mqs: list[MessageQueue]) -> list[MessageQueue]:
        if not self.orderly or self.message_model is MessageModel.BROADCASTING:
            return mqs
        locked = await self._lock(mqs)
        self._locked_new = set(locked)
        return [mq for mq in mqs if mq in locked]

    def _by_master(self, mqs: Sequence[MessageQueue]) -> list[tuple[str, str, list[MessageQueue]]]:
        """``(broker name, master address, its queues)`` in broker-name order; queues of a
        broker without a known master are left out (LOCK/UNLOCK_BATCH_MQ go to masters)."""
        by_broker: dict[str, list[MessageQueue]] = {}
        for mq in mqs:
            by_broker.setdefault(mq.broker_name, []).append(mq)
        out = []
        for name, group_mqs in sorted(by_broker.items()):
            addr = self.instance.master_addr(name)
            if addr is not None:
                out.append((name, addr, group_mqs))
        return out

    async def _lock(self, mqs: Sequence[MessageQueue]) -> set[MessageQueue]:
        inst = self.instance
        locked: set[MessageQueue] = set()
        for name, addr, group_mqs in self._by_master(mqs):
            try:
                locked |= await inst.api.lock_batch(addr, self.group, inst.client_id, group_mqs)
            except RMQError as e:
                self.log.warn("Locking queues on {b} failed: {e}", b=name, e=e)
        return locked

    async def _before_release(self, mqs: list[MessageQueue], shutdown: bool) -> None:
        if not self.orderly or self.message_model is MessageModel.BROADCASTING or not mqs:
            return
        inst = self.instance
        for name, addr, group_mqs in self._by_master(mqs):
            try:
                await inst.api.unlock_batch(
                    addr, self.group, inst.client_id, group_mqs, oneway=not shutdown
                )
            except RMQError as e:
                self.log.warn("Unlocking queues on {b} failed: {e}", b=name, e=e)

    def _schedule_lock_renewal(self) -> None:
        def renew() -> Deferred[None]:
            return Deferred.fromCoroutine(self._renew_locks())

        def again(_: object) -> None:
            if self.running:
                self._later(LOCK_RENEW_INTERVAL, loop)

        def loop() -> None:
            renew().addBoth(again)

        self._later(LOCK_RENEW_INTERVAL, loop)

    async def _renew_locks(self) -> None:
        mqs = self.assigned_queues()
        if not mqs:
            return
        locked = await self._lock(mqs)
        now = self.clock.seconds()
        for mq in mqs:
            pq = self.process_queues.get(mq)
            if pq is None:
                continue
            if mq in locked:
                pq.locked = True
                pq.last_lock_time = now
                if pq.msgs:
                    self._kick_orderly(mq, pq)
            else:
                pq.locked = False

    def consume_directly(
        self, msg: MessageExt, broker_name: str | None
    ) -> Deferred[dict[str, Any]]:
        """CONSUME_MESSAGE_DIRECTLY: run the listener on ``msg`` and report the outcome."""
        start = self.clock.seconds()

        def report(r: ConsumeResult) -> dict[str, Any]:
            return {
                "autoCommit": True,
                "consumeResult": "CR_SUCCESS" if r is ConsumeResult.CONSUME_SUCCESS else "CR_LATER",
                "order": self.orderly,
                "spentTimeMills": int((self.clock.seconds() - start) * 1000),
            }

        return self._invoke_listener([msg]).addCallback(report)


class PullConsumer(_ConsumerBase):
    """Lite pull consumer: ``assign()`` queues or ``subscribe()`` (group rebalance), then
    ``poll()`` for batches of messages, ``seek()`` and ``commit()``.

    With ``auto_commit`` (default) the messages returned by ``poll()`` count as consumed and their
    offsets are committed every 5 s; otherwise call ``commit()``.
    """

    consume_type = "CONSUME_ACTIVELY"
    subscribe_retry = False

    def __init__(
        self,
        group: str,
        namesrv_addr: str | None = None,
        clock: IReactorTime | None = None,
        *,
        auto_commit: bool = True,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        super().__init__(group, namesrv_addr, clock, **options)
        self.auto_commit = auto_commit
        self._assigned: list[MessageQueue] | None = None
        self._ready: list[tuple[MessageQueue, MessageExt]] = []
        self._pollers: list[Deferred[None]] = []
        self._delivered: dict[MessageQueue, list[MessageExt]] = {}

    def assign(self, mqs: Sequence[MessageQueue]) -> None:
        """Consume exactly these queues (no group rebalance)."""
        self._assigned = sorted(mqs)
        for mq in self._assigned:
            self.subscriptions.setdefault(
                mq.topic, SubscriptionData.build(mq.topic, "*", now_ms(self.clock))
            )
        if self.running:
            self.rebalance().addErrback(log_failure("assign"))

    @deferred_api
    async def fetch_queues(self, topic: str) -> list[MessageQueue]:
        """The readable queues of ``topic`` (from the NameServer)."""
        route = await self.instance.update_route(topic)
        return route.subscribe_queues(topic)

    async def _rebalance_once(self) -> None:
        if self._assigned is None:
            await _ConsumerBase._rebalance_once(self)
            return
        wanted: dict[str, list[MessageQueue]] = {}
        for topic in self.subscriptions:
            wanted[topic] = [mq for mq in self._assigned if mq.topic == topic]
        await self._update_process_queues(wanted)

    def _on_messages(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[MessageExt]) -> None:
        for m in msgs:
            self._ready.append((mq, m))
        waiters, self._pollers = self._pollers, []
        for w in waiters:
            if not w.called:
                w.callback(None)

    def poll(self, timeout: float = 5.0) -> Deferred[list[MessageExt]]:
        """Fire with the next messages (up to ``pull_batch_size``), or ``[]`` after ``timeout``."""
        return Deferred.fromCoroutine(self._poll(timeout))

    async def _poll(self, timeout: float) -> list[MessageExt]:
        if self.auto_commit:
            self._commit_delivered()
        if not self._ready and timeout > 0 and self.running:
            w: Deferred[None] = Deferred()
            self._pollers.append(w)
            call = self.clock.callLater(timeout, _fire, w)
            try:
                await w
            finally:
                if call.active():
                    call.cancel()
        out: list[MessageExt] = []
        rest = []
        for mq, m in self._ready:
            pq = self.process_queues.get(mq)
            if pq is None or pq.dropped or m.queue_offset not in pq.msgs:
                continue
            if len(out) < self.pull_batch_size:
                out.append(m)
                self._delivered.setdefault(mq, []).append(m)
            else:
                rest.append((mq, m))
        self._ready = rest
        return out

    def _commit_delivered(self) -> None:
        delivered, self._delivered = self._delivered, {}
        for mq, msgs in delivered.items():
            pq = self.process_queues.get(mq)
            if pq is not None:
                self._consumed(mq, pq, msgs)

    @deferred_api
    async def commit(self) -> None:
        """Mark everything returned by ``poll()`` as consumed and persist the offsets now."""
        self._commit_delivered()
        if self.offset_store is not None:
            await self.offset_store.persist(self.assigned_queues())

    def seek(self, mq: MessageQueue, offset: int) -> None:
        """Continue ``mq`` from ``offset`` (buffered messages of it are discarded)."""
        pq = self.process_queues.get(mq)
        if pq is None:
            raise MQClientError(f"The message queue is not in assigned list: {mq.java_str()}")
        pq.stop()
        new = ProcessQueue()
        new.next_offset = offset
        self.process_queues[mq] = new
        self._ready = [(q, m) for q, m in self._ready if q != mq]
        self._delivered.pop(mq, None)
        if self.offset_store is not None:
            self.offset_store.update_offset(mq, offset, False)
        self._start_pulling(mq, new)

    def committed(self, mq: MessageQueue) -> int:
        """The in-memory committed offset of ``mq`` (-1 if none)."""
        if self.offset_store is None:
            return -1
        return self.offset_store.current(mq)


__all__ = [
    "CONSUME_SUCCESS",
    "RECONSUME_LATER",
    "ConsumeFromWhere",
    "ConsumeResult",
    "MessageModel",
    "ProcessQueue",
    "PullConsumer",
    "PushConsumer",
]
