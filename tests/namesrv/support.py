"""Helpers for NameServer tests: a NameServer on StringTransport connections, frame helpers."""

from __future__ import annotations

import os
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from rmq.common.atomicfile import write_atomic
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.kvconfig import KVConfigManager
from rmq.namesrv.processors import NamesrvConfigHolder, namesrv_dispatcher
from rmq.namesrv.routeinfo import RouteInfoManager
from rmq.remoting.codec import decode, encode
from rmq.remoting.command import RemotingCommand
from rmq.remoting.protocol import RemotingProtocol, RemotingServerFactory


def sync_persist(path: str, data: bytes) -> None:
    """Write a file at once (stands in for the thread pool in unit tests)."""
    write_atomic(path, data)


def split_frames(data: bytes) -> list[RemotingCommand]:
    """Decode every complete frame in ``data`` (a transport's written bytes)."""
    result = []
    pos = 0
    while pos + 4 <= len(data):
        (length,) = struct.unpack_from(">i", data, pos)
        result.append(decode(data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    assert pos == len(data), "incomplete frame written"
    return result


class Connection:
    """One client connection to the NameServer over a StringTransport."""

    def __init__(self, factory: RemotingServerFactory, port: int) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def send_frame(self, frame: bytes) -> list[RemotingCommand]:
        """Feed raw frame bytes; return the responses written since."""
        self.transport.clear()
        self.protocol.dataReceived(frame)
        return split_frames(self.transport.value())

    def request(self, cmd: RemotingCommand) -> RemotingCommand:
        """Send one request and return its single response."""
        responses = self.send_frame(encode(cmd))
        assert len(responses) == 1, responses
        return responses[0]

    def close(self) -> None:
        """Drop the connection (as if the peer closed it)."""
        self.transport.loseConnection()
        self.protocol.connectionLost()


class NamesrvHarness:
    """Routes, KV store and processors wired to a server factory, on a Clock."""

    def __init__(self, tmpdir: str, config: NamesrvConfig | None = None, **kw: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_795_295_000)
        if config is None:
            config = NamesrvConfig(
                kv_config_path=os.path.join(tmpdir, "kvConfig.json"), rocketmq_home=tmpdir, **kw
            )
        self.config = NamesrvConfigHolder(config, sync_persist)
        self.routes = RouteInfoManager(self.clock)
        self.kv = KVConfigManager(config.kv_config_path, sync_persist)
        self.dispatcher = namesrv_dispatcher(self.routes, self.kv, self.config)
        self.factory = RemotingServerFactory(
            self.dispatcher, self.clock, on_connection_lost=self._lost
        )
        self._next_port = 50000

    def _lost(self, conn: Any) -> None:
        self.routes.on_channel_destroy(conn.remote_address)

    def connect(self) -> Connection:
        """A new client connection from a fresh local port."""
        self._next_port += 1
        return Connection(self.factory, self._next_port)


__all__ = ["NamesrvHarness", "Connection", "split_frames", "sync_persist", "RemotingProtocol"]
