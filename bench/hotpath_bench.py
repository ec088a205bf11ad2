"""Broker hot path in process: CPU per SEND and per PULL request, sockets left out.

Run: ``.venv/bin/python bench/hotpath_bench.py [--count 20000] [--rounds 5] [--sync]``

A whole broker (``build_broker`` with the real ``FileMessageStore`` in a temp directory, the
arrival listeners and counters the service installs) behind one ``RemotingProtocol`` on an
in-memory transport. Requests are the C++ client's (rocketmq-client-cpp 1.0.1) frames from the
shared vectors with a 1 KiB body and a fresh UNIQ_KEY per message, handed to ``dataReceived``
one frame per call, as one send_sync thread delivers them:

- ``send``: SEND_MESSAGE (code 10, JSON header): decode, checks, record built and appended,
  consume queue + index dispatch, arrival listeners, response encoded and written;
- ``pull``: PULL_MESSAGE of 32 messages (the C++ PushConsumer's batch) over the queue filled by
  ``send``: decode, checks, store read, response with the stored records as its body.

It reports CPU microseconds per request (``time.process_time``, best of ``--rounds``; a busy
machine only ever makes a round slower). With ``--sync`` the store runs SYNC_FLUSH and the fsyncs
run inline (their cost is included; the group commit answers each put after its own fsync).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import tempfile
import time
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress
from twisted.internet.task import Clock

from rmq.broker.config import BrokerConfig
from rmq.broker.service import build_broker
from rmq.remoting.protocol import RemotingServerFactory
from rmq.store.config import MessageStoreConfig
from rmq.store.filestore import FileMessageStore

VECTORS = os.environ.get("RMQ_VECTORS", "/work/shared/vectors")
_FRAME = struct.Struct(">iI")


class CountingTransport:
    """Just enough of ITransport for RemotingProtocol: counts writes and bytes."""

    def __init__(self) -> None:
        self.writes = 0
        self.bytes = 0
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        """Count one write."""
        self.writes += 1
        self.bytes += len(data)

    def writeSequence(self, seq: list[bytes]) -> None:  # noqa: N802 - Twisted's name
        """Count one write of the joined buffers."""
        self.writes += 1
        self.bytes += sum(len(b) for b in seq)

    def getPeer(self) -> IAddress:  # noqa: N802 - Twisted's name
        """The C++ client's address."""
        return IPv4Address("TCP", "127.0.0.1", 50123)

    def getHost(self) -> IAddress:  # noqa: N802 - Twisted's name
        """The broker's address."""
        return IPv4Address("TCP", "127.0.0.1", 10911)

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        """Nothing to close."""
        self.disconnecting = True


def _vector_header(name: str) -> dict[str, Any]:
    with open(os.path.join(VECTORS, name)) as f:
        frame = bytes.fromhex(f.read().strip())
    header_length = struct.unpack_from(">I", frame, 4)[0] & 0xFFFFFF
    header: dict[str, Any] = json.loads(frame[8 : 8 + header_length])
    return header


def _frame(header: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return _FRAME.pack(4 + len(text) + len(body), len(text)) + text + body


def send_frames(count: int, topic: str, size: int) -> list[bytes]:
    """cpp SEND_MESSAGE frames with ``size``-byte bodies and distinct UNIQ_KEYs."""
    header = _vector_header("cpp-send-message.req.hex")
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    props = header["extFields"]["properties"]
    props = re.sub("KEYS\x01[^\x02]*\x02", "", props)  # the benchmark sends no keys
    frames = []
    for i in range(count):
        header["opaque"] = i + 1
        header["extFields"]["topic"] = topic
        header["extFields"]["properties"] = re.sub(
            "UNIQ_KEY\x01[0-9A-F]+", f"UNIQ_KEY\x010100007F0000D0A3{i:016X}", props
        )
        frames.append(_frame(header, body))
    return frames


def pull_frames(count: int, topic: str, batch: int, group: str) -> list[bytes]:
    """cpp PULL_MESSAGE frames walking queue 0 of ``topic`` ``batch`` messages at a time."""
    header = _vector_header("cpp-pull.req.hex")
    frames = []
    for i in range(count):
        ext = header["extFields"]
        header["opaque"] = i + 1
        ext.update(
            topic=topic,
            consumerGroup=group,
            queueId=0,
            queueOffset=str(i * batch),
            maxMsgNums=batch,
            sysFlag=2,  # SUSPEND only, the subscription comes from the (test-made) heartbeat
            subscription="*",
        )
        ext["sysFlag"] = 6  # SUSPEND | SUBSCRIPTION: no heartbeat needed
        frames.append(_frame(header, b""))
    return frames


class Harness:
    """A broker with a file store behind one protocol on a CountingTransport."""

    def __init__(self, root: str, sync: bool) -> None:
        self.clock = Clock()
        store_config = MessageStoreConfig(
            store_path_root_dir=root,
            flush_disk_type="SYNC_FLUSH" if sync else "ASYNC_FLUSH",
        )

        def run_inline(f: Any, *args: Any) -> Deferred[Any]:
            return maybeDeferred(f, *args)

        self.store = FileMessageStore(store_config, self.clock, run_blocking=run_inline)
        config = BrokerConfig(store_path_root_dir=root)
        from tests.broker.support import FakeNameServerClient

        self.broker = build_broker(
            config, self.clock, self.store, FakeNameServerClient(), store_config=store_config
        )
        self.store.start()
        self.store.add_arrival_listener(self.broker.hold.on_arrival)
        if self.broker.stats is not None:
            self.broker.stats.store_started(self.store.add_arrival_listener)
        factory = RemotingServerFactory(self.broker.dispatcher, self.clock)
        self.proto = factory.buildProtocol(None)
        self.transport = CountingTransport()
        self.proto.makeConnection(self.transport)  # type: ignore[arg-type]

    def feed(self, frames: list[bytes]) -> float:
        """CPU seconds to hand every frame to ``dataReceived`` (one call per frame)."""
        data_received = self.proto.dataReceived
        t0 = time.process_time()
        for frame in frames:
            data_received(frame)
        return time.process_time() - t0

    def close(self) -> None:
        """Stop the store."""
        self.store.stop()


def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="sends per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32, help="maxMsgNums of each pull")
    parser.add_argument("--sync", action="store_true", help="SYNC_FLUSH store, inline fsync")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="rmq-hotpath-")
    try:
        h = Harness(os.path.join(root, "store"), args.sync)
        send_best = pull_best = float("inf")
        sent = 0
        for r in range(args.rounds):
            topic = f"HotPath{r}"
            frames = send_frames(args.count, topic, args.size)
            writes = h.transport.writes
            send_best = min(send_best, h.feed(frames) / len(frames))
            answered = h.transport.writes - writes
            sent += len(frames)
            pulls = pull_frames(args.count // args.batch, topic, args.batch, "hotpath_group")
            written = h.transport.bytes
            pull_best = min(pull_best, h.feed(pulls) / len(pulls))
            per_pull = (h.transport.bytes - written) / max(1, len(pulls))
            print(
                f"round {r}: {answered} send answers, {len(pulls)} pulls of "
                f"{per_pull:,.0f} bytes each"
            )
        mode = "SYNC_FLUSH (inline fsync)" if args.sync else "ASYNC_FLUSH"
        print(f"store {mode}, {args.size} B bodies, best of {args.rounds} rounds")
        print(f"send: {send_best * 1e6:6.1f} us CPU per request ({1 / send_best:,.0f}/s)")
        print(
            f"pull: {pull_best * 1e6:6.1f} us CPU per request of {args.batch} messages "
            f"({pull_best * 1e6 / args.batch:.2f} us per message, "
            f"{args.batch / pull_best:,.0f} msgs/s)"
        )
        h.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
