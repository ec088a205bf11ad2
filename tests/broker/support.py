"""Fakes shared by the broker tests: a recording connection, a recording NameServer client, and a
base test case running a broker over a memory store."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from rmq.broker.config import BrokerConfig
from rmq.broker.service import Broker, build_broker
from rmq.remoting.codes import RequestCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.interfaces import IRemotingConnection
from rmq.store.memory import MemoryMessageStore


@implementer(IRemotingConnection)
class FakeConnection:
    """An IRemotingConnection that records what the broker sends to the client."""

    def __init__(self, remote_address: str = "127.0.0.1:50000") -> None:
        self.remote_address = remote_address
        self.oneways: list[RemotingCommand] = []
        self.invoked: list[RemotingCommand] = []
        self.closed = False
        self._waiters: list[Deferred[None]] = []

    def invoke(self, command: RemotingCommand, timeout: float) -> Deferred[RemotingCommand]:
        """Record and answer SUCCESS."""
        self.invoked.append(command)
        return succeed(new_response(command))

    def send_oneway(self, command: RemotingCommand) -> None:
        """Record."""
        self.oneways.append(command)

    def close(self) -> None:
        """Mark closed and fire the waiters."""
        self.closed = True
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(None)

    def when_closed(self) -> Deferred[None]:
        """Fires on close()."""
        d: Deferred[None] = Deferred()
        if self.closed:
            d.callback(None)
        else:
            self._waiters.append(d)
        return d


class FakeNameServerClient:
    """Answers NameServer requests from a script and records them (``(addr, command)``)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, RemotingCommand]] = []
        self.oneways: list[tuple[str, RemotingCommand]] = []
        self.changed = True
        self.fail_addrs: set[str] = set()
        self.pending: dict[str, Deferred[RemotingCommand]] = {}
        self.hold = False

    def invoke(self, addr: str, command: RemotingCommand, timeout: float = 3.0) -> Any:
        """Record; answer SUCCESS (QUERY_DATA_VERSION with ``changed``), or fail for fail_addrs."""
        self.requests.append((addr, command))
        if addr in self.fail_addrs:
            return fail(ConnectionRefusedError(addr))
        if command.code == 322:
            return succeed(
                new_response(command, ext_fields={"changed": "true" if self.changed else "false"})
            )
        if self.hold:
            d: Deferred[RemotingCommand] = Deferred()
            self.pending[addr] = d
            return d
        return succeed(new_response(command, ext_fields={}))

    def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]:
        """Record."""
        self.oneways.append((addr, command))
        return succeed(None)

    def codes(self) -> list[int]:
        """Codes of the recorded requests in order."""
        return [c.code for _, c in self.requests]


def pull_request(
    offset: int, sys_flag: int = 4, expr: str = "*", **extra: object
) -> RemotingCommand:
    """A PULL_MESSAGE request of group G on topic T queue 0 (32 messages, 15 s suspend,
    subVersion 0); ``extra`` header fields are added or replace these."""
    fields: dict[str, object] = {
        "consumerGroup": "G",
        "topic": "T",
        "queueId": 0,
        "queueOffset": offset,
        "maxMsgNums": 32,
        "sysFlag": sys_flag,
        "commitOffset": 0,
        "suspendTimeoutMillis": 15000,
        "subscription": expr,
        "subVersion": 0,
    }
    fields.update(extra)
    return new_request(RequestCode.PULL_MESSAGE, fields)


class MemoryBrokerTestCase(SynchronousTestCase):
    """Base for tests that drive a whole broker over a MemoryMessageStore on a Clock.

    :meth:`start_broker` builds it (arrival listener wired, as the broker service does);
    :meth:`answer` dispatches a request from ``self.conn`` and returns the response.
    """

    clock: Clock
    store: MemoryMessageStore
    broker: Broker
    conn: FakeConnection

    def start_broker(
        self, config: BrokerConfig, now_s: float, remote_address: str = "127.0.0.1:50000"
    ) -> None:
        """Build the broker with the clock at ``now_s`` seconds and a fresh FakeConnection."""
        self.clock = Clock()
        self.clock.advance(now_s)
        self.store = MemoryMessageStore(self.clock)
        self.successResultOf(self.store.start())
        self.broker = build_broker(config, self.clock, self.store, FakeNameServerClient())
        self.store.add_arrival_listener(self.broker.hold.on_arrival)
        self.conn = FakeConnection(remote_address)

    def answer(self, request: RemotingCommand) -> RemotingCommand:
        """Dispatch ``request`` from ``self.conn``; the broker must answer at once."""
        response = self.successResultOf(self.broker.dispatcher.dispatch(self.conn, request))
        assert response is not None
        return response
