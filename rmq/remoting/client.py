"""Client RPC over remoting connections (per Java's NettyRemotingClient).

``RemotingClient`` keeps one cached connection per ``"host:port"`` address. Concurrent calls
while a connection is being made share that one attempt. A lost connection is evicted from the
cache (the next call reconnects) and fails its pending requests with RemotingSendRequestError.
Requests the peer sends on such a connection (a broker's NOTIFY_CONSUMER_IDS_CHANGED,
CHECK_TRANSACTION_STATE, ...) go to the client's dispatcher.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, gatherResults, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.common.errors import RemotingConnectError, RemotingTimeoutError
from rmq.remoting.command import RemotingCommand
from rmq.remoting.dispatch import Dispatcher
from rmq.remoting.interfaces import IRemotingConnection
from rmq.remoting.protocol import DEFAULT_MAX_FRAME_SIZE, RemotingFactory, RemotingProtocol

EndpointFactory = Callable[[str], IStreamClientEndpoint]

#: Java's ``NettyClientConfig.connectTimeoutMillis`` (3 s).
DEFAULT_CONNECT_TIMEOUT = 3.0


def split_address(addr: str) -> tuple[str, int]:
    """``("host", port)`` from ``"host:port"`` or ``"[v6]:port"``; ValueError if malformed."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"address {addr!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"address {addr!r} has an invalid port")
    return host, port


def tcp_endpoint_factory(
    reactor: object, timeout: float = 30.0
) -> Callable[[str], IStreamClientEndpoint]:
    """An endpoint factory for ``"host:port"`` addresses (IPv4/IPv6 literals or host names)."""

    def make(addr: str) -> IStreamClientEndpoint:
        host, port = split_address(addr)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return HostnameEndpoint(reactor, host, port, timeout=timeout)
        if ip.version == 4:
            return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)

    return make


class RemotingClient:
    """RPC to many peers over cached connections; peer-initiated requests go to ``dispatcher``."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        endpoint_factory: EndpointFactory,
        dispatcher: Dispatcher | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.clock = clock
        self.endpoint_factory = endpoint_factory
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self.connect_timeout = connect_timeout
        self.max_frame_size = max_frame_size
        self._connections: dict[str, RemotingProtocol] = {}
        # address -> (the connect attempt, the Deferreds of everyone waiting for it)
        self._connecting: dict[str, tuple[Deferred[Any], list[Deferred[RemotingProtocol]]]] = {}
        self._closed = False

    # ---------------------------------------------------------------------------------------
    # connections

    def connection(self, addr: str) -> Deferred[IRemotingConnection]:
        """The cached connection to ``addr``, connecting first if needed.

        Fires with an IRemotingConnection; fails with RemotingConnectError (naming ``addr``)
        when the connection cannot be made within ``connect_timeout`` seconds.
        """
        d: Deferred[IRemotingConnection] = Deferred()
        self._connection(addr).chainDeferred(d)  # type: ignore[arg-type]
        return d

    def _connection(self, addr: str) -> Deferred[RemotingProtocol]:
        if self._closed:
            return fail(RemotingConnectError(f"connect to {addr} failed: the client is closed"))
        conn = self._connections.get(addr)
        if conn is not None and conn.connected_ok:
            return succeed(conn)
        attempt = self._connecting.get(addr)
        waiters = attempt[1] if attempt is not None else []

        def cancel(waiter: Deferred[RemotingProtocol]) -> None:
            if waiter in waiters:
                waiters.remove(waiter)

        waiter: Deferred[RemotingProtocol] = Deferred(cancel)
        waiters.append(waiter)
        if attempt is None:
            # The waiter is registered first: an endpoint may fire synchronously.
            try:
                endpoint = self.endpoint_factory(addr)
            except Exception as e:
                waiters.clear()
                return fail(RemotingConnectError(f"connect to {addr} failed: {e}"))
            self._start_connecting(addr, endpoint, waiters)
        return waiter

    def _start_connecting(
        self, addr: str, endpoint: IStreamClientEndpoint, waiters: list[Deferred[RemotingProtocol]]
    ) -> None:
        factory = RemotingFactory(
            self.dispatcher,
            self.clock,
            max_frame_size=self.max_frame_size,
            on_connection_lost=lambda conn: self._evict(addr, conn),
        )
        try:
            attempt: Deferred[Any] = endpoint.connect(factory)
        except Exception as e:
            attempt = fail(e)
        entry = (attempt, waiters)
        self._connecting[addr] = entry
        attempt.addTimeout(self.connect_timeout, self.clock)

        def connected(conn: object) -> None:
            assert isinstance(conn, RemotingProtocol)
            if self._connecting.get(addr) is entry:
                del self._connecting[addr]
            if self._closed:
                conn.close()
                self._fail_waiters(waiters, addr, "the client was closed")
                return
            self.log.info("Connected to {addr}", addr=addr)
            self._connections[addr] = conn
            pending, waiters[:] = list(waiters), []
            for waiter in pending:
                waiter.callback(conn)

        def failed(failure: Failure) -> None:
            if self._connecting.get(addr) is entry:
                del self._connecting[addr]
            if self._closed:
                why = "the client was closed"
            elif failure.check(CancelledError, DeferredTimeoutError, ConnectingCancelledError):
                why = f"timed out after {self.connect_timeout}s"
            else:
                why = failure.getErrorMessage()
            self.log.warn("Connect to {addr} failed: {why}", addr=addr, why=why)
            self._fail_waiters(waiters, addr, why)

        attempt.addCallbacks(connected, failed)

    @staticmethod
    def _fail_waiters(waiters: list[Deferred[RemotingProtocol]], addr: str, why: str) -> None:
        pending, waiters[:] = list(waiters), []
        for waiter in pending:
            waiter.errback(RemotingConnectError(f"connect to {addr} failed: {why}"))

    def _evict(self, addr: str, conn: IRemotingConnection) -> None:
        if self._connections.get(addr) is conn:
            del self._connections[addr]
            self.log.info("Connection to {addr} closed", addr=addr)

    def close_connection(self, addr: str) -> None:
        """Close the cached connection to ``addr`` if there is one (Java closeChannel)."""
        conn = self._connections.pop(addr, None)
        if conn is not None:
            conn.close()

    # ---------------------------------------------------------------------------------------
    # RPC

    def invoke(
        self, addr: str, command: RemotingCommand, timeout: float = 3.0
    ) -> Deferred[RemotingCommand]:
        """Send ``command`` to ``addr`` and fire with its response (any response code).

        ``timeout`` (seconds) covers connecting and waiting for the answer. Fails with
        RemotingConnectError (naming ``addr``), RemotingTimeoutError, or
        RemotingSendRequestError when the connection is lost before the answer.
        """
        conn = self._connections.get(addr)
        if conn is not None and conn.connected_ok and not self._closed:
            return conn.invoke(command, timeout)  # the common case: no connect timer needed
        start = self.clock.seconds()
        connecting = self._connection(addr)

        def connect_timed_out(result: object, seconds: float) -> object:
            if isinstance(result, Failure) and result.check(CancelledError):
                raise RemotingConnectError(
                    f"connect to {addr} failed: not connected within {seconds}s"
                )
            return result

        connecting.addTimeout(timeout, self.clock, onTimeoutCancel=connect_timed_out)

        def connected(conn: RemotingProtocol) -> Deferred[RemotingCommand]:
            remaining = timeout - (self.clock.seconds() - start)
            if remaining <= 0:
                return fail(
                    RemotingTimeoutError(
                        f"invoke to {addr} timed out: connecting took the whole {timeout}s"
                    )
                )
            return conn.invoke(command, remaining)

        return connecting.addCallback(connected)

    def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]:
        """Send ``command`` to ``addr`` with the ONEWAY flag; fires once it is written.

        Fails with RemotingConnectError when no connection to ``addr`` can be made.
        """

        def connected(conn: RemotingProtocol) -> None:
            conn.send_oneway(command)

        return self._connection(addr).addCallback(connected)

    def close(self) -> Deferred[None]:
        """Close every connection and stop connecting; fires when all connections are closed."""
        self._closed = True
        attempts = [attempt for attempt, _ in self._connecting.values()]
        for attempt in attempts:
            attempt.cancel()
        connections, self._connections = list(self._connections.values()), {}
        closed = [conn.when_closed() for conn in connections]
        for conn in connections:
            conn.close()
        return gatherResults(closed).addCallback(lambda _: None)
