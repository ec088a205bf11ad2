"""Put loop for crash tests: ``python -m tests.store.crash_child ROOT [OUTSTANDING]``.

Opens a SYNC_FLUSH FileMessageStore on ROOT (small files, so they roll), prints ``READY`` and
then keeps OUTSTANDING puts in flight forever, printing ``ACK <seq> <queue offset> <phys>`` for
each PUT_OK. The parent kills it with SIGKILL and checks that every acknowledged put survived.
Message ``seq`` is its queue offset in topic ``Crash`` queue 0, body ``b"crash-<seq>" * k``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from rmq.common.asyncutil import global_reactor
from rmq.common.message import BrokerMessage, properties_to_string, tags_hash
from rmq.store.config import SYNC_FLUSH, MessageStoreConfig
from rmq.store.filestore import FileMessageStore
from rmq.store.interfaces import PutMessageResult, PutMessageStatus

TOPIC = "Crash"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def crash_config(root: str) -> MessageStoreConfig:
    """The store settings shared by the child and the checking parent."""
    return MessageStoreConfig(
        store_path_root_dir=root,
        flush_disk_type=SYNC_FLUSH,
        mapped_file_size_commit_log=256 * 1024,
        mapped_file_size_consume_queue=20 * 500,
        max_hash_slot_num=1000,
        max_index_num=4000,
    )


def crash_body(seq: int) -> bytes:
    """The body of message ``seq`` (varied length)."""
    return b"crash-%d|" % seq * (1 + seq % 37)


def crash_message(seq: int) -> BrokerMessage:
    """Message ``seq`` of the crash loop."""
    props = {"TAGS": "TagC", "KEYS": f"crash-{seq}"}
    return BrokerMessage(
        topic=TOPIC,
        queue_id=0,
        body=crash_body(seq),
        properties=props,
        properties_str=properties_to_string(props),
        tags_code=tags_hash("TagC"),
        born_host="127.0.0.1:1",
        store_host="127.0.0.1:10911",
    )


class _ChildProtocol(ProcessProtocol):
    """Collects ACK lines and kills the child with SIGKILL after ``kill_after`` of them."""

    def __init__(self, kill_after: int) -> None:
        self.kill_after = kill_after
        self.acked: dict[int, tuple[int, int]] = {}
        self.buf = b""
        self.errors: list[str] = []
        self.ended: Deferred[None] = Deferred()
        self.killed = False
        self.start_seq = -1

    def outReceived(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            parts = line.decode().split()
            if parts and parts[0] == "ACK":
                self.acked[int(parts[1])] = (int(parts[2]), int(parts[3]))
            elif parts and parts[0] == "READY":
                self.start_seq = int(parts[1])
            elif parts:
                self.errors.append(line.decode())
        if not self.killed and len(self.acked) >= self.kill_after:
            self.killed = True
            assert self.transport is not None
            pid = self.transport.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)

    def errReceived(self, data: bytes) -> None:
        self.errors.append(data.decode(errors="replace"))

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


async def run_cycle(
    reactor: Any, root: str, kill_after: int, outstanding: int = 8
) -> tuple[dict[int, tuple[int, int]], int, list[str]]:
    """Start the child on ``root``, SIGKILL it after ``kill_after`` acks; return
    ``(acked seq -> (queue offset, phys), first seq, unexpected output)``."""
    proto = _ChildProtocol(kill_after)
    root = os.path.abspath(root)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    reactor.spawnProcess(
        proto,
        sys.executable,
        [sys.executable, "-m", "tests.store.crash_child", root, str(outstanding)],
        env=env,
        path=REPO,
    )
    await proto.ended
    return proto.acked, proto.start_seq, proto.errors


def verify(root: str, acked: dict[int, tuple[int, int]]) -> tuple[int, list[int]]:
    """Open the store like a restarted broker would, check every acknowledged put is there
    (same queue offset, commit-log offset and body), close it again without cleanup.

    Returns ``(messages in the queue, missing or wrong seqs)``."""
    from twisted.internet.defer import maybeDeferred
    from twisted.internet.task import Clock

    from rmq.common.message import decode_messages

    clock = Clock()
    clock.advance(time.time())
    store = FileMessageStore(crash_config(root), clock, run_blocking=maybeDeferred)
    store.start()
    got: dict[int, tuple[int, int, bytes]] = {}
    off = store.get_min_offset_in_queue(TOPIC, 0)
    while True:
        g = store.get_messages_now(TOPIC, 0, off, 32)
        if not g.messages:
            break
        for m in decode_messages(g.body(), check_crc=True):
            got[m.queue_offset] = (m.queue_offset, m.commit_log_offset, m.body)
        off = g.next_begin_offset
    bad = [
        seq for seq, (qoff, phys) in acked.items() if got.get(qoff) != (qoff, phys, crash_body(seq))
    ]
    # the index must survive the kill too: look some acknowledged keys up
    sample = sorted(acked)[-5:] + sorted(acked)[:: max(1, len(acked) // 5)]
    for seq in sample:
        found: list[Any] = []
        store.query_message(TOPIC, f"crash-{seq}", 4, 0, 2**62).addCallback(found.append)
        bodies = [x.body for x in decode_messages(found[0].body())] if found else []
        if bodies != [crash_body(seq)]:
            bad.append(seq)
    total = store.get_max_offset_in_queue(TOPIC, 0)
    # leave the store as a crash would (abort stays), so the next cycle recovers abnormally
    store.running = False
    for loop in store._loops:
        if loop.running:
            loop.stop()
    store.commitlog.close()
    for cq in store._cqs.values():
        cq.close()
    store.index.close(write_headers=False)
    if store._lock_fd is not None:
        os.close(store._lock_fd)
    return total, sorted(set(bad))


def main(argv: list[str]) -> None:
    """Run the put loop until killed."""
    root = argv[1]
    outstanding = int(argv[2]) if len(argv) > 2 else 8
    reactor: Any = global_reactor()
    store = FileMessageStore(crash_config(root), reactor)
    out = sys.stdout

    def put_next() -> None:
        seq = state["next"]
        state["next"] += 1
        store.put_message(crash_message(seq)).addCallback(acked, seq)

    def acked(r: PutMessageResult, seq: int) -> None:
        if r.status is PutMessageStatus.PUT_OK:
            if r.queue_offset != seq:
                out.write(f"MISMATCH {seq} {r.queue_offset}\n")
            out.write(f"ACK {seq} {r.queue_offset} {r.wrote_offset}\n")
            out.flush()
        put_next()

    state = {"next": 0}

    def started(_: object) -> None:
        state["next"] = store.get_max_offset_in_queue(TOPIC, 0)
        out.write(f"READY {state['next']}\n")
        out.flush()
        for _ in range(outstanding):
            put_next()

    def failed(f: Any) -> None:
        out.write(f"ERROR {f.getErrorMessage()}\n")
        out.flush()
        reactor.stop()

    reactor.callWhenRunning(lambda: store.start().addCallbacks(started, failed))
    reactor.addSystemEventTrigger("before", "shutdown", store.stop)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
