"""Client CPU per send, without a network: rmq's Producer over a real RemotingProtocol.

The producer's requests go through the real remoting protocol into a StringTransport; a tiny
in-process "broker" decodes each request frame and answers it with an encoded SEND_MESSAGE_V2
response frame fed back through ``dataReceived``, ``--inflight`` requests per round (its own
CPU time is measured and subtracted). Timers go to the (not running) global reactor, whose heap
behaves as in production (``task.Clock`` re-sorts its list on every ``callLater``); they are all
cancelled by the answers and never fire. Prints the process CPU time per
send (``time.process_time``), best of ``--repeat`` runs: the client's own cost (producer,
client API, remoting protocol and codec both ways), no kernel, no broker.

    .venv/bin/python bench/client_send_cpu.py -n 20000 --inflight 64
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport

from rmq.client import Producer, new_message
from rmq.common import fastjson
from rmq.common.asyncutil import global_reactor
from rmq.remoting.codec import decode, encode
from rmq.remoting.codes import RequestCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.protocol import RemotingProtocol

NAMESRV = "127.0.0.1:9876"
BROKER = "127.0.0.1:10911"


class Loopback:
    """IRemoting for the producer: route answers in memory, sends over a RemotingProtocol."""

    def __init__(self, clock: Any) -> None:
        self.proto = RemotingProtocol(None, clock)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 10911))
        self.proto.makeConnection(self.transport)
        self.offset = 0
        self.broker_cpu = 0.0

    def invoke(self, addr: str, command: RemotingCommand, timeout: float = 3.0) -> Any:
        if addr == NAMESRV:
            assert command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC
            route = {
                "brokerDatas": [
                    {"brokerAddrs": {0: BROKER}, "brokerName": "broker-a", "cluster": "C"}
                ],
                "queueDatas": [
                    {
                        "brokerName": "broker-a",
                        "perm": 6,
                        "readQueueNums": 4,
                        "topicSysFlag": 0,
                        "writeQueueNums": 4,
                    }
                ],
            }
            return succeed(new_response(command, body=fastjson.dumps(route)))
        return self.proto.invoke(command, timeout)

    def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def answer(self) -> int:
        """Answer every request written so far (the fake broker's CPU time is kept apart in
        ``broker_cpu``); return how many."""
        t0 = time.process_time()
        data = self.transport.value()
        self.transport.clear()
        out = []
        pos = 0
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 4], "big")
            req = decode(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
            if req.code != RequestCode.SEND_MESSAGE_V2:
                out.append(encode(new_response(req)))
                continue
            qid = req.ext_fields["e"]
            resp = new_response(
                req,
                ext_fields={
                    "msgId": f"7F00000100002A9F{self.offset:016X}",
                    "queueId": qid,
                    "queueOffset": str(self.offset),
                    "MSG_REGION": "DefaultRegion",
                    "TRACE_ON": "true",
                },
            )
            self.offset += 1
            out.append(encode(resp))
        frames = b"".join(out)
        self.broker_cpu += time.process_time() - t0
        if frames:
            self.proto.dataReceived(frames)
        return len(out)


def run(n: int, inflight: int, size: int) -> float:
    """CPU seconds per send for ``n`` sends, ``inflight`` at a time."""
    clock = global_reactor()
    loop: Loopback | None = None

    def factory(c: Any, handler: Any) -> Loopback:
        nonlocal loop
        loop = Loopback(clock)
        return loop

    p = Producer("PG", NAMESRV, clock, remoting_factory=factory, client_ip="127.0.0.1")
    p.start()
    assert loop is not None
    body = b"x" * size
    done = 0
    failed: list[Any] = []
    start = time.process_time()
    while done < n:
        ds = [p.send(new_message("BenchT", body)) for _ in range(min(inflight, n - done))]
        for d in ds:
            d.addErrback(failed.append)
        loop.answer()
        done += len(ds)
    spent = time.process_time() - start - loop.broker_cpu
    if failed:
        raise SystemExit(f"{len(failed)} sends failed: {failed[0]}")
    p.shutdown()
    return spent / n


def main() -> None:
    """Parse arguments, run, print µs per send."""
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("-n", type=int, default=20000, help="sends per run")
    a.add_argument("--inflight", type=int, default=64)
    a.add_argument("-s", "--size", type=int, default=1024, help="body bytes")
    a.add_argument("--repeat", type=int, default=5)
    args = a.parse_args()
    best = min(run(args.n, args.inflight, args.size) for _ in range(args.repeat))
    print(f"client CPU per send: {best * 1e6:.1f} us (best of {args.repeat} x {args.n} sends)")


if __name__ == "__main__":
    main()
