"""Master → slave commit-log replication (HA), protocol §10.12/§10.13.

Java counterparts: ``HAService`` (acceptor, ``GroupTransferService``, ``HAClient``) and
``HAConnection`` (``ReadSocketService``/``WriteSocketService``). The wire is raw TCP on
``haListenPort`` (default listenPort + 1), no RemotingCommand framing:

* slave → master: int64 = the slave's commit-log max offset; right after connecting, after
  appending each received block, and at least every ``haSendHeartbeatInterval`` (5 s);
* master → slave: blocks ``int64 startOffset | int32 size | size raw commit-log bytes``, size ≤
  ``haTransferBatchSize`` (32 KiB) and never crossing a commit-log file; size 0 is a heartbeat
  (sent after 5 s without a write, and once before the first push, as a 4.9.7 master does).

An empty slave (first report 0) is started at the beginning of the master's last commit-log
file. A slave drops the link when a block does not start at its own max offset; the master drops
a slave that reports more than it has; either side drops a link silent for
``haHousekeepingInterval`` (20 s); the slave reconnects every 5 s.

SYNC_MASTER: :class:`SyncMasterStore` wraps the broker's store; a stored put waits until a slave
acknowledged its end offset (one sorted list of waiters released as acks arrive, one timer for
the oldest deadline), answers ``SLAVE_NOT_AVAILABLE`` at once when no slave is connected or the
best slave lags more than ``haSlaveFallbehindMax``, and ``FLUSH_SLAVE_TIMEOUT`` after
``slaveTimeout`` (3 s). The status → response code mapping stays in ``rmq.broker.send``.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IListeningPort,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rmq.broker.config import SLAVE, SYNC_MASTER, BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.common.asyncutil import log_failure
from rmq.common.message import WAIT, BrokerMessage
from rmq.remoting.command import RemotingCommand
from rmq.store.interfaces import IMessageStore, IReplicaStore, PutMessageResult, PutMessageStatus

HEADER = struct.Struct(">qi")
REPORT = struct.Struct(">q")
#: Period of the service's housekeeping tick (heartbeats, idle checks, reconnects), seconds.
TICK_S = 1.0
#: Java's HAClient waits 5 s between connection attempts.
RECONNECT_S = 5.0


class _HALink(Protocol):
    """What both ends of an HA link share: input buffer, activity times, close notification."""

    def __init__(self, service: HAService) -> None:
        self.service = service
        self.buffer = bytearray()
        #: ``clock.seconds()`` of the last read and the last write.
        self.last_read = 0.0
        self.last_write = 0.0
        self.connected_flag = False
        self._closed: list[Deferred[None]] = []

    def close(self) -> None:
        """Drop the link."""
        if self.transport is not None and self.connected_flag:
            self.transport.loseConnection()

    def when_closed(self) -> Deferred[None]:
        """Fires once the connection is lost."""
        d: Deferred[None] = Deferred()
        if not self.connected_flag:
            d.callback(None)
        else:
            self._closed.append(d)
        return d

    def _fire_closed(self) -> None:
        """Fire the :meth:`when_closed` waiters (called last by ``connectionLost``)."""
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)


class HAConnection(_HALink):
    """Master side of one slave link (Java ``HAConnection``): reads reports, pushes blocks."""

    log = Logger()

    def __init__(self, service: HAService) -> None:
        super().__init__(service)
        #: First offset the slave asked for (-1 before its first report).
        self.slave_request_offset = -1
        #: Highest offset the slave acknowledged.
        self.slave_ack_offset = -1
        #: Next commit-log offset to push (-1 until the first report).
        self.next_transfer = -1
        self.paused = False
        self._wrote_any = False

    @property
    def peer(self) -> str:
        """``ip:port`` of the slave."""
        assert self.transport is not None
        p = self.transport.getPeer()
        return f"{getattr(p, 'host', '?')}:{getattr(p, 'port', '?')}"

    def connectionMade(self) -> None:
        """Register as the transport's producer (pushes pause when its buffer fills)."""
        assert self.transport is not None
        self.connected_flag = True
        now = self.service.clock.seconds()
        self.last_read = self.last_write = now
        cast(IConsumer, self.transport).registerProducer(_Producer(self), True)
        self.service.connection_made(self)
        self.log.info("HA slave {peer} connected", peer=self.peer)

    def dataReceived(self, data: bytes) -> None:
        """Each complete 8-byte report acknowledges an offset."""
        self.last_read = self.service.clock.seconds()
        buf = self.buffer
        buf += data
        n = len(buf) - len(buf) % 8
        if n == 0:
            return
        # Only the newest report matters (Java reads the last complete one in the buffer).
        (offset,) = REPORT.unpack_from(buf, n - 8)
        del buf[:n]
        self.report(offset)

    def report(self, offset: int) -> None:
        """Handle a slave report: start point on the first one, acknowledgement always."""
        store = self.service.store
        master_max = store.get_max_phy_offset()
        if offset > master_max or offset < 0:
            self.log.warn(
                "HA slave {peer} reports offset {offset} beyond the master's {max}: dropped",
                peer=self.peer,
                offset=offset,
                max=master_max,
            )
            self.close()
            return
        self.slave_ack_offset = offset
        if self.slave_request_offset < 0:
            self.slave_request_offset = offset
            if offset == 0:
                size = store.commit_log_file_size()
                start = master_max - master_max % size if size > 0 else 0
                self.next_transfer = max(0, start, store.get_min_phy_offset())
            else:
                self.next_transfer = offset
            self.log.info(
                "HA slave {peer} asked for {offset}; transfer starts at {start}",
                peer=self.peer,
                offset=offset,
                start=self.next_transfer,
            )
        self.service.acknowledged(offset)
        self.push()

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self.last_write = self.service.clock.seconds()
        self._wrote_any = True

    def heartbeat(self) -> None:
        """A 12-byte header with size 0 at the next transfer offset."""
        self._write(HEADER.pack(self.next_transfer, 0))

    def push(self) -> None:
        """Send every available block from ``next_transfer`` (until the transport pauses us)."""
        if self.next_transfer < 0 or not self.connected_flag:
            return
        if not self._wrote_any:
            self.heartbeat()
        store = self.service.store
        batch = self.service.batch_size
        while not self.paused and self.connected_flag:
            data = store.read_commit_log(self.next_transfer, batch)
            if not data:
                return
            offset = self.next_transfer
            self.next_transfer = offset + len(data)
            self._write(HEADER.pack(offset, len(data)) + data)

    def tick(self, now: float) -> None:
        """Housekeeping: drop a silent slave, push what is pending, heartbeat when idle."""
        if now - self.last_read > self.service.housekeeping_s:
            self.log.warn(
                "HA slave {peer} silent for {secs:.0f} s: dropped",
                peer=self.peer,
                secs=now - self.last_read,
            )
            self.close()
            return
        self.push()
        if (
            self.next_transfer >= 0
            and not self.paused
            and now - self.last_write > self.service.heartbeat_s
        ):
            self.heartbeat()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the slave."""
        self.connected_flag = False
        if self.transport is not None:
            cast(IConsumer, self.transport).unregisterProducer()
        self.service.connection_lost(self)
        self.log.info("HA slave link {ack} closed", ack=self.slave_ack_offset)
        self._fire_closed()


@implementer(IPushProducer)
class _Producer:
    """Transport flow control for an :class:`HAConnection`."""

    def __init__(self, conn: HAConnection) -> None:
        self.conn = conn

    def pauseProducing(self) -> None:  # noqa: N802
        self.conn.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.conn.paused = False
        self.conn.push()

    def stopProducing(self) -> None:  # noqa: N802
        self.conn.paused = True


class HAClientProtocol(_HALink):
    """Slave side of the link (Java ``HAService.HAClient``): appends blocks, reports offsets."""

    log = Logger()

    def __init__(self, service: HAService) -> None:
        super().__init__(service)
        self.reported = -1

    def connectionMade(self) -> None:
        """Report the local max offset at once."""
        self.connected_flag = True
        now = self.service.clock.seconds()
        self.last_read = now
        self.service.client_connected(self)
        self.report(self.service.store.get_max_phy_offset())

    def report(self, offset: int) -> None:
        """Send an 8-byte offset report."""
        assert self.transport is not None
        self.transport.write(REPORT.pack(offset))
        self.reported = offset
        self.last_write = self.service.clock.seconds()

    def dataReceived(self, data: bytes) -> None:
        """Append each complete block at the local max offset, then report the new max."""
        self.last_read = self.service.clock.seconds()
        buf = self.buffer
        buf += data
        store = self.service.store
        pos = 0
        try:
            while len(buf) - pos >= HEADER.size:
                offset, size = HEADER.unpack_from(buf, pos)
                if size < 0:
                    raise ValueError(f"negative block size {size}")
                if len(buf) - pos < HEADER.size + size:
                    break
                local = store.get_max_phy_offset()
                if local != 0 and local != offset:
                    raise ValueError(f"master block at {offset}, slave ends at {local}")
                if size:
                    start = pos + HEADER.size
                    store.append_replica(offset, bytes(buf[start : start + size]))
                pos += HEADER.size + size
        except ValueError as e:
            self.log.error("HA link to master dropped: {error}", error=str(e))
            del buf[:]
            self.close()
            return
        del buf[:pos]
        current = store.get_max_phy_offset()
        if current > self.reported:
            self.report(current)

    def tick(self, now: float) -> None:
        """Heartbeat report every 5 s; drop a master silent for 20 s."""
        if now - self.last_read > self.service.housekeeping_s:
            self.log.warn(
                "HA master silent for {secs:.0f} s: reconnecting", secs=now - self.last_read
            )
            self.close()
            return
        if now - self.last_write >= self.service.heartbeat_s:
            self.report(self.service.store.get_max_phy_offset())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the service (which reconnects on its tick)."""
        self.connected_flag = False
        self.service.client_lost(self)
        self._fire_closed()


class _MasterFactory(Factory):
    def __init__(self, service: HAService) -> None:
        self.service = service

    def buildProtocol(self, addr: Any) -> HAConnection:
        return HAConnection(self.service)


class _ClientFactory(Factory):
    def __init__(self, service: HAService) -> None:
        self.service = service

    def buildProtocol(self, addr: Any) -> HAClientProtocol:
        return HAClientProtocol(self.service)


class _SlaveWaiter:
    __slots__ = ("end", "seq", "d", "result", "deadline", "done")

    def __init__(
        self,
        end: int,
        seq: int,
        d: Deferred[PutMessageResult],
        result: PutMessageResult,
        deadline: float,
    ) -> None:
        self.end = end
        self.seq = seq
        self.d = d
        self.result = result
        self.deadline = deadline
        self.done = False

    def __lt__(self, other: _SlaveWaiter) -> bool:
        return (self.end, self.seq) < (other.end, other.seq)


class HAService:
    """Replication for one broker (Java ``HAService``): a master listener with its slave links,
    or a slave client; plus the SYNC_MASTER wait list. A ``Broker.components`` entry."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        store: IReplicaStore,
        clock: IReactorTime,
        *,
        listen_endpoint: IStreamServerEndpoint | None = None,
        connect: Callable[[str], IStreamClientEndpoint] | None = None,
        identity: BrokerIdentity | None = None,
    ) -> None:
        self.config = config
        self.store = IReplicaStore(store)
        self._message_store: Any = store
        self.identity = identity
        self.clock = clock
        self.listen_endpoint = listen_endpoint
        self.connect = connect
        self.heartbeat_s = config.ha_send_heartbeat_interval_ms / 1000.0
        self.housekeeping_s = config.ha_housekeeping_interval_ms / 1000.0
        self.batch_size = config.ha_transfer_batch_size
        self.fall_behind_max = config.ha_slave_fallbehind_max
        self.slave_timeout_s = config.slave_timeout_ms / 1000.0
        self.is_slave = config.broker_role == SLAVE
        self.connections: list[HAConnection] = []
        #: Highest offset any slave acknowledged (Java ``push2SlaveMaxOffset``).
        self.push2slave_max_offset = 0
        self.port: IListeningPort | None = None
        #: Slave: the master's HA address (haMasterAddress, or learned from registration).
        self.master_ha_addr = config.ha_master_address
        #: Slave: the master's remoting address (learned from registration).
        self.master_addr = ""
        #: Slave: the rmq.broker.slave_sync.SlaveSynchronize copying the master's metadata.
        self.slave_sync: Any = None
        #: Called (no arguments) when a slave learns a new master remoting address.
        self.master_listeners: list[Callable[[], None]] = []
        self.client: HAClientProtocol | None = None
        self._connecting: Deferred[Any] | None = None
        self._last_attempt = -RECONNECT_S
        self._loop: LoopingCall | None = None
        self._wake_call: IDelayedCall | None = None
        self._waiters: list[_SlaveWaiter] = []  # sorted by (end, seq)
        self._deadlines: deque[_SlaveWaiter] = deque()  # insertion order = deadline order
        self._timeout_call: IDelayedCall | None = None
        self._seq = itertools.count()
        self.running = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Listen (master) and start the 1 s housekeeping tick (heartbeats, reconnects)."""
        return maybeDeferred(self._start_listening).addCallback(self._start_loop)

    def _start_listening(self) -> Deferred[None] | None:
        if self.is_slave or self.listen_endpoint is None:
            return None
        d = self.listen_endpoint.listen(_MasterFactory(self))

        def listening(port: IListeningPort) -> None:
            self.port = port
            if self.identity is not None:
                host = self.identity.ha_server_addr.rpartition(":")[0] or self.identity.broker_ip1
                self.identity.ha_server_addr = f"{host}:{self.listen_port}"
            self.log.info("HA service listening on {addr}", addr=port.getHost())

        return d.addCallback(listening)

    def _start_loop(self, _: object) -> None:
        self.running = True
        if not self.is_slave:
            self._message_store.add_arrival_listener(self._on_arrival)
        loop = LoopingCall(self.tick)
        loop.clock = self.clock
        loop.start(TICK_S, now=True).addErrback(log_failure("HA tick"))
        self._loop = loop

    @property
    def listen_port(self) -> int:
        """The HA port actually listened on (0 when not listening)."""
        return int(getattr(self.port.getHost(), "port", 0)) if self.port is not None else 0

    def stop(self) -> Deferred[None]:
        """Stop listening, close every link, answer pending SYNC_MASTER waits (timeout)."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.running and not self.is_slave:
            self._message_store.remove_arrival_listener(self._on_arrival)
        self.running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._wake_call is not None and self._wake_call.active():
            self._wake_call.cancel()
        self._wake_call = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self.port is not None:
            await maybeDeferred(self.port.stopListening)
            self.port = None
        closing: list[Deferred[None]] = []
        links: list[HAConnection | HAClientProtocol] = list(self.connections)
        if self.client is not None:
            links.append(self.client)
        for link in links:
            closing.append(link.when_closed())
            link.close()
        if closing:
            await DeferredList(closing, consumeErrors=True)
        self._expire(force=True)

    def tick(self) -> None:
        """Every second: link housekeeping; a slave (re)connects to its master."""
        now = self.clock.seconds()
        for conn in list(self.connections):
            conn.tick(now)
        if self.is_slave:
            if self.client is not None:
                self.client.tick(now)
            elif self._connecting is None and now - self._last_attempt >= RECONNECT_S:
                self._connect_master()

    # -- master side --------------------------------------------------------------------

    def connection_made(self, conn: HAConnection) -> None:
        """A slave connected."""
        self.connections.append(conn)

    def connection_lost(self, conn: HAConnection) -> None:
        """A slave went away."""
        if conn in self.connections:
            self.connections.remove(conn)

    def _on_arrival(self, topic: str, queue_id: int, queue_offset: int, tags_code: int) -> None:
        self.wake()

    def wake(self) -> None:
        """New data was appended: push it to the slaves (coalesced into one reactor turn)."""
        if self.connections and self._wake_call is None:
            self._wake_call = self.clock.callLater(0, self._push_all)

    def _push_all(self) -> None:
        self._wake_call = None
        for conn in list(self.connections):
            conn.push()

    def acknowledged(self, offset: int) -> None:
        """A slave acknowledged ``offset``: release the SYNC_MASTER waits it covers."""
        if offset <= self.push2slave_max_offset:
            return
        self.push2slave_max_offset = offset
        waiters = self._waiters
        n = 0
        while n < len(waiters) and waiters[n].end <= offset:
            n += 1
        if not n:
            return
        released, self._waiters = waiters[:n], waiters[n:]
        for w in released:
            if not w.done:
                w.done = True
                w.d.callback(w.result)
        self._rearm()

    def slave_ok(self, master_put_where: int) -> bool:
        """A slave is connected and the best one lags less than haSlaveFallbehindMax."""
        return bool(self.connections) and (
            master_put_where - self.push2slave_max_offset < self.fall_behind_max
        )

    def wait_for_slave(
        self, result: PutMessageResult, msg: BrokerMessage | None
    ) -> Deferred[PutMessageResult]:
        """SYNC_MASTER: the put's answer once a slave has its bytes (Java ``handleHA``)."""
        if not result.status.stored:
            return succeed(result)
        if msg is not None and msg.properties.get(WAIT) == "false":
            return succeed(result)
        end = result.wrote_offset + result.wrote_bytes
        if not self.slave_ok(end):
            if result.status is PutMessageStatus.PUT_OK:
                result.status = PutMessageStatus.SLAVE_NOT_AVAILABLE
                result.remark = "no slave connected or the slave lags too far behind"
            return succeed(result)
        if self.push2slave_max_offset >= end:
            return succeed(result)
        d: Deferred[PutMessageResult] = Deferred()
        w = _SlaveWaiter(
            end, next(self._seq), d, result, self.clock.seconds() + self.slave_timeout_s
        )
        waiters = self._waiters
        if not waiters or waiters[-1] < w:
            waiters.append(w)
        else:
            bisect.insort(waiters, w)
        self._deadlines.append(w)
        if self._timeout_call is None:
            self._rearm()
        self.wake()
        return d

    def _rearm(self) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0].done:
            deadlines.popleft()
        if self._timeout_call is not None and self._timeout_call.active():
            if deadlines and self._timeout_call.getTime() == deadlines[0].deadline:
                return
            self._timeout_call.cancel()
        self._timeout_call = None
        if deadlines:
            delay = max(0.0, deadlines[0].deadline - self.clock.seconds())
            self._timeout_call = self.clock.callLater(delay, self._expire)

    def _expire(self, force: bool = False) -> None:
        """Answer waits older than slaveTimeout with FLUSH_SLAVE_TIMEOUT."""
        self._timeout_call = None
        now = self.clock.seconds()
        deadlines = self._deadlines
        expired = False
        while deadlines and (force or deadlines[0].deadline <= now):
            w = deadlines.popleft()
            if w.done:
                continue
            w.done = True
            expired = True
            if w.result.status is PutMessageStatus.PUT_OK:
                w.result.status = PutMessageStatus.FLUSH_SLAVE_TIMEOUT
                w.result.remark = "wait for the slave timed out"
            w.d.callback(w.result)
        if expired:
            self._waiters = [w for w in self._waiters if not w.done]
        self._rearm()

    # -- slave side ---------------------------------------------------------------------

    def registered(self, response: RemotingCommand) -> None:
        """A REGISTER_BROKER answer: a slave learns masterAddr / haServerAddr from it."""
        if not self.is_slave:
            return
        master = response.ext_fields.get("masterAddr") or ""
        if master and master != self.master_addr:
            self.master_addr = master
            for listener in list(self.master_listeners):
                listener()
        ha = response.ext_fields.get("haServerAddr") or ""
        if ha and not self.config.ha_master_address and ha != self.master_ha_addr:
            self.log.info("HA master address is now {addr}", addr=ha)
            self.master_ha_addr = ha
            if self.client is not None:
                self.client.close()
            elif self.running and self._connecting is None:
                self._connect_master()

    def _connect_master(self) -> None:
        addr = self.master_ha_addr
        if not addr or self.connect is None:
            return
        self._last_attempt = self.clock.seconds()
        d = self.connect(addr).connect(_ClientFactory(self))
        self._connecting = d

        def failed(failure: Failure) -> None:
            self._connecting = None
            if not self.running:
                return
            self.log.warn(
                "HA connection to master {addr} failed: {error}",
                addr=addr,
                error=failure.getErrorMessage(),
            )

        def done(_: object) -> None:
            self._connecting = None

        d.addCallbacks(done, failed)

    def client_connected(self, client: HAClientProtocol) -> None:
        """The link to the master is up."""
        self._connecting = None
        self.client = client
        self.log.info("HA connected to master {addr}", addr=self.master_ha_addr)

    def client_lost(self, client: HAClientProtocol) -> None:
        """The link to the master is down (reconnect in 5 s)."""
        if self.client is client:
            self.client = None
            self._last_attempt = self.clock.seconds()


@implementer(IMessageStore, IReplicaStore)
class SyncMasterStore:
    """The broker's store with SYNC_MASTER semantics on puts (every other call delegates)."""

    def __init__(self, store: Any, ha: HAService) -> None:
        self._store = store
        self._ha = ha

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put_message(self, msg: BrokerMessage) -> Deferred[PutMessageResult]:
        """Put, then wait for a slave (see :meth:`HAService.wait_for_slave`)."""
        d = self._store.put_message(msg)
        self._ha.wake()
        return d.addCallback(self._ha.wait_for_slave, msg)  # type: ignore[no-any-return]

    def put_messages(self, msgs: Sequence[BrokerMessage]) -> Deferred[PutMessageResult]:
        """Put a batch, then wait for a slave."""
        d = self._store.put_messages(msgs)
        self._ha.wake()
        return d.addCallback(  # type: ignore[no-any-return]
            self._ha.wait_for_slave, msgs[0] if msgs else None
        )


def build_ha(
    config: BrokerConfig,
    store: Any,
    clock: IReactorTime,
    *,
    listen_endpoint: IStreamServerEndpoint | None = None,
    connect: Callable[[str], IStreamClientEndpoint] | None = None,
) -> tuple[Any, HAService | None]:
    """The HA service for ``config`` and the store the broker should use (wrapped with
    SYNC_MASTER waits under that role). No HA service when the store cannot replicate, or a
    master has no HA endpoint, or a slave no way to connect."""
    if not IReplicaStore.providedBy(store):
        return store, None
    if (listen_endpoint is None) if config.broker_role != SLAVE else (connect is None):
        return store, None  # nothing to listen with / connect with: replication is off
    ha = HAService(config, store, clock, listen_endpoint=listen_endpoint, connect=connect)
    if config.broker_role == SYNC_MASTER:
        return SyncMasterStore(store, ha), ha
    return store, ha


def install_ha(broker: Any, ha: HAService | None) -> None:
    """Plug ``ha`` into a built broker: component, registration answers, slave metadata sync."""
    broker.ha = ha
    if ha is None:
        return
    ha.identity = broker.identity
    broker.components.append(ha)
    broker.registration.response_listeners.append(ha.registered)
    if ha.is_slave:
        from rmq.broker.slave_sync import SlaveSynchronize

        ha.slave_sync = SlaveSynchronize(broker, ha)
        broker.components.append(ha.slave_sync)
