"""One client instance per client id (Java ``MQClientInstance``).

It owns the remoting client, the topic routes and broker address table, and the periodic work:
route refresh (30 s), heartbeats to every broker (30 s, and at once to a broker a route brings
that has not had one yet), consumer offset persistence (5 s) and rebalance (20 s, and at once on
NOTIFY_CONSUMER_IDS_CHANGED). It answers broker → client requests. Producers and consumers
register with it by group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypedDict, Unpack

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rmq.client.api import (
    DEFAULT_TOPIC,
    IRemoting,
    MQClientAPI,
    SubscriptionData,
    TopicRoute,
)
from rmq.client.config import (
    ClientConfig,
    namesrv_http_url,
    resolve_namesrv_addr,
    split_namesrv_addr,
)
from rmq.client.interfaces import IOffsetStore
from rmq.client.message_queue import MessageQueue
from rmq.client.nsaddr import NamesrvAddressFetcher
from rmq.client.reply import RequestFutureTable, reply_from_push
from rmq.common import fastjson
from rmq.common.asyncutil import deferred_api, global_reactor, log_failure, logged_tick
from rmq.common.errors import MQBrokerError, MQClientError, RMQError
from rmq.common.message import MessageExt, decode_message
from rmq.common.route import MASTER_ID
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response

#: Java ``MixAll.CLIENT_INNER_PRODUCER_GROUP`` (also named in every heartbeat, like Java).
INNER_PRODUCER_GROUP = "CLIENT_INNER_PRODUCER"

#: Requests a broker sends to a client (answered by :meth:`MQClientInstance.process_request`).
BROKER_REQUEST_CODES = (
    RequestCode.CHECK_TRANSACTION_STATE,
    RequestCode.NOTIFY_CONSUMER_IDS_CHANGED,
    RequestCode.RESET_CONSUMER_CLIENT_OFFSET,
    RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT,
    RequestCode.GET_CONSUMER_RUNNING_INFO,
    RequestCode.CONSUME_MESSAGE_DIRECTLY,
    RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT,
)

RemotingFactory = Callable[[Any, Callable[[Any, RemotingCommand], Any]], IRemoting]


class ProducerMember(Protocol):
    """What the instance needs from a producer."""

    group: str
    #: Queues per broker for a topic sent through TBW102 (Java ``defaultTopicQueueNums``).
    default_topic_queue_nums: int

    def topics(self) -> set[str]: ...

    def on_route(self, topic: str, route: TopicRoute) -> None: ...

    def check_transaction_state(
        self, addr: str, msg: MessageExt, header: dict[str, str]
    ) -> None: ...


class ConsumerMember(Protocol):
    """What the instance needs from a consumer."""

    group: str
    #: Its offsets (None before start); GET_CONSUMER_STATUS_FROM_CLIENT reads the table.
    offset_store: IOffsetStore | None

    def topics(self) -> set[str]: ...

    def on_route(self, topic: str, route: TopicRoute) -> None: ...

    def heartbeat_data(self) -> dict[str, Any]: ...

    def rebalance(self) -> Deferred[None]: ...

    def persist_offsets(self) -> Deferred[None]: ...

    def reset_offsets(self, topic: str, offsets: dict[MessageQueue, int]) -> Deferred[None]: ...

    def running_info(self) -> dict[str, Any]: ...

    def consume_directly(
        self, msg: MessageExt, broker_name: str | None
    ) -> Deferred[dict[str, Any]]: ...


def default_remoting_factory(reactor: Any) -> RemotingFactory:
    """Build real ``RemotingClient``s on TCP endpoints of ``reactor``."""

    def make(clock: IReactorTime, handler: Callable[[Any, RemotingCommand], Any]) -> IRemoting:
        from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
        from rmq.remoting.dispatch import Dispatcher, FunctionProcessor

        proc = FunctionProcessor(handler)
        dispatcher = Dispatcher({c: proc for c in BROKER_REQUEST_CODES})
        client: IRemoting = RemotingClient(clock, tcp_endpoint_factory(reactor), dispatcher)
        return client

    return make


class MQClientInstance:
    """Shared per-client-id state and timers. Use :func:`get_instance` to obtain one."""

    log = Logger()

    def __init__(
        self,
        config: ClientConfig,
        clock: IReactorTime,
        remoting_factory: RemotingFactory,
        client_id: str | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.client_id = client_id or config.client_id()
        self.remoting = remoting_factory(clock, self.process_request)
        static = resolve_namesrv_addr(config.namesrv_addr, config.properties)
        self.api = MQClientAPI(
            self.remoting, clock, split_namesrv_addr(static), config.request_timeout
        )
        self.producers: dict[str, ProducerMember] = {}
        self.consumers: dict[str, ConsumerMember] = {}
        self.routes: dict[str, TopicRoute] = {}
        self.broker_addrs: dict[str, dict[int, str]] = {}
        self.broker_versions: dict[str, int] = {}
        #: Topics whose route is TBW102's brokers (no route of their own yet, Java's
        #: ``updateTopicRouteInfoFromNameServer(topic, true, producer)``).
        self.default_routed: set[str] = set()
        #: Broker addresses a heartbeat was sent to; a route naming any other triggers one.
        self._heartbeated: set[str] = set()
        self._loops: list[LoopingCall] = []
        self._fetcher: NamesrvAddressFetcher | None = None
        self._rebalance_call: IDelayedCall | None = None
        self._refs = 0
        self._inner_producer: Any = None
        self.started = False
        #: Requests waiting for their reply (Producer.request), by correlation id.
        self.replies = RequestFutureTable(clock)

    # --- lifecycle ----------------------------------------------------------------------------

    @deferred_api
    async def start(self) -> None:
        """Resolve NameServers (HTTP endpoint if configured), start the periodic tasks."""
        self._refs += 1
        if self.started:
            return
        self.started = True
        url = namesrv_http_url(self.config.properties)
        if not self.api.namesrv_addrs and url is not None:
            self._fetcher = NamesrvAddressFetcher(
                url,
                self.clock,
                lambda a: self.api.set_namesrv_addrs(split_namesrv_addr(a)),
                interval=self.config.namesrv_http_interval,
            )
            await self._fetcher.start()
        if not self.api.namesrv_addrs:
            self.started = False
            self._refs -= 1
            raise MQClientError(
                "No NameServer address: pass namesrv_addr, set the rocketmq.namesrv.addr "
                "property or NAMESRV_ADDR, or rocketmq.namesrv.domain"
            )
        c = self.config
        self._every(c.poll_name_server_interval, self.refresh_routes, "route refresh", now=False)
        self._every(c.heartbeat_broker_interval, self.send_heartbeat_to_all, "heartbeat", now=False)
        self._every(
            c.persist_consumer_offset_interval, self.persist_all, "offset persist", now=False
        )
        self._every(c.rebalance_interval, self.rebalance_all, "rebalance", now=False)

    def _every(self, interval: float, f: Callable[[], Any], what: str, now: bool) -> None:
        loop = LoopingCall(logged_tick(f, what))
        loop.clock = self.clock
        loop.start(interval, now=now).addErrback(log_failure(what))
        self._loops.append(loop)

    @deferred_api
    async def shutdown(self) -> None:
        """Drop one reference; the last one stops timers, unregisters and closes connections."""
        self._refs -= 1
        if self._refs > 0 or not self.started:
            return
        self.started = False
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._fetcher is not None:
            self._fetcher.stop()
        if self._rebalance_call is not None and self._rebalance_call.active():
            self._rebalance_call.cancel()
        self._rebalance_call = None
        self._heartbeated.clear()
        self.replies.fail_all("the client instance shut down")
        if self._inner_producer is not None:
            self.producers.pop(INNER_PRODUCER_GROUP, None)
            self._inner_producer = None
        await self.remoting.close()
        _INSTANCES.pop(self.client_id, None)

    # --- registration -------------------------------------------------------------------------

    def register_producer(self, producer: ProducerMember) -> None:
        """Add a producer group; MQClientError if the group is already registered here."""
        if producer.group in self.producers:
            raise MQClientError(f"The producer group {producer.group} has been created before")
        self.producers[producer.group] = producer

    def register_consumer(self, consumer: ConsumerMember) -> None:
        """Add a consumer group; MQClientError if the group is already registered here."""
        if consumer.group in self.consumers:
            raise MQClientError(f"The consumer group {consumer.group} has been created before")
        self.consumers[consumer.group] = consumer

    @deferred_api
    async def unregister(self, producer_group: str | None, consumer_group: str | None) -> None:
        """UNREGISTER_CLIENT to every broker for the group, and forget it locally."""
        if producer_group:
            self.producers.pop(producer_group, None)
        if consumer_group:
            self.consumers.pop(consumer_group, None)
        for addr in self.all_broker_addrs():
            try:
                await self.api.unregister_client(
                    addr, self.client_id, producer_group, consumer_group
                )
            except RMQError as e:
                self.log.warn("Unregister from {addr} failed: {e}", addr=addr, e=e)

    def inner_producer(self) -> Any:
        """This instance's own :class:`~rmq.client.producer.Producer` (group
        ``CLIENT_INNER_PRODUCER``), made on first use and registered so its routes stay fresh."""
        if self._inner_producer is None:
            from rmq.client.producer import Producer  # producer imports this module

            self._inner_producer = Producer.inner(self)
            self.producers.setdefault(INNER_PRODUCER_GROUP, self._inner_producer)
        return self._inner_producer

    # --- routes -------------------------------------------------------------------------------

    def topics(self) -> set[str]:
        """Every topic some member produces to or consumes from."""
        out: set[str] = set()
        for m in self._members():
            out |= m.topics()
        return out

    def _members(self) -> list[ProducerMember | ConsumerMember]:
        return [*self.producers.values(), *self.consumers.values()]

    @deferred_api
    async def update_route(self, topic: str) -> TopicRoute:
        """Fetch a topic's route, update the broker table and tell the members."""
        route = await self.api.get_route(topic)
        self._apply_route(topic, route)
        return route

    @deferred_api
    async def update_publish_route(self, topic: str, queue_nums: int) -> TopicRoute:
        """A route to send ``topic`` by: its own, or while it has none, TBW102's.

        The TBW102 route gets ``min(queue_nums, readQueueNums)`` queues per broker (Java
        ``updateTopicRouteInfoFromNameServer(topic, true, producer)``); it is kept as the
        topic's route for producers only, and replaced by the topic's own route at a refresh
        once the broker has registered the auto-created topic. A topic that had a route of its
        own keeps it while the NameServer does not know it (as Java does). Fails with
        MQBrokerError TOPIC_NOT_EXIST when neither route exists.
        """
        try:
            return await self.update_route(topic)
        except MQBrokerError as e:
            if e.code != ResponseCode.TOPIC_NOT_EXIST:
                raise
            if topic in self.routes and topic not in self.default_routed:
                return self.routes[topic]
            error = e
        try:
            default = await self.api.get_route(DEFAULT_TOPIC)
        except MQBrokerError as e:
            if e.code != ResponseCode.TOPIC_NOT_EXIST:
                raise
            raise error from e
        route = default.for_new_topic(queue_nums)
        self._apply_route(topic, route, from_default=True)
        return route

    def _apply_route(self, topic: str, route: TopicRoute, from_default: bool = False) -> None:
        old = self.routes.get(topic)
        self.routes[topic] = route
        if from_default:
            self.default_routed.add(topic)
        else:
            self.default_routed.discard(topic)
        for bd in route.broker_datas:
            self.broker_addrs[bd.broker_name] = dict(bd.addrs)
        if old != route:
            self.log.info("Route of {topic} changed", topic=topic)
        members: list[ProducerMember | ConsumerMember] = (
            list(self.producers.values()) if from_default else self._members()
        )
        for m in members:
            if topic in m.topics():
                m.on_route(topic, route)
        self._heartbeat_new_brokers()

    def _publish_queue_nums(self, topic: str) -> int | None:
        """TBW102 queue count for ``topic`` if a producer sends to it (None: no producer)."""
        nums = [p.default_topic_queue_nums for p in self.producers.values() if topic in p.topics()]
        return max(nums) if nums else None

    @deferred_api
    async def refresh_routes(self) -> None:
        """Refresh every topic's route; then drop brokers no route mentions any more.

        A topic a producer sends to that has no route of its own yet is refreshed from TBW102's
        route (:meth:`update_publish_route`), so its brokers' addresses stay current too.
        """
        for topic in sorted(self.topics()):
            try:
                nums = self._publish_queue_nums(topic)
                if nums is None:
                    await self.update_route(topic)
                else:
                    await self.update_publish_route(topic, nums)
            except MQBrokerError as e:
                if e.code == ResponseCode.TOPIC_NOT_EXIST:
                    self.log.debug("No route for {topic}", topic=topic)
                else:
                    self.log.warn("Route of {topic}: {e}", topic=topic, e=e)
            except RMQError as e:
                # NameServers unreachable: keep the last known routes (clients keep working).
                self.log.warn("Route refresh of {topic} failed: {e}", topic=topic, e=e)
                return
        self.clean_offline_brokers()

    def clean_offline_brokers(self) -> None:
        """Forget broker addresses that no current route lists (Java cleanOfflineBroker)."""
        live: dict[str, set[str]] = {}
        for route in self.routes.values():
            for bd in route.broker_datas:
                live.setdefault(bd.broker_name, set()).update(bd.addrs.values())
        for name in list(self.broker_addrs):
            if name not in live:
                del self.broker_addrs[name]
            else:
                self.broker_addrs[name] = {
                    i: a for i, a in self.broker_addrs[name].items() if a in live[name]
                }
        # A broker that comes back on a forgotten address gets a heartbeat at once.
        self._heartbeated &= set(self.all_broker_addrs())

    def master_addr(self, broker_name: str) -> str | None:
        """The master address of a broker name, if known."""
        return self.broker_addrs.get(broker_name, {}).get(MASTER_ID)

    def broker_addr(self, broker_name: str, broker_id: int = MASTER_ID) -> str | None:
        """An address of ``broker_name``: the given id if known, else the master, else any."""
        addrs = self.broker_addrs.get(broker_name, {})
        return addrs.get(broker_id) or addrs.get(MASTER_ID) or next(iter(addrs.values()), None)

    def all_broker_addrs(self, masters_only: bool = False) -> list[str]:
        """Every known broker address (sorted, deduplicated)."""
        out = set()
        for addrs in self.broker_addrs.values():
            for bid, a in addrs.items():
                if bid == MASTER_ID or not masters_only:
                    out.add(a)
        return sorted(out)

    # --- heartbeats ---------------------------------------------------------------------------

    def heartbeat_data(self) -> dict[str, Any]:
        """HeartbeatData for all members (keys in Java's order)."""
        return {
            "clientID": self.client_id,
            "consumerDataSet": [c.heartbeat_data() for c in self.consumers.values()],
            "producerDataSet": [
                {"groupName": g} for g in sorted(self.producers) if g != INNER_PRODUCER_GROUP
            ]
            + [{"groupName": INNER_PRODUCER_GROUP}],
        }

    @deferred_api
    async def send_heartbeat_to_all(self) -> None:
        """HEART_BEAT to every broker (masters only if there is no consumer)."""
        await self._send_heartbeats(self.all_broker_addrs(masters_only=not self.consumers))

    def _heartbeat_new_brokers(self) -> None:
        """HEART_BEAT now to each broker of the table that has not had one yet (a route just
        named it): a client whose first routes arrive after its start is known to the brokers
        at once, not at the next 30 s tick (Java heartbeats after start and route updates)."""
        if not self.started:
            return
        new = set(self.all_broker_addrs(masters_only=not self.consumers)) - self._heartbeated
        if new:
            self._send_heartbeats(sorted(new)).addErrback(log_failure("heartbeat"))

    @deferred_api
    async def _send_heartbeats(self, addrs: list[str]) -> None:
        if not self.producers and not self.consumers:
            return
        data = self.heartbeat_data()
        self._heartbeated.update(addrs)
        results = await DeferredList(
            [Deferred.fromCoroutine(self._heartbeat(a, data)) for a in addrs],
            consumeErrors=True,
        )
        del results

    async def _heartbeat(self, addr: str, data: dict[str, Any]) -> None:
        try:
            self.broker_versions[addr] = await self.api.heartbeat(addr, data)
        except RMQError as e:
            self.log.warn("Heartbeat to {addr} failed: {e}", addr=addr, e=e)

    # --- consumers ----------------------------------------------------------------------------

    @deferred_api
    async def persist_all(self) -> None:
        """Persist every consumer's offsets."""
        for c in list(self.consumers.values()):
            await c.persist_offsets()

    @deferred_api
    async def rebalance_all(self) -> None:
        """Rebalance every consumer group."""
        for c in list(self.consumers.values()):
            await c.rebalance()

    def rebalance_soon(self) -> None:
        """Coalesced immediate rebalance (NOTIFY_CONSUMER_IDS_CHANGED)."""
        if self._rebalance_call is not None and self._rebalance_call.active():
            return

        def run() -> None:
            self._rebalance_call = None
            if self.started:
                self.rebalance_all().addErrback(log_failure("rebalance"))

        self._rebalance_call = self.clock.callLater(0, run)

    @deferred_api
    async def find_consumer_ids(self, topic: str, group: str) -> list[str]:
        """GET_CONSUMER_LIST_BY_GROUP to one broker serving ``topic`` (the route's first)."""
        route = self.routes.get(topic)
        names = [bd.broker_name for bd in route.broker_datas] if route else []
        names += sorted(self.broker_addrs)
        for name in names:
            addr = self.broker_addr(name)
            if addr is None:
                continue
            return await self.api.get_consumer_ids(addr, group)
        raise MQClientError(f"No broker known for topic {topic}")

    # --- broker → client requests -------------------------------------------------------------

    def process_request(self, connection: Any, request: RemotingCommand) -> Any:
        """Answer NOTIFY_CONSUMER_IDS_CHANGED, RESET_CONSUMER_CLIENT_OFFSET,
        GET_CONSUMER_STATUS_FROM_CLIENT, GET_CONSUMER_RUNNING_INFO, CONSUME_MESSAGE_DIRECTLY,
        CHECK_TRANSACTION_STATE, PUSH_REPLY_MESSAGE_TO_CLIENT."""
        code = request.code
        if code == RequestCode.NOTIFY_CONSUMER_IDS_CHANGED:
            self.log.info(
                "Consumer ids of {group} changed", group=request.ext_fields.get("consumerGroup")
            )
            self.rebalance_soon()
            return None
        if code == RequestCode.RESET_CONSUMER_CLIENT_OFFSET:
            return self._reset_offset(request)
        if code == RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT:
            return self._consumer_status(request)
        if code == RequestCode.GET_CONSUMER_RUNNING_INFO:
            return self._running_info(request)
        if code == RequestCode.CONSUME_MESSAGE_DIRECTLY:
            return self._consume_directly(request)
        if code == RequestCode.CHECK_TRANSACTION_STATE:
            return self._check_transaction(connection, request)
        if code == RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT:
            return self._receive_reply(request)
        return new_response(
            request, ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request type {code} not supported"
        )

    def _running_info(self, request: RemotingCommand) -> RemotingCommand:
        group = request.ext_str("consumerGroup")
        consumer = self.consumers.get(group)
        if consumer is None:
            return new_response(
                request,
                ResponseCode.SYSTEM_ERROR,
                f"The Consumer Group <{group}> not exist in this consumer",
            )
        return new_response(request, body=fastjson.dumps(consumer.running_info()))

    def _receive_reply(self, request: RemotingCommand) -> RemotingCommand:
        """PUSH_REPLY_MESSAGE_TO_CLIENT: hand the reply to its waiting request (Java
        ``ClientRemotingProcessor.receiveReplyMessage``)."""
        try:
            msg = reply_from_push(request, self.clock)
        except RMQError as e:
            self.log.warn("Malformed reply message push: {e}", e=e)
            return new_response(request, ResponseCode.SYSTEM_ERROR, "process reply message fail")
        self.replies.on_reply(msg)
        return new_response(request)

    def consumer_status(self, topic: str, group: str) -> dict[MessageQueue, int]:
        """The in-memory offsets ``group``'s consumer holds for ``topic`` (every topic when
        ``topic`` is blank); empty for a group this client does not run (Java
        ``MQClientInstance.getConsumerStatus``, ``OffsetStore.cloneOffsetTable``)."""
        consumer = self.consumers.get(group)
        store = consumer.offset_store if consumer is not None else None
        if store is None:
            return {}
        topic = topic.strip()
        return {mq: off for mq, off in store.offsets().items() if not topic or mq.topic == topic}

    def _consumer_status(self, request: RemotingCommand) -> RemotingCommand:
        """GET_CONSUMER_STATUS_FROM_CLIENT (221): a GetConsumerStatusBody whose
        ``messageQueueTable`` maps each MessageQueue object to its offset (Java
        ``ClientRemotingProcessor.getConsumeStatus``; ``consumerTable`` stays empty)."""
        table = self.consumer_status(request.ext_str("topic"), request.ext_str("group"))
        body = {
            "consumerTable": {},
            "messageQueueTable": {mq.json_key(): off for mq, off in sorted(table.items())},
        }
        return new_response(request, body=fastjson.dumps(body))

    def _reset_offset(self, request: RemotingCommand) -> Any:
        topic = request.ext_str("topic")
        group = request.ext_str("group")
        consumer = self.consumers.get(group)
        offsets: dict[MessageQueue, int] = {}
        if request.body:
            table = fastjson.loads(request.body).get("offsetTable") or {}
            if isinstance(table, list):
                for o in table:
                    offsets[MessageQueue.from_json_obj(o)] = int(o["offset"])
            else:
                for k, v in table.items():
                    offsets[MessageQueue.from_json_key(k)] = int(v)
        if consumer is not None:
            consumer.reset_offsets(topic, offsets).addErrback(log_failure("reset offsets"))
        return None if request.is_oneway else new_response(request)

    def _consume_directly(self, request: RemotingCommand) -> Deferred[RemotingCommand]:
        group = request.ext_str("consumerGroup")
        consumer = self.consumers.get(group)
        if consumer is None:
            return succeed(
                new_response(request, ResponseCode.SYSTEM_ERROR, f"no consumer group {group}")
            )
        msg = decode_message(request.body)
        d = consumer.consume_directly(msg, request.ext_fields.get("brokerName"))
        return d.addCallback(lambda r: new_response(request, body=fastjson.dumps(r)))

    def _check_transaction(self, connection: Any, request: RemotingCommand) -> None:
        msg = decode_message(request.body)
        group = msg.properties.get("PGROUP")
        producer = self.producers.get(group or "")
        if producer is None:
            self.log.warn("CHECK_TRANSACTION_STATE for unknown producer group {g}", g=group)
            return None
        addr = getattr(connection, "remote_address", "")
        producer.check_transaction_state(addr, msg, dict(request.ext_fields))
        return None


class InstanceSettings(TypedDict, total=False):
    """:class:`ClientConfig` fields a producer or consumer sets from its own arguments."""

    request_timeout: float
    poll_name_server_interval: float
    heartbeat_broker_interval: float
    rebalance_interval: float


class ClientMember:
    """What producers and consumers share: a group, a clock, the client instance settings, and
    (after start) the :class:`MQClientInstance` of their client id.

    Subclasses say which table of the instance they join (:meth:`_register`).
    """

    #: "producer" or "consumer", for error messages as Java words them.
    role = "client"

    def __init__(
        self,
        group: str,
        namesrv_addr: str | None,
        clock: IReactorTime | None,
        *,
        instance_name: str,
        client_ip: str | None,
        properties: dict[str, str] | None,
        remoting_factory: RemotingFactory | None,
        **settings: Unpack[InstanceSettings],
    ) -> None:
        self.group = group
        self.clock: IReactorTime = clock if clock is not None else global_reactor()
        self.config = ClientConfig(
            namesrv_addr=namesrv_addr,
            properties=dict(properties or {}),
            instance_name=instance_name,
            client_ip=client_ip,
            **settings,
        )
        self._remoting_factory = remoting_factory
        self._instance: MQClientInstance | None = None

    @property
    def instance(self) -> MQClientInstance:
        """The client instance (after start)."""
        if self._instance is None:
            raise MQClientError(f"The {self.role} service state not OK, call start() first")
        return self._instance

    @property
    def client_id(self) -> str:
        """This member's client id."""
        return self.instance.client_id

    def _register(self, inst: MQClientInstance) -> None:
        """Add this member to ``inst``'s producers or consumers."""
        raise NotImplementedError

    async def _join_instance(self) -> MQClientInstance:
        """Register with the instance of this config's client id and start it; a failed start
        takes the registration back. The caller keeps the instance it returns."""
        inst = get_instance(self.config, self.clock, self._remoting_factory)
        self._register(inst)
        try:
            await inst.start()
        except BaseException:
            for table in (inst.producers, inst.consumers):
                member: object = table.get(self.group)
                if member is self:
                    del table[self.group]
            raise
        return inst


_INSTANCES: dict[str, MQClientInstance] = {}


def get_instance(
    config: ClientConfig,
    clock: IReactorTime,
    remoting_factory: RemotingFactory | None,
    reactor: Any = None,
) -> MQClientInstance:
    """The instance for ``config``'s client id, created on first use (Java MQClientManager)."""
    cid = config.client_id()
    inst = _INSTANCES.get(cid)
    if inst is not None and not inst.started and not inst.producers and not inst.consumers:
        inst = None  # a left-over that never started (or failed to): build a fresh one
    if inst is None:
        factory = remoting_factory or default_remoting_factory(reactor or clock)
        inst = MQClientInstance(config, clock, factory, cid)
        _INSTANCES[cid] = inst
    return inst


__all__ = [
    "ClientMember",
    "MQClientInstance",
    "get_instance",
    "SubscriptionData",
]
