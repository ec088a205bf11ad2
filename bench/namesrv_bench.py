"""NameServer benchmark (run by hand): route lookups per second and a 100,000-topic registration.

    .venv/bin/python bench/namesrv_bench.py [--seconds 10] [--inflight 64] [--topics 100000]
                                            [--addr HOST:PORT]

Without ``--addr`` it starts an rmq NameServer in a child process (``--serve`` mode, same
script) on a free loopback port, so server and load generator do not share a CPU-bound reactor.

1. REGISTER_BROKER carrying ``--topics`` topics in the compressed form (RegisterBrokerBody
   encode(compressed=True), bodyCrc32 set), timed from the first byte sent to the response; and
   the same request processed in-process through the NameServer's dispatcher (no sockets).
2. GET_ROUTEINFO_BY_TOPIC for a registered topic with ``--inflight`` requests outstanding on ONE
   connection (pre-encoded JSON request frames as a 4.9.7 Java client sends them; every response
   is decoded and its code checked), for ``--seconds`` seconds after a 1 s warm-up.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import Clock

from rmq.common.route import DataVersion, RegisterBrokerBody, body_crc32
from rmq.remoting.codec import decode, encode
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request

reactor: Any = _reactor
LENGTH = struct.Struct(">i")


def register_request(topics: int) -> RemotingCommand:
    """REGISTER_BROKER for broker-a with ``topics`` topics, compressed body."""
    table = {
        f"BenchTopic{i:06d}": {
            "topicName": f"BenchTopic{i:06d}",
            "readQueueNums": 8,
            "writeQueueNums": 8,
            "perm": 6,
            "topicFilterType": "SINGLE_TAG",
        }
        for i in range(topics)
    }
    body = RegisterBrokerBody(DataVersion(int(time.time() * 1000), 1), table).encode(True)
    return new_request(
        RequestCode.REGISTER_BROKER,
        {
            "brokerName": "broker-a",
            "brokerAddr": "127.0.0.1:10911",
            "clusterName": "DefaultCluster",
            "haServerAddr": "127.0.0.1:10912",
            "brokerId": 0,
            "compressed": True,
            "bodyCrc32": body_crc32(body),
        },
        body,
    )


class Pipeline(Protocol):
    """Keeps ``inflight`` requests outstanding; counts and checks responses."""

    def __init__(self, frames: list[bytes], inflight: int) -> None:
        self.frames = frames
        self.inflight = inflight
        self.buffer = bytearray()
        self.answered = 0
        self.errors = 0
        self.running = False
        self.next_frame = 0
        self.single: Deferred[RemotingCommand] | None = None

    def request_one(self, frame: bytes) -> Deferred[RemotingCommand]:
        """Send one frame; fires with its response."""
        self.single = Deferred()
        assert self.transport is not None
        self.transport.write(frame)
        return self.single

    def start(self) -> None:
        self.running = True
        assert self.transport is not None
        self.transport.write(b"".join(self._take(self.inflight)))

    def _take(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            out.append(self.frames[self.next_frame])
            self.next_frame = (self.next_frame + 1) % len(self.frames)
        return out

    def dataReceived(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        done = 0
        while len(buf) - pos >= 4:
            (length,) = LENGTH.unpack_from(buf, pos)
            if len(buf) - pos - 4 < length:
                break
            cmd = decode(memoryview(buf)[pos + 4 : pos + 4 + length])
            pos += 4 + length
            if self.single is not None:
                d, self.single = self.single, None
                d.callback(cmd)
                continue
            done += 1
            if cmd.code != ResponseCode.SUCCESS:
                self.errors += 1
        del buf[:pos]
        self.answered += done
        if self.running and done:
            assert self.transport is not None
            self.transport.write(b"".join(self._take(done)))


class Server(ProcessProtocol):
    """The child NameServer; fires ``port`` when it prints its port."""

    def __init__(self) -> None:
        self.port: Deferred[int] = Deferred()
        self.out = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if b"\n" in self.out and not self.port.called:
            line = self.out.split(b"\n", 1)[0]
            self.port.callback(int(line.split()[1]))

    def errReceived(self, data: bytes) -> None:
        sys.stderr.write(data.decode(errors="replace"))

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def in_process_register(request: RemotingCommand, runs: int = 3) -> float:
    """Best of ``runs``: seconds to decode and process the frame through the dispatcher."""
    from twisted.internet.testing import StringTransport

    from rmq.namesrv.config import NamesrvConfig
    from rmq.namesrv.kvconfig import KVConfigManager
    from rmq.namesrv.processors import NamesrvConfigHolder, namesrv_dispatcher
    from rmq.namesrv.routeinfo import RouteInfoManager
    from rmq.remoting.protocol import RemotingProtocol

    frame = encode(request)
    best = float("inf")
    for _ in range(runs):
        clock = Clock()
        routes = RouteInfoManager(clock)
        kv = KVConfigManager("/nonexistent/kv.json", lambda p, d: None)
        dispatcher = namesrv_dispatcher(routes, kv, NamesrvConfigHolder(NamesrvConfig()))
        proto = RemotingProtocol(dispatcher, clock)
        transport = StringTransport()
        proto.makeConnection(transport)
        t0 = time.perf_counter()
        proto.dataReceived(frame)
        elapsed = time.perf_counter() - t0
        assert transport.value(), "no response"
        assert len(routes.topic_queue_table) >= 1
        best = min(best, elapsed)
    return best


async def run(args: argparse.Namespace) -> None:
    server: Server | None = None
    if args.addr:
        host, port_text = args.addr.rsplit(":", 1)
        port = int(port_text)
    else:
        server = Server()
        reactor.spawnProcess(
            server,
            sys.executable,
            [sys.executable, os.path.abspath(__file__), "--serve"],
            env=os.environ.copy(),
        )
        host, port = "127.0.0.1", await server.port
    try:
        register = register_request(args.topics)
        frame = encode(register)
        print(
            f"REGISTER_BROKER: {args.topics} topics, compressed body {len(register.body)} bytes,"
            f" frame {len(frame)} bytes"
        )
        best = in_process_register(register)
        print(f"  in-process (decode + decompress + register + answer): {best * 1000:.1f} ms")

        pipe = Pipeline([], args.inflight)
        await connectProtocol(TCP4ClientEndpoint(reactor, host, port), pipe)
        t0 = time.perf_counter()
        response = await pipe.request_one(frame)
        elapsed = time.perf_counter() - t0
        assert response.code == ResponseCode.SUCCESS, response
        print(f"  over loopback TCP, send to response: {elapsed * 1000:.1f} ms")

        frames = []
        for i in range(args.inflight):
            cmd = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": f"BenchTopic{i:06d}"})
            frames.append(encode(cmd))
        pipe.frames = frames
        pipe.start()
        await sleep(1.0)
        start_count, t0 = pipe.answered, time.perf_counter()
        await sleep(args.seconds)
        count, elapsed = pipe.answered - start_count, time.perf_counter() - t0
        pipe.running = False
        print(
            f"GET_ROUTEINFO_BY_TOPIC: {count / elapsed:,.0f} requests/s "
            f"({args.inflight} in flight on one connection, {count} answered in {elapsed:.1f} s, "
            f"{pipe.errors} errors)"
        )
        assert pipe.transport is not None
        pipe.transport.loseConnection()
    finally:
        if server is not None:
            assert server.transport is not None
            server.transport.signalProcess("TERM")
            await server.ended


def serve() -> None:
    """Child mode: run a NameServer on a free loopback port and print ``PORT <n>``."""
    import tempfile

    from rmq.namesrv.config import NamesrvConfig
    from rmq.namesrv.service import build_namesrv_service

    tmp = tempfile.mkdtemp(prefix="rmq-namesrv-bench-")
    config = NamesrvConfig(kv_config_path=os.path.join(tmp, "kvConfig.json"), rocketmq_home=tmp)
    service = build_namesrv_service(
        config, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), reactor
    )
    service.startService()

    def listening(port: Any) -> None:
        sys.stdout.write(f"PORT {port.getHost().port}\n")
        sys.stdout.flush()

    service.when_listening().addCallback(listening)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--topics", type=int, default=100_000)
    parser.add_argument("--addr", help="benchmark this NameServer instead of a child rmq one")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    failures: list[Any] = []
    d = Deferred.fromCoroutine(run(args))
    d.addErrback(failures.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failures:
        failures[0].printTraceback()
        sys.exit(1)


if __name__ == "__main__":
    main()
