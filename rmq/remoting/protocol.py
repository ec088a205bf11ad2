"""``RemotingProtocol``: one RocketMQ remoting connection (per Java's NettyRemotingAbstract).

Framing keeps the ``IntNStringReceiver`` contract (``MAX_LENGTH``, ``lengthLimitExceeded``,
one ``stringReceived`` call per complete frame) over its own ``bytearray`` buffer, because
``Int32StringReceiver`` re-concatenates its whole pending buffer on every ``dataReceived``
(STYLE §1). Besides framing it owns only the opaque -> Deferred table of its outgoing requests;
incoming requests go straight to the dispatcher, and their responses are written in the
serialization the request used.

Bad input (protocol §1.7, DESIGN "Rules for bad input"): an oversized or inconsistent frame, or a
header that cannot be decoded and carries no readable opaque, is logged and closes this
connection only; an undecodable header with a readable opaque gets a SYSTEM_ERROR response.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IAddress, IReactorTime, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.internet.tcp import Connection
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from rmq.common.errors import (
    FrameError,
    HeaderError,
    RemotingSendRequestError,
    RemotingTimeoutError,
)
from rmq.remoting.codec import UndecodableHeaderError, decode, encode, encode_head
from rmq.remoting.codes import FLAG_ONEWAY, FLAG_RESPONSE, ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand, next_opaque
from rmq.remoting.dispatch import Dispatcher
from rmq.remoting.interfaces import IRemotingConnection

#: Java's default ``com.rocketmq.remoting.frameMaxLength``: 16 MiB after the length word.
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024

# Bodies at least this large are written as a second buffer instead of being copied into the
# frame (pull answers, large sends).
_WRITE_SEQUENCE_THRESHOLD = 64 * 1024

_LENGTH = struct.Struct(">i")

ConnectionCallback = Callable[[IRemotingConnection], object]


def format_address(address: IAddress | None) -> str:
    """``"ip:port"`` of a Twisted address (``str(address)`` for other kinds)."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return str(address)
    return f"{host}:{port}"


@implementer(IRemotingConnection)
class RemotingProtocol(Protocol):
    """One remoting connection: framing, request/response correlation, dispatch of requests."""

    log = Logger()

    def __init__(
        self,
        dispatcher: Dispatcher | None,
        clock: IReactorTime,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        on_connection_made: ConnectionCallback | None = None,
        on_connection_lost: ConnectionCallback | None = None,
    ) -> None:
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self.clock = clock
        self.MAX_LENGTH = max_frame_size
        self.remote_address = "?:0"
        self._on_connection_made = on_connection_made
        self._on_connection_lost = on_connection_lost
        self._buffer = bytearray()
        self._pending: dict[int, Deferred[RemotingCommand]] = {}
        self._close_waiters: list[Deferred[None]] = []
        self._closing = False
        self._lost = False
        self._receiving = False
        self._reentrant: list[bytes] = []
        # Frames written while a read is handled, sent together when it is done (one write,
        # in order); None outside ``dataReceived``.
        self._out: list[bytes] | None = None
        # A TCP connection of the reactor: the collected frames are sent at once (see _flush).
        self._send_at_once = False
        #: ``clock.seconds()`` of the last read or write (for idle detection).
        self.last_activity = clock.seconds()

    # ---------------------------------------------------------------------------------------
    # connection lifecycle

    def connectionMade(self) -> None:
        """Set the socket options, record the peer address and tell the factory's callback.

        TCP_NODELAY on, SO_KEEPALIVE off, as Java's NettyRemotingServer (child channels) and
        NettyRemotingClient set them: every frame is one small write that must leave at once;
        dead peers are found by the heartbeats and the idle close, not by TCP keepalive.
        """
        transport = self.transport
        assert transport is not None
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
            transport.setTcpKeepAlive(False)
        self._send_at_once = isinstance(transport, Connection)
        self.remote_address = format_address(transport.getPeer())
        self.log.debug("Connection from/to {peer} made", peer=self.remote_address)
        if self._on_connection_made is not None:
            self._call_back(self._on_connection_made, "connection-made")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail every pending request, fire ``when_closed`` waiters, tell the callback."""
        self._lost = True
        self._closing = True
        self._buffer = bytearray()
        pending, self._pending = self._pending, {}
        for opaque, d in pending.items():
            d.errback(
                RemotingSendRequestError(
                    f"connection to {self.remote_address} lost before the response to request "
                    f"opaque {opaque} arrived: {reason.getErrorMessage()}"
                )
            )
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self._on_connection_lost is not None:
            self._call_back(self._on_connection_lost, "connection-lost")

    def _call_back(self, callback: ConnectionCallback, what: str) -> None:
        try:
            callback(self)
        except Exception:
            self.log.failure(
                "{what} callback for {peer} failed", what=what, peer=self.remote_address
            )

    def close(self) -> None:
        """Close the connection; pending requests fail with RemotingSendRequestError.

        Frames already written (answers to earlier requests of the same read) still go out.
        """
        self._closing = True
        if self._out:
            try:
                self._flush()
            except Exception:
                self.log.failure("Writing to {peer} failed", peer=self.remote_address)
        if self.transport is not None and not self._lost:
            self.transport.loseConnection()

    def when_closed(self) -> Deferred[None]:
        """A fresh Deferred that fires with None once the connection is lost."""
        d: Deferred[None] = Deferred()
        if self._lost:
            d.callback(None)
        else:
            self._close_waiters.append(d)
        return d

    @property
    def connected_ok(self) -> bool:
        """True while the connection is open and not being closed."""
        return not self._closing and not self._lost

    def _abort(self, reason: str) -> None:
        """Log why and close this connection (bad input from the peer)."""
        self.log.warn(
            "Closing connection to {peer}: {reason}", peer=self.remote_address, reason=reason
        )
        self.close()

    # ---------------------------------------------------------------------------------------
    # framing

    def dataReceived(self, data: bytes) -> None:
        """Buffer ``data`` and hand each complete frame to ``stringReceived``."""
        if self._closing:
            return
        if self._receiving:
            # Re-entered from a frame handler (a synchronous in-memory transport): the buffer is
            # exported to a memoryview right now, so queue the data for the outer call.
            self._reentrant.append(data)
            return
        self._receiving = True
        self._out = []
        self.last_activity = self.clock.seconds()
        try:
            self._frames_from(data)
            while self._reentrant and not self._closing:
                self._frames_from(self._reentrant.pop(0))
            if self._out:
                self._flush()
        except Exception:
            self.log.failure("Handling data from {peer} failed", peer=self.remote_address)
            self._abort("internal error while handling a frame")
        finally:
            self._receiving = False
            self._out = None

    def _flush(self) -> None:
        """Write the frames collected during this read as one buffer, and send it now.

        Twisted only queues a write and sends it on the reactor's next turn (another
        ``epoll_wait`` round and dispatch per answer); on a reactor TCP connection the answers
        are pushed to the socket here, still in the reactor thread, like Netty's
        ``writeAndFlush`` from the event loop. A partial send leaves the rest to the reactor.
        """
        out = self._out
        transport = self.transport
        if not out or transport is None:
            return
        self._out = []
        if len(out) == 1:
            transport.write(out[0])
        else:
            transport.writeSequence(out)
        if self._send_at_once and not self._lost:
            assert isinstance(transport, Connection)
            if transport.connected and not transport.disconnecting:
                # doWrite is IWriteDescriptor's own method: it sends what it can and stops
                # watching for writability once the buffer is empty. On failure it leaves the
                # writer registered, so the reactor reports the lost connection as usual.
                transport.doWrite()

    def _frames_from(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        pos = 0
        available = len(buf)
        while available - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length > self.MAX_LENGTH:
                self.lengthLimitExceeded(length)
                return
            if length < 4:
                self._abort(f"frame length {length} is shorter than the 4-byte header word")
                return
            end = pos + 4 + length
            if end > available:
                break
            with memoryview(buf) as view:
                frame = view[pos + 4 : end]
                try:
                    self.stringReceived(frame)
                finally:
                    frame.release()
            pos = end
            if self._closing:
                return
        if pos:
            del buf[:pos]

    def lengthLimitExceeded(self, length: int) -> None:
        """A frame longer than ``MAX_LENGTH`` was announced: log it and close the connection."""
        self._abort(f"frame length {length} exceeds the maximum of {self.MAX_LENGTH} bytes")

    def stringReceived(self, frame: bytes | memoryview) -> None:
        """One complete frame (without its length word): decode it and route it.

        ``frame`` may be a memoryview into the receive buffer, valid only during this call.
        """
        try:
            cmd = decode(frame)
        except FrameError as e:
            self._abort(f"inconsistent frame: {e.remark}")
            return
        except UndecodableHeaderError as e:
            self._bad_header(e)
            return
        if cmd.flag & FLAG_RESPONSE:
            self._response_received(cmd)
        else:
            self.dispatcher.handle(self, cmd, self._send_response)

    def _bad_header(self, error: UndecodableHeaderError) -> None:
        if error.opaque is None:
            self._abort(f"undecodable header: {error.remark}")
            return
        if error.flag is not None and error.flag & FLAG_RESPONSE:
            self.log.warn(
                "Undecodable response header from {peer}: {reason}",
                peer=self.remote_address,
                reason=error.remark,
            )
            d = self._pending.pop(error.opaque, None)
            if d is not None:
                d.errback(error)
            return
        self.log.warn(
            "Undecodable request header from {peer} (opaque {opaque}): {reason}",
            peer=self.remote_address,
            opaque=error.opaque,
            reason=error.remark,
        )
        if error.flag is not None and error.flag & FLAG_ONEWAY:
            return
        serialize_type = error.serialize_type
        if serialize_type not in (SerializeType.JSON, SerializeType.ROCKETMQ):
            serialize_type = SerializeType.JSON
        self._send_response(
            RemotingCommand(
                code=ResponseCode.SYSTEM_ERROR,
                opaque=error.opaque,
                flag=FLAG_RESPONSE,
                remark=error.remark,
                serialize_type=serialize_type,
            )
        )

    def _response_received(self, cmd: RemotingCommand) -> None:
        d = self._pending.pop(cmd.opaque, None)
        if d is None:
            self.log.warn(
                "Response with unknown opaque {opaque} (code {code}) from {peer}; late or stray",
                opaque=cmd.opaque,
                code=cmd.code,
                peer=self.remote_address,
            )
            return
        d.callback(cmd)

    # ---------------------------------------------------------------------------------------
    # writing

    def _write(self, cmd: RemotingCommand) -> None:
        assert self.transport is not None
        self.last_activity = self.clock.seconds()
        body = cmd.body
        out = self._out
        if out is not None:
            # Inside dataReceived: collected and written once the read is handled.
            if len(body) >= _WRITE_SEQUENCE_THRESHOLD:
                out.append(encode_head(cmd))
                out.append(body)
            else:
                out.append(encode(cmd))
        elif len(body) >= _WRITE_SEQUENCE_THRESHOLD:
            self.transport.writeSequence([encode_head(cmd), body])
        else:
            self.transport.write(encode(cmd))

    def _write_or_log(
        self, command: RemotingCommand, what: str, drop_level: LogLevel, **fields: object
    ) -> HeaderError | None:
        """Write ``command``, or drop it (logged at ``drop_level``) when the connection is closed.

        ``what`` names the command in the log templates (it may hold ``{field}``s of
        ``fields``). Returns the HeaderError, logged, when the command cannot be encoded.
        """
        if not self.connected_ok:
            self.log.emit(
                drop_level,
                "Dropping " + what + ": connection to {peer} is closed",
                peer=self.remote_address,
                **fields,
            )
            return None
        try:
            self._write(command)
        except HeaderError as e:
            self.log.error("Cannot encode " + what + ": {reason}", reason=e.remark, **fields)
            return e
        return None

    def _send_response(self, response: RemotingCommand) -> None:
        e = self._write_or_log(
            response, "the response to opaque {opaque}", LogLevel.info, opaque=response.opaque
        )
        if e is not None:
            self._write(
                RemotingCommand(
                    code=ResponseCode.SYSTEM_ERROR,
                    opaque=response.opaque,
                    flag=FLAG_RESPONSE,
                    remark=f"cannot encode response: {e.remark}",
                    serialize_type=response.serialize_type,
                )
            )

    def invoke(self, command: RemotingCommand, timeout: float) -> Deferred[RemotingCommand]:
        """Send a request and wait for its response (see ``IRemotingConnection.invoke``)."""
        if not self.connected_ok:
            return fail(
                RemotingSendRequestError(
                    f"connection to {self.remote_address} is closed; request code "
                    f"{command.code} not sent"
                )
            )
        command.flag &= ~(FLAG_RESPONSE | FLAG_ONEWAY)
        while command.opaque in self._pending:
            command.opaque = next_opaque()
        try:
            self._write(command)
        except HeaderError as e:
            return fail(e)
        opaque = command.opaque
        pending = self._pending

        def cancel(d: Deferred[RemotingCommand]) -> None:
            if pending.get(opaque) is d:
                del pending[opaque]

        d: Deferred[RemotingCommand] = Deferred(cancel)
        pending[opaque] = d
        address, code = self.remote_address, command.code

        def timed_out(result: object, seconds: float) -> object:
            if isinstance(result, Failure) and result.check(CancelledError):
                raise RemotingTimeoutError(
                    f"wait response on the channel <{address}> timeout, {seconds * 1000:.0f}(ms)"
                    f" (request code {code}, opaque {opaque})"
                )
            return result

        d.addTimeout(timeout, self.clock, onTimeoutCancel=timed_out)
        return d

    def send_oneway(self, command: RemotingCommand) -> None:
        """Send a request with the ONEWAY flag; dropped with a warning if the connection closed."""
        command.flag = (command.flag | FLAG_ONEWAY) & ~FLAG_RESPONSE
        self._write_or_log(command, "oneway request code {code}", LogLevel.warn, code=command.code)

    @property
    def pending_count(self) -> int:
        """Number of outgoing requests waiting for their response."""
        return len(self._pending)


class RemotingFactory(Factory):
    """Builds ``RemotingProtocol``s sharing one dispatcher and clock; tracks live connections.

    ``idle_timeout`` (seconds, default None = never) closes connections without any read or
    write for that long, checked every ``idle_timeout / 4`` seconds while the factory is started.
    """

    log = Logger()
    noisy = False  # no "Starting factory" line for every client connection

    def __init__(
        self,
        dispatcher: Dispatcher | None,
        clock: IReactorTime,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        on_connection_made: ConnectionCallback | None = None,
        on_connection_lost: ConnectionCallback | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self.clock = clock
        self.max_frame_size = max_frame_size
        self.on_connection_made = on_connection_made
        self.on_connection_lost = on_connection_lost
        self.idle_timeout = idle_timeout
        self.connections: set[RemotingProtocol] = set()
        self._idle_check: LoopingCall | None = None

    def startFactory(self) -> None:
        """Start the idle-connection check when ``idle_timeout`` is set (first port/connector)."""
        if self.idle_timeout is not None and self._idle_check is None:
            self._idle_check = LoopingCall(self.close_idle_connections)
            self._idle_check.clock = self.clock
            self._idle_check.start(self.idle_timeout / 4, now=False)

    def stopFactory(self) -> None:
        """Stop the idle-connection check."""
        if self._idle_check is not None:
            if self._idle_check.running:
                self._idle_check.stop()
            self._idle_check = None

    def close_idle_connections(self) -> None:
        """Close connections with no read or write for ``idle_timeout`` seconds.

        Like Java's ``serverChannelMaxIdleTimeSeconds`` (120 s): RocketMQ clients heartbeat every
        30 s, so only dead or abandoned peers are idle that long.
        """
        if self.idle_timeout is None:
            return
        now = self.clock.seconds()
        for conn in list(self.connections):
            idle = now - conn.last_activity
            if idle >= self.idle_timeout and conn.connected_ok:
                self.log.info(
                    "Closing connection to {peer}: idle for {idle:.0f} s",
                    peer=conn.remote_address,
                    idle=idle,
                )
                conn.close()

    def buildProtocol(self, addr: IAddress | None) -> RemotingProtocol:
        """A new connection's protocol."""
        return RemotingProtocol(
            self.dispatcher,
            self.clock,
            max_frame_size=self.max_frame_size,
            on_connection_made=self._made,
            on_connection_lost=self._lost,
        )

    def _made(self, connection: IRemotingConnection) -> None:
        assert isinstance(connection, RemotingProtocol)
        self.connections.add(connection)
        if self.on_connection_made is not None:
            self.on_connection_made(connection)

    def _lost(self, connection: IRemotingConnection) -> None:
        assert isinstance(connection, RemotingProtocol)
        self.connections.discard(connection)
        if self.on_connection_lost is not None:
            self.on_connection_lost(connection)


class RemotingServerFactory(RemotingFactory):
    """The server side: one ``RemotingProtocol`` per accepted connection (per NettyRemotingServer).

    ``on_connection_made``/``on_connection_lost`` receive the IRemotingConnection (a broker uses
    them to drop a client's registrations, a NameServer to forget a broker).
    """
