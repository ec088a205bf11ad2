"""The broker process as a service tree: ``build_broker_service`` (the composition of issue 4).

Java counterpart: ``BrokerController`` (initialize/start/shutdown), without the god object: the
:class:`Broker` record holds the domain objects and processors, each processor gets only what it
uses. Start order: load ``config/*.json`` → start the store → listen → register with every
NameServer. Stop order (awaited step by step, STYLE §4): stop accepting → unregister from the
NameServers → answer held pulls and close client connections → write offsets and configs → stop
the store → close the NameServer links.

Periodic work is one ``TimerService`` per task: client-channel scan (10 s), consumer-offset flush
(5 s), held-pull check (5 s, or the short-polling time), NameServer registration (30 s).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.broker.admin import install_admin
from rmq.broker.client_manage import ClientManageProcessor, ConsumerIdsNotifier
from rmq.broker.clients import ConsumerManager, ProducerManager
from rmq.broker.config import BrokerConfig
from rmq.broker.consumer_manage import ConsumerOffsetProcessor
from rmq.broker.filter import install_filter
from rmq.broker.guarantees import install_guarantees
from rmq.broker.identity import BrokerIdentity
from rmq.broker.interfaces import ISendMessageHook
from rmq.broker.longpoll import PullRequestHoldService
from rmq.broker.offsets import ConsumerOffsetManager
from rmq.broker.persist import ConfigPersister, Writer, sync_writer
from rmq.broker.pull import PullMessageProcessor
from rmq.broker.query import QueryProcessor
from rmq.broker.registration import BrokerRegistration, NameServerClient
from rmq.broker.reply import install_reply
from rmq.broker.send import SendMessageProcessor
from rmq.broker.stats import metrics_service
from rmq.broker.subscription import SubscriptionGroupManager
from rmq.broker.topic import TopicConfigManager, TopicDefaults
from rmq.common.asyncutil import deferred_api, logged_tick
from rmq.remoting.client import RemotingClient
from rmq.remoting.codes import RequestCode
from rmq.remoting.dispatch import Dispatcher
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from rmq.remoting.protocol import RemotingServerFactory
from rmq.store.config import MessageStoreConfig
from rmq.store.interfaces import IMessageStore

HOLD_CHECK_INTERVAL_S = 5.0


@attrs.define(eq=False)
class Broker:
    """Everything one broker is made of (what later features plug into)."""

    config: BrokerConfig
    identity: BrokerIdentity
    clock: IReactorTime
    store: IMessageStore
    topics: TopicConfigManager
    groups: SubscriptionGroupManager
    offsets: ConsumerOffsetManager
    consumers: ConsumerManager
    producers: ProducerManager
    hold: PullRequestHoldService
    persister: ConfigPersister
    registration: BrokerRegistration
    dispatcher: Dispatcher
    send: SendMessageProcessor
    #: Extra tables to persist at stop (e.g. delay offsets, added by later features).
    tables: list[Any] = attrs.Factory(list)
    #: Runtime counters (rmq.broker.stats.BrokerStats), set by rmq.broker.admin.install_admin.
    stats: Any = None
    #: Services with start()/stop() Deferreds, started after the store and stopped before the
    #: tables are written (schedule, timer and transaction services of rmq.broker.guarantees).
    components: list[Any] = attrs.Factory(list)
    #: rmq.broker.guarantees.Guarantees, set by install_guarantees.
    guarantees: Any = None
    #: rmq.broker.ha.HAService (replication), set by rmq.broker.ha.install_ha.
    ha: Any = None
    #: rmq.broker.filter.ConsumerFilterManager (SQL92 subscriptions), set by install_filter.
    filters: Any = None
    #: rmq.broker.reply.ReplyMessageProcessor (request/reply), set by install_reply.
    reply: Any = None

    @property
    def send_hooks(self) -> list[ISendMessageHook]:
        """The send path's hooks, in order; append to plug in delay/transaction/retry handling."""
        return self.send.hooks

    def register_processor(self, codes: Sequence[int], processor: IRequestProcessor) -> None:
        """Route ``codes`` to ``processor`` (admin and later features add theirs this way)."""
        for code in codes:
            self.dispatcher.register(code, processor)


def broker_processors(broker: Broker) -> dict[int, IRequestProcessor]:
    """The request-code table of the data path; one processor per area."""
    pull = PullMessageProcessor(
        broker.config,
        broker.identity,
        broker.topics,
        broker.groups,
        broker.consumers,
        broker.offsets,
        broker.store,
        broker.hold,
    )
    clients = ClientManageProcessor(
        broker.topics, broker.groups, broker.consumers, broker.producers
    )
    offsets = ConsumerOffsetProcessor(broker.offsets, broker.store)
    query = QueryProcessor(broker.config, broker.store)
    table: dict[int, IRequestProcessor] = {
        RequestCode.SEND_MESSAGE: broker.send,
        RequestCode.SEND_MESSAGE_V2: broker.send,
        RequestCode.SEND_BATCH_MESSAGE: broker.send,
        RequestCode.PULL_MESSAGE: pull,
    }
    for processor in (clients, offsets, query):
        table.update(dict.fromkeys(processor.codes(), processor))
    return table


def build_broker(
    config: BrokerConfig,
    clock: IReactorTime,
    store: IMessageStore,
    namesrv_client: NameServerClient,
    *,
    writer: Writer = sync_writer,
    namesrv_addrs: Callable[[], list[str]] | None = None,
    store_config: MessageStoreConfig | None = None,
) -> Broker:
    """Assemble the domain objects and processors (no I/O happens here)."""
    identity = BrokerIdentity.from_config(config)
    topics = TopicConfigManager(
        clock,
        TopicDefaults(
            cluster_name=config.cluster_name,
            broker_name=config.broker_name,
            auto_create_topic_enable=config.auto_create_topic_enable,
            default_topic_queue_nums=config.default_topic_queue_nums,
            cluster_topic_enable=config.cluster_topic_enable,
            broker_topic_enable=config.broker_topic_enable,
            trace_topic_enable=config.trace_topic_enable,
            trace_topic_name=config.msg_trace_topic_name,
        ),
    )
    groups = SubscriptionGroupManager(clock, config.auto_create_subscription_group)
    offsets = ConsumerOffsetManager()
    consumers = ConsumerManager(
        clock,
        ConsumerIdsNotifier(),
        config.channel_expired_timeout_ms,
        config.notify_consumer_ids_changed_enable,
    )
    producers = ProducerManager(clock, config.channel_expired_timeout_ms)
    hold = PullRequestHoldService(clock, store.get_max_offset_in_queue)
    persister = ConfigPersister(config.config_dir, writer)
    registration = BrokerRegistration(
        config, identity, topics, namesrv_client, clock, namesrv_addrs
    )
    send = SendMessageProcessor(config, identity, topics, groups, store, clock)
    broker = Broker(
        config=config,
        identity=identity,
        clock=clock,
        store=store,
        topics=topics,
        groups=groups,
        offsets=offsets,
        consumers=consumers,
        producers=producers,
        hold=hold,
        persister=persister,
        registration=registration,
        dispatcher=Dispatcher(),
        send=send,
    )
    for code, processor in broker_processors(broker).items():
        broker.dispatcher.register(code, processor)
    broker.stats = install_admin(broker)
    broker.guarantees = install_guarantees(broker, store_config)
    broker.filters = install_filter(broker)
    broker.reply = install_reply(broker)
    topics.listeners.append(lambda: persister.request(topics))
    topics.listeners.append(registration.topics_changed)
    groups.listeners.append(lambda: persister.request(groups))
    return broker


class BrokerServerFactory(RemotingServerFactory):
    """The broker's remoting server factory: a connection with a held pull is not idle.

    ``serverChannelMaxIdleTimeSeconds`` (120 s) closes silent connections. A pull may be held
    for its whole ``suspendTimeoutMillis`` without a byte on the wire, so before each idle check
    the connections with a held pull are marked active: a long poll is never cut by the idle
    close, however long the client asked it to last.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        clock: IReactorTime,
        hold: PullRequestHoldService,
        **kwargs: Any,
    ) -> None:
        super().__init__(dispatcher, clock, **kwargs)
        self.hold = hold

    def close_idle_connections(self) -> None:
        """Count held pulls as activity, then close the connections idle for too long."""
        holding = {held.connection for held in self.hold.held()}
        if holding:
            now = self.clock.seconds()
            for conn in self.connections:
                if conn in holding:
                    conn.last_activity = now
        super().close_idle_connections()


class BrokerService(MultiService):
    """Runs one :class:`Broker`: store, listening port, timers, registration (ordered start/stop).

    ``when_started()`` fires once the broker listens and has registered (or failed to) with its
    NameServers; ``port`` is the listening port.
    """

    log = Logger()

    def __init__(
        self,
        broker: Broker,
        endpoint: IStreamServerEndpoint,
        *,
        close_client: Callable[[], Deferred[None]] | None = None,
    ) -> None:
        super().__init__()
        self.broker = broker
        self.endpoint = endpoint
        self.factory = BrokerServerFactory(
            broker.dispatcher,
            broker.clock,
            broker.hold,
            max_frame_size=broker.config.max_frame_size,
            on_connection_lost=self._connection_lost,
            idle_timeout=broker.config.idle_timeout_s,
        )
        self.port: IListeningPort | None = None
        self._start_waiters: list[Deferred[None]] = []
        self._start_outcome: list[Failure | None] = []
        #: Called with the Failure when the start fails (twistd: stop the process).
        self.on_start_failure: Callable[[Failure], None] | None = None
        self._start_attempt: Deferred[None] | None = None
        # What the last start got through, so a stop after a failed start undoes only that.
        self._store_started = False
        self._started_components: list[Any] = []
        self._close_client = close_client
        self._flushed_offsets = -1
        #: Awaited before the first registration (standalone: the NameServer is listening).
        self.before_register: Callable[[], Deferred[Any]] | None = None
        config = broker.config
        self._timer(config.client_scan_interval_ms / 1000.0, self._scan_clients, "client scan")
        self._timer(
            config.flush_consumer_offset_interval_ms / 1000.0, self._flush_offsets, "offset flush"
        )
        hold_interval = (
            HOLD_CHECK_INTERVAL_S
            if config.long_polling_enable
            else config.short_polling_time_ms / 1000.0
        )
        self._timer(hold_interval, broker.hold.check_held_requests, "held pull check")
        period = min(max(config.register_name_server_period_ms, 10_000), 60_000) / 1000.0
        self._timer(period, self._periodic_registration, "registration")

    def _timer(self, interval: float, f: Callable[[], Any], what: str) -> None:
        timer = TimerService(interval, logged_tick(f, what))
        timer.clock = self.broker.clock
        timer.setServiceParent(self)

    # -- periodic ticks -------------------------------------------------------------------

    def _scan_clients(self) -> None:
        for conn in (
            self.broker.consumers.scan_not_active() + self.broker.producers.scan_not_active()
        ):
            close = getattr(conn, "close", None)
            if close is not None and not self._still_registered(conn):
                close()

    def _still_registered(self, conn: Any) -> bool:
        b = self.broker
        return any(
            conn in (g.channels if g else {}) for g in map(b.consumers.group, b.consumers.groups())
        ) or any(
            ch.connection is conn
            for grp in b.producers.groups()
            for ch in b.producers.channels(grp)
        )

    def _flush_offsets(self) -> None:
        offsets = self.broker.offsets
        if offsets.change_count != self._flushed_offsets:
            self._flushed_offsets = offsets.change_count
            self.broker.persister.request(offsets)

    def _periodic_registration(self) -> Deferred[None] | None:
        if not self.broker.registration.active:
            return None
        return self.broker.registration.periodic()

    def _connection_lost(self, connection: IRemotingConnection) -> None:
        b = self.broker
        b.hold.connection_closed(connection)
        b.consumers.connection_closed(connection)
        b.producers.connection_closed(connection)

    # -- lifecycle ------------------------------------------------------------------------

    def load_configs(self) -> None:
        """Read ``config/topics.json``, ``subscriptionGroup.json``, ``consumerOffset.json``."""
        b = self.broker
        for table in (b.topics, b.groups, b.offsets, *b.tables):
            b.persister.load(table)
        self._flushed_offsets = b.offsets.change_count

    def startService(self) -> None:
        """Load config tables, start timers, then (asynchronously) store, listener, registration.

        The tables load first: the timers' first ticks (run at once) must not overwrite the
        files with empty tables.
        """
        try:
            self.load_configs()
        except Exception:
            self.log.failure(
                "Loading config/*.json under {dir} failed", dir=self.broker.config.config_dir
            )
            raise
        super().startService()
        attempt = self._start()
        self._start_attempt = attempt

        def done(result: object) -> object:
            self._start_attempt = None
            return result

        attempt.addBoth(done)
        attempt.addCallbacks(self._start_done, self._start_failed)

    def _start_done(self, _: object) -> None:
        self._start_outcome = [None]
        waiters, self._start_waiters = self._start_waiters, []
        for d in waiters:
            d.callback(None)

    def _start_failed(self, failure: Failure) -> None:
        # A stop during the start cancels it: that is no failure to report (nor a reason
        # for twistd to exit 1).
        stopped = failure.check(CancelledError) is not None and not self.running
        if stopped:
            self.log.info(
                "Broker {name} stopped before its start finished",
                name=self.broker.config.broker_name,
            )
        else:
            self.log.failure(
                "Broker {name} failed to start", failure, name=self.broker.config.broker_name
            )
        self._start_outcome = [failure]
        waiters, self._start_waiters = self._start_waiters, []
        for d in waiters:
            d.errback(failure)
        if self.on_start_failure is not None and not stopped:
            self.on_start_failure(failure)

    def when_started(self) -> Deferred[None]:
        """A fresh Deferred: fires once the broker listens and registered (or tried to), or
        fails with the reason the start failed."""
        if self._start_outcome:
            (outcome,) = self._start_outcome
            return fail(outcome) if outcome is not None else succeed(None)
        d: Deferred[None] = Deferred()
        self._start_waiters.append(d)
        return d

    @deferred_api
    async def _start(self) -> None:
        b = self.broker
        await b.store.start()
        self._store_started = True
        b.store.add_arrival_listener(b.hold.on_arrival)
        if b.stats is not None:
            b.stats.store_started(b.store.add_arrival_listener)
        for component in b.components:
            await component.start()
            self._started_components.append(component)
        self.port = await self.endpoint.listen(self.factory)
        if b.identity.listen_port == 0:
            b.identity.listen_port = int(getattr(self.port.getHost(), "port", 0))
        self.log.info(
            "Broker {name} of {cluster} listening on {addr} (id {id}, role {role})",
            name=b.identity.broker_name,
            cluster=b.identity.cluster_name,
            addr=b.identity.broker_addr,
            id=b.identity.broker_id,
            role=b.config.broker_role,
        )
        b.registration.active = True
        if self.before_register is not None:
            await self.before_register()
        if b.registration.has_namesrv():
            await b.registration.register_all()

    def stopService(self) -> Deferred[None]:
        """Ordered clean stop; fires when the store is closed."""
        timers = super().stopService()
        return self._stop(timers)

    @deferred_api
    async def _stop(self, timers: Deferred[None] | None) -> None:
        b = self.broker
        if self._start_attempt is not None:
            self._start_attempt.cancel()
        if timers is not None:
            await timers
        if self.port is not None:
            await maybeDeferred(self.port.stopListening)
            self.port = None
        if b.registration.active:
            await b.registration.unregister_all()
        b.registration.active = False
        b.hold.wake_all()
        closing = []
        for conn in list(self.factory.connections):
            closing.append(conn.when_closed())
            conn.close()
        if closing:
            await DeferredList(closing, consumeErrors=True)
        store_started, self._store_started = self._store_started, False
        if store_started:
            b.store.remove_arrival_listener(b.hold.on_arrival)
        started, self._started_components = self._started_components, []
        for component in reversed(started):
            await component.stop()
        if store_started or getattr(b.store, "running", False) is True:
            # Only a broker whose store started owns the directory: one that failed on the
            # store lock must not write its stale tables over the running broker's.
            for table in (b.offsets, b.topics, b.groups, *b.tables):
                b.persister.request(table)
            await b.persister.when_idle()
            if getattr(b.store, "running", True):
                await b.store.stop()
        if self._close_client is not None:
            await self._close_client()
        self.log.info("Broker {name} stopped", name=b.identity.broker_name)


def build_broker_service(
    config: BrokerConfig,
    endpoint: IStreamServerEndpoint,
    clock: IReactorTime,
    *,
    store: IMessageStore | None = None,
    store_config: MessageStoreConfig | None = None,
    client_endpoint_factory: Callable[[str], IStreamClientEndpoint] | None = None,
    namesrv_client: NameServerClient | None = None,
    writer: Writer = sync_writer,
    namesrv_addrs: Callable[[], list[str]] | None = None,
    ha_endpoint: IStreamServerEndpoint | None = None,
    metrics_endpoint: IStreamServerEndpoint | None = None,
) -> BrokerService:
    """The broker service tree for ``config``, listening on ``endpoint``.

    ``ha_endpoint`` is the master's HA listener (rmq.broker.ha); a slave connects to its master
    through ``client_endpoint_factory``. ``metrics_endpoint`` serves the Prometheus page
    (``GET /metrics``, docs/metrics.md; tap.py builds it from ``metricsPort``).

    ``store`` defaults to a :class:`MemoryMessageStore`; tap.py passes the file store.
    NameServer requests go through ``namesrv_client`` or a RemotingClient built on
    ``client_endpoint_factory``.
    """
    if store is None:
        from rmq.store.memory import MemoryMessageStore

        store = MemoryMessageStore(clock, store_config)
    close_client: Callable[[], Deferred[None]] | None = None
    if namesrv_client is None:
        if client_endpoint_factory is None:
            raise ValueError("need namesrv_client or client_endpoint_factory")
        remoting = RemotingClient(clock, client_endpoint_factory)
        namesrv_client = remoting
        close_client = remoting.close
    from rmq.broker.ha import build_ha, install_ha

    store, ha = build_ha(
        config, store, clock, listen_endpoint=ha_endpoint, connect=client_endpoint_factory
    )
    broker = build_broker(
        config,
        clock,
        store,
        namesrv_client,
        writer=writer,
        namesrv_addrs=namesrv_addrs,
        store_config=store_config,
    )
    install_ha(broker, ha)
    service = BrokerService(broker, endpoint, close_client=close_client)
    if metrics_endpoint is not None and broker.stats is not None:
        metrics = metrics_service(broker.stats, {"broker": config.broker_name}, metrics_endpoint)
        metrics.setName("metrics")
        metrics.setServiceParent(service)
    return service
