"""Registration with every NameServer: protocol §4.1–§4.3 and §10.1.

Java counterparts: ``BrokerController.registerBrokerAll`` / ``doRegisterBrokerAll`` and
``BrokerOuterAPI``. At start the broker sends a full REGISTER_BROKER to every NameServer in
parallel; every period (30 s) it asks each NameServer QUERY_DATA_VERSION and registers again only
with those that report a change (a NameServer that forgot the broker reports one), unless
``forceRegister`` is on; a topic change triggers an immediate oneway registration; a clean stop
sends
UNREGISTER_BROKER. The body is zlib-compressed (§4.1) when ``compressedRegister`` is on or when it
is larger than ``compressRegisterOverBytes``, so 100,000 topics fit comfortably in one frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.broker.config import BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.broker.topic import PERM_READ, PERM_WRITE, TopicConfigManager
from rmq.common import fastjson
from rmq.common.asyncutil import deferred_api
from rmq.common.route import DataVersion as RouteDataVersion
from rmq.common.route import RegisterBrokerBody, body_crc32
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request

_JSON_BYTES_PER_TOPIC = 150


class NameServerClient(Protocol):
    """The slice of ``rmq.remoting.client.RemotingClient`` registration uses."""

    def invoke(
        self, addr: str, command: RemotingCommand, timeout: float = 3.0
    ) -> Deferred[RemotingCommand]:
        """Request/response to ``addr``."""

    def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]:
        """Oneway request to ``addr``."""


class BrokerRegistration:
    """Keeps every configured NameServer informed about this broker."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        identity: BrokerIdentity,
        topics: TopicConfigManager,
        client: NameServerClient,
        clock: IReactorTime,
        namesrv_addrs: Callable[[], list[str]] | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.topics = topics
        self.client = client
        self.clock = clock
        self._addrs = namesrv_addrs or (lambda: config.namesrv_addrs)
        self._pending_oneway: IDelayedCall | None = None
        self.active = False
        #: NameServer address → last successful registration's data version counter.
        self.registered: dict[str, int] = {}
        self.registrations = 0
        self._cached: tuple[Any, bytes, bool] | None = None
        #: Called with every successful REGISTER_BROKER answer (a slave learns its master).
        self.response_listeners: list[Callable[[RemotingCommand], None]] = []

    def has_namesrv(self) -> bool:
        """True when at least one NameServer address is configured."""
        return bool(self._addrs())

    # -- body -----------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "brokerAddr": self.identity.broker_addr,
            "brokerId": self.identity.broker_id,
            "brokerName": self.identity.broker_name,
            "clusterName": self.identity.cluster_name,
        }

    def _data_version(self) -> RouteDataVersion:
        dv = self.topics.data_version
        return RouteDataVersion.from_dict(dv.to_json())

    def build_request(self, oneway: bool = False) -> RemotingCommand:
        """A REGISTER_BROKER request carrying every topic config (compressed when large).

        The body is encoded once per topic data version (and reused for every NameServer).
        """
        key = (self.topics.data_version, self.identity.permission, self.identity.broker_addr)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, *self._encode_body())
        _, body, compressed = self._cached
        header = self._header()
        header.update(
            haServerAddr=self.identity.ha_server_addr,
            compressed=compressed,
            bodyCrc32=body_crc32(body),
        )
        return new_request(RequestCode.REGISTER_BROKER, header, body, oneway=oneway)

    def _encode_body(self) -> tuple[bytes, bool]:
        perm = self.identity.permission
        override = not (perm & PERM_READ and perm & PERM_WRITE)
        table = {}
        for config in self.topics.configs():
            entry = config.to_json()
            if override:
                entry["perm"] = perm
            table[config.topic_name] = entry
        body_obj = RegisterBrokerBody(
            data_version=self._data_version(), topic_config_table=table, filter_server_list=[]
        )
        # A topic config is ~150 bytes of JSON: decide from the count instead of encoding twice.
        estimate = len(table) * _JSON_BYTES_PER_TOPIC
        compressed = (
            self.config.compressed_register or estimate > self.config.compress_register_over_bytes
        )
        return body_obj.encode(compressed), compressed

    # -- operations -----------------------------------------------------------------------

    @deferred_api
    async def register_one(self, addr: str) -> bool:
        """Full REGISTER_BROKER to ``addr``; True on success (failures are logged)."""
        request = self.build_request()
        counter = self.topics.data_version.counter
        try:
            response = await self.client.invoke(
                addr, request, self.config.register_broker_timeout_ms / 1000.0
            )
        except Exception as e:
            self.log.warn("Registering with NameServer {addr} failed: {error}", addr=addr, error=e)
            self.registered.pop(addr, None)
            return False
        if response.code != ResponseCode.SUCCESS:
            self.log.warn(
                "NameServer {addr} refused registration: {code} {remark}",
                addr=addr,
                code=response.code,
                remark=response.remark,
            )
            self.registered.pop(addr, None)
            return False
        self.registrations += 1
        first = addr not in self.registered
        self.registered[addr] = counter
        if first:
            self.log.info(
                "Broker {name} ({broker}) registered with NameServer {addr}: {topics} topics, "
                "{size} bytes",
                name=self.identity.broker_name,
                broker=self.identity.broker_addr,
                addr=addr,
                topics=len(self.topics),
                size=len(request.body),
            )
        self._apply_kv_table(response)
        for listener in list(self.response_listeners):
            listener(response)
        return True

    def _apply_kv_table(self, response: RemotingCommand) -> None:
        """Mark the topics of the ORDER_TOPIC_CONFIG KV table as ordered (Java does the same)."""
        if not response.body:
            return
        try:
            obj = fastjson.loads(response.body)
        except ValueError:
            return
        table = obj.get("table") if isinstance(obj, dict) else None
        if isinstance(table, dict):
            self.topics.update_order_topic_config(str(t) for t in table)

    def register_all(self) -> Deferred[list[bool]]:
        """REGISTER_BROKER to every NameServer in parallel; fires with per-server success."""
        ds = [self.register_one(addr) for addr in self._addrs()]
        return gatherResults(ds) if ds else Deferred.fromCoroutine(_empty())

    @deferred_api
    async def query_changed(self, addr: str) -> bool:
        """QUERY_DATA_VERSION: True when ``addr`` does not hold our current data version."""
        request = new_request(
            RequestCode.QUERY_DATA_VERSION, self._header(), self._data_version().to_json()
        )
        try:
            response = await self.client.invoke(
                addr, request, self.config.register_broker_timeout_ms / 1000.0
            )
        except Exception as e:
            self.log.warn("QUERY_DATA_VERSION to {addr} failed: {error}", addr=addr, error=e)
            return True
        if response.code != ResponseCode.SUCCESS:
            return True
        return response.ext_fields.get("changed", "true").lower() == "true"

    @deferred_api
    async def periodic(self) -> None:
        """The 30 s task: re-register where needed (always with ``forceRegister``)."""
        if self.config.force_register:
            await self.register_all()
            return

        async def one(addr: str) -> None:
            if await self.query_changed(addr):
                self.log.info("NameServer {addr} has stale data; registering again", addr=addr)
                await self.register_one(addr)

        ds = [Deferred.fromCoroutine(one(a)) for a in self._addrs()]
        if ds:
            await DeferredList(ds, consumeErrors=True)

    def topics_changed(self) -> None:
        """A topic was created or changed: register again at once, oneway (coalesced)."""
        if not self.active or self._pending_oneway is not None:
            return
        self._pending_oneway = self.clock.callLater(0, self._send_oneway)

    def _send_oneway(self) -> None:
        self._pending_oneway = None
        if not self.active:
            return
        for addr in self._addrs():
            d = self.client.invoke_oneway(addr, self.build_request(oneway=True))
            d.addErrback(self._oneway_failed, addr)

    def _oneway_failed(self, failure: Failure, addr: str) -> None:
        self.log.warn(
            "Oneway registration to {addr} failed: {error}",
            addr=addr,
            error=failure.getErrorMessage(),
        )

    @deferred_api
    async def unregister_all(self, timeout: float = 3.0) -> None:
        """UNREGISTER_BROKER to every NameServer (errors logged, never raised)."""
        self.active = False
        if self._pending_oneway is not None and self._pending_oneway.active():
            self._pending_oneway.cancel()
        self._pending_oneway = None

        async def one(addr: str) -> None:
            request = new_request(RequestCode.UNREGISTER_BROKER, self._header())
            try:
                await self.client.invoke(addr, request, timeout)
                self.log.info("Unregistered from NameServer {addr}", addr=addr)
            except Exception as e:
                self.log.warn("Unregistering from {addr} failed: {error}", addr=addr, error=e)

        ds = [Deferred.fromCoroutine(one(a)) for a in self._addrs()]
        if ds:
            await DeferredList(ds, consumeErrors=True)
        self.registered.clear()


async def _empty() -> list[bool]:
    return []
