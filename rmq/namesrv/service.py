"""The NameServer as a service tree (per RocketMQ's NamesrvController), built from config,
an endpoint and a clock.

``build_namesrv_service(config, endpoint, clock)`` returns a :class:`NamesrvService` (a
``MultiService``) holding the routing state, the KV store, the broker-liveness scan and the
listening port. ``add_namesrv_service(parent, …)`` does the same inside an existing
``MultiService`` (the standalone process uses it).

Liveness: every ``scanNotActiveBrokerInterval`` (10 s) brokers silent for
``brokerChannelExpiredTime`` (120 s) are dropped and their connection closed; a broker is also
dropped the moment the connection it registered on closes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorThreads,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.common.asyncutil import logged_tick
from rmq.common.atomicfile import write_atomic
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.kvconfig import KVConfigManager
from rmq.namesrv.processors import NamesrvConfigHolder, namesrv_dispatcher
from rmq.namesrv.routeinfo import RouteInfoManager
from rmq.remoting.interfaces import IRemotingConnection
from rmq.remoting.protocol import RemotingServerFactory

__all__ = ["NamesrvService", "build_namesrv_service", "add_namesrv_service", "RunBlocking"]

#: Runs a blocking call off the reactor thread: ``run_blocking(f, *args) -> Deferred``.
RunBlocking = Callable[..., "Deferred[Any]"]


def _default_run_blocking(clock: IReactorTime) -> RunBlocking:
    """The reactor's thread pool when the clock is a threaded reactor; else run inline."""
    if IReactorThreads.providedBy(clock):
        reactor: Any = clock

        def in_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

        return in_thread
    return maybeDeferred


class _ListeningService(Service):
    """Listens on an endpoint; stopping stops listening and closes every open connection."""

    log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory: RemotingServerFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None
        self._waiters: list[Deferred[IListeningPort]] = []

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted name)
        """Listen now (before privileges are dropped); a listen failure raises at once."""
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        """Listen, unless privilegedStartService already did."""
        super().startService()
        self._listen()

    def _listen(self) -> None:
        if self._listening is not None:
            return
        d = self.endpoint.listen(self.factory)
        self._listening = d
        failed: list[Failure] = []

        def listening(port: IListeningPort) -> IListeningPort:
            self.port = port
            address = port.getHost()
            self.log.info(
                "NameServer listening on {host}:{port}",
                host=getattr(address, "host", "?"),
                port=getattr(address, "port", "?"),
            )
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.callback(port)
            return port

        def not_listening(failure: Failure) -> None:
            failed.append(failure)
            self.log.failure("NameServer cannot listen", failure)
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.errback(failure)

        d.addCallbacks(listening, not_listening)
        if failed:
            failed[0].raiseException()

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fires with the listening port (a fresh Deferred per call)."""
        if self.port is not None:
            return succeed(self.port)
        d: Deferred[IListeningPort] = Deferred()
        self._waiters.append(d)
        return d

    def stopService(self) -> Deferred[None]:
        """Stop listening, close every connection and wait until they are gone."""
        super().stopService()
        port, self.port = self.port, None
        self._listening = None
        waits: list[Deferred[Any]] = []
        if port is not None:
            waits.append(maybeDeferred(port.stopListening))
        for conn in list(self.factory.connections):
            waits.append(conn.when_closed())
            conn.close()
        return DeferredList(waits).addCallback(lambda _: None)


class NamesrvService(MultiService):
    """One NameServer: routes, KV store, liveness scan and listener (per NamesrvController)."""

    log = Logger()

    def __init__(
        self,
        config: NamesrvConfig,
        endpoint: IStreamServerEndpoint,
        clock: IReactorTime,
        run_blocking: RunBlocking | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock
        run = run_blocking if run_blocking is not None else _default_run_blocking(clock)

        def persist(path: str, data: bytes) -> Deferred[None]:
            return run(write_atomic, path, data)

        self.config = NamesrvConfigHolder(config, persist)
        self.routes = RouteInfoManager(clock, config.broker_channel_expired_time_ms)
        self.kv = KVConfigManager(config.kv_config_path, persist)
        self.kv.load()
        self.dispatcher = namesrv_dispatcher(self.routes, self.kv, self.config)
        self.factory = RemotingServerFactory(
            self.dispatcher,
            clock,
            max_frame_size=config.max_frame_size,
            on_connection_lost=self._connection_lost,
            idle_timeout=config.idle_timeout_s,
        )
        scan = TimerService(
            config.scan_not_active_broker_interval_ms / 1000.0,
            logged_tick(self.scan_not_active_broker, "scan not active brokers"),
        )
        scan.clock = clock
        scan.setName("scan-not-active-broker")
        scan.setServiceParent(self)
        self.listener = _ListeningService(endpoint, self.factory)
        self.listener.setName("listener")
        self.listener.setServiceParent(self)

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fires with the listening port once the service has started listening."""
        return self.listener.when_listening()

    def scan_not_active_broker(self) -> None:
        """Drop brokers silent for too long and close the connections they registered on."""
        expired = self.routes.scan_not_active_broker()
        channels = {live.channel for _, live in expired if live.channel is not None}
        if not channels:
            return
        for conn in list(self.factory.connections):
            if conn.remote_address in channels:
                conn.close()

    def _connection_lost(self, connection: IRemotingConnection) -> None:
        self.routes.on_channel_destroy(connection.remote_address)


def build_namesrv_service(
    config: NamesrvConfig,
    endpoint: IStreamServerEndpoint,
    clock: IReactorTime,
    run_blocking: RunBlocking | None = None,
) -> NamesrvService:
    """The NameServer service tree (a ``MultiService``); start it to listen on ``endpoint``.

    ``run_blocking(f, *args) -> Deferred`` runs KV/config file writes off the reactor thread;
    by default the reactor's thread pool when ``clock`` is a threaded reactor, else inline.
    Loads ``kvConfigPath`` now (blocking, start-up only); raises ``ValueError`` if unreadable.
    """
    return NamesrvService(config, endpoint, clock, run_blocking)


def add_namesrv_service(
    parent: MultiService,
    config: NamesrvConfig,
    endpoint: IStreamServerEndpoint,
    clock: IReactorTime,
    run_blocking: RunBlocking | None = None,
) -> NamesrvService:
    """Build the NameServer and add it as a child of ``parent`` (for the standalone process)."""
    service = build_namesrv_service(config, endpoint, clock, run_blocking)
    service.setServiceParent(parent)
    return service
