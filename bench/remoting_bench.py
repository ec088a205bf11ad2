"""Remoting codec and protocol throughput (frames per second).

Run: ``.venv/bin/python bench/remoting_bench.py [--seconds 2]``

Measures, on a SEND_MESSAGE_V2-like request (Java's one-letter header keys, a properties string
with UNIQ_KEY/WAIT/TAGS, a 256-byte body) and a SEND_MESSAGE response:

- ``encode`` / ``decode`` of the request in each header serialization;
- ``request round`` = decode the request + build and encode the response (the broker hot path);
- ``protocol`` = the same through ``RemotingProtocol.dataReceived`` with a trivial processor,
  frames arriving 64 at a time (framing, dispatch and the write included).

Each figure is the best of 5 rounds (a busy machine only ever makes a round slower).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress, ITransport
from twisted.internet.task import Clock
from zope.interface import implementer

from rmq.remoting.codec import decode, encode
from rmq.remoting.codes import RequestCode, ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.dispatch import Dispatcher, FunctionProcessor
from rmq.remoting.protocol import RemotingProtocol


def send_request(serialize_type: int) -> RemotingCommand:
    """A request shaped like the Java client's SEND_MESSAGE_V2 (vectors/java-send-v2.req)."""
    req = new_request(
        RequestCode.SEND_MESSAGE_V2,
        {
            "a": "PG_JAVA",
            "b": "TopicJ",
            "c": "TBW102",
            "d": "4",
            "e": "1",
            "f": "0",
            "g": "1795295119221",
            "h": "0",
            "i": "KEYS\x01k1 k2\x02UNIQ_KEY\x01"
            "FD0000000000000000000000000000024A1530946E096B859F6C0000"
            "\x02WAIT\x01true\x02TAGS\x01TagA",
            "j": "0",
            "k": "false",
            "m": "false",
            "n": "broker-a",
        },
        body=bytes(range(256)),
    )
    req.serialize_type = serialize_type
    return req


def send_response(request: RemotingCommand) -> RemotingCommand:
    """A SEND_MESSAGE response like a 4.9.7 broker's."""
    return new_response(
        request,
        ResponseCode.SUCCESS,
        ext_fields={
            "msgId": "7F00000100009FCF0000000000000000",
            "queueId": "1",
            "queueOffset": "0",
            "TRACE_ON": "true",
            "MSG_REGION": "DefaultRegion",
        },
    )


def rate(fn: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Best calls/s of ``fn`` over ``rounds`` rounds lasting ``seconds`` in total.

    The best round is reported because a shared machine only ever slows a round down.
    """
    best = 0.0
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(200):
                fn()
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


@implementer(ITransport)
class _NullTransport:
    """Counts written bytes; enough of ITransport for RemotingProtocol."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:  # noqa: N802
        self.written += sum(map(len, data))

    def loseConnection(self) -> None:  # noqa: N802
        raise AssertionError("the benchmark connection must not be closed")

    def getPeer(self) -> IAddress:  # noqa: N802
        return IPv4Address("TCP", "127.0.0.1", 1)

    def getHost(self) -> IAddress:  # noqa: N802
        return IPv4Address("TCP", "127.0.0.1", 2)


def measure(serialize_type: int, seconds: float) -> list[tuple[str, float]]:
    """(label, frames/s) for each measurement in one header serialization."""
    req = send_request(serialize_type)
    frame = encode(req)
    payload = frame[4:]
    resp = send_response(req)

    def request_round() -> bytes:
        return encode(send_response(decode(payload)))

    dispatcher = Dispatcher(
        {RequestCode.SEND_MESSAGE_V2: FunctionProcessor(lambda c, r: send_response(r))}
    )
    proto = RemotingProtocol(dispatcher, Clock())
    proto.makeConnection(_NullTransport())  # type: ignore[arg-type]
    chunk = frame * 64
    return [
        ("encode request", rate(lambda: encode(req), seconds)),
        ("decode request", rate(lambda: decode(payload), seconds)),
        ("encode response", rate(lambda: encode(resp), seconds)),
        ("request round", rate(request_round, seconds)),
        ("protocol (64/read)", 64 * rate(lambda: proto.dataReceived(chunk), seconds / 4)),
    ]


def main(argv: list[str] | None = None) -> int:
    """Print frames/s for each measurement."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args(argv)
    s = args.seconds
    print(f"python {sys.version.split()[0]}, {s:.1f} s per measurement")
    for st in (SerializeType.JSON, SerializeType.ROCKETMQ):
        name = SerializeType(st).name
        print(f"{name:8} request frame: {len(encode(send_request(st)))} bytes")
        for label, frames_per_s in measure(st, s):
            print(f"{name:8} {label:20} {frames_per_s:>12,.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
