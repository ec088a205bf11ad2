"""FileMessageStore: contract suite, on-disk layout, group commit, recovery and retention."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.message import decode_messages
from rmq.store.config import SYNC_FLUSH, MessageStoreConfig
from rmq.store.filestore import MAX_COMMITS, FileMessageStore, _write_deleted_sync
from rmq.store.interfaces import GetMessageStatus, PutMessageStatus
from rmq.store.mappedfile import fdatasync_all
from tests.store.contract import T0, IMessageStoreContract, make_msg


def run_now(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run a blocking call synchronously (deterministic tests)."""
    return maybeDeferred(f, *args)


def simulate_crash(store: FileMessageStore) -> None:
    """Close a store like kill -9 would: no flush, no checkpoint, ``abort`` left in place."""
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
        store._lock_fd = None


class HeldRunner:
    """fsyncs wait in a list until the test releases them (to observe group commit)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if f is not fdatasync_all:  # only fsyncs are held; pre-faulting runs at once
            return maybeDeferred(f, *args)
        d: Deferred[Any] = Deferred()
        self.calls.append((f, args, d))
        return d

    def release_one(self) -> None:
        """Run the oldest held call and fire its Deferred."""
        f, args, d = self.calls.pop(0)
        d.callback(f(*args))

    def release_at(self, i: int) -> None:
        """Run the ``i``-th held call (0 = oldest) and fire its Deferred."""
        f, args, d = self.calls.pop(i)
        d.callback(f(*args))

    def release_all(self) -> None:
        """Run held calls until none is left."""
        while self.calls:
            self.release_one()


def small_config(root: str, **kw: Any) -> MessageStoreConfig:
    """A config with small files so tests roll files."""
    base: dict[str, Any] = {
        "store_path_root_dir": root,
        "mapped_file_size_commit_log": 64 * 1024,
        "mapped_file_size_consume_queue": 20 * 50,
        "max_hash_slot_num": 64,
        "max_index_num": 200,
    }
    base.update(kw)
    return MessageStoreConfig(**base)


class FileStoreTestBase(SynchronousTestCase):
    """Helpers to open and reopen stores in a temp dir."""

    def open_store(
        self, clock: Clock, root: str | None = None, runner: Any = run_now, **kw: Any
    ) -> FileMessageStore:
        """Open a started store (closed at cleanup)."""
        self.root = root or getattr(self, "root", None) or self.mktemp()
        store = FileMessageStore(
            small_config(self.root, **kw),
            clock,
            run_blocking=runner,
            disk_usage=lambda path: self.disk_ratio,
        )
        self.successResultOf(store.start())
        self.addCleanup(self._close, store, runner)
        return store

    disk_ratio = 0.10

    def _close(self, store: FileMessageStore, runner: Any = None) -> None:
        if store.running:
            d = store.stop()
            if isinstance(runner, HeldRunner):
                runner.release_all()
            self.successResultOf(d)

    def crash(self, store: FileMessageStore) -> None:
        """Simulate kill -9: stop timers, close files without flushing or removing abort."""
        simulate_crash(store)


class FileMessageStoreContractTests(IMessageStoreContract, FileStoreTestBase):
    """The contract suite on the file store (ASYNC_FLUSH)."""

    def make_store(self, clock: Clock) -> Any:
        """A started file store on a temp dir."""
        return self.open_store(
            clock, max_hash_slot_num=1000, max_index_num=1000, mapped_file_size_commit_log=1 << 20
        )


class FileMessageStoreSyncContractTests(IMessageStoreContract, FileStoreTestBase):
    """The contract suite on the file store under SYNC_FLUSH (fsync inline)."""

    def make_store(self, clock: Clock) -> Any:
        """A started SYNC_FLUSH file store on a temp dir."""
        return self.open_store(
            clock,
            flush_disk_type=SYNC_FLUSH,
            max_hash_slot_num=1000,
            max_index_num=1000,
            mapped_file_size_commit_log=1 << 20,
        )


class LayoutTests(FileStoreTestBase):
    """Files on disk follow RocketMQ's layout."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)

    def test_files_and_roll(self) -> None:
        """Commit-log files are named by start offset; a record that does not fit gets a blank."""
        s = self.open_store(self.clock)
        body = b"x" * 3000
        n = 60
        for _ in range(n):
            self.successResultOf(s.put_message(make_msg(body=body, keys="k")))
        names = sorted(os.listdir(os.path.join(self.root, "commitlog")))
        self.assertEqual(names[:3], [f"{i * 65536:020d}" for i in range(3)])
        with open(os.path.join(self.root, "commitlog", names[0]), "rb") as f:
            data = f.read()
        size = 91 + 3000 + 1 + len("TAGS\x01TagA\x02KEYS\x01k")
        per_file = 65536 // size if (65536 // size) * size + 8 <= 65536 else 65536 // size - 1
        blank_at = per_file * size
        self.assertEqual(struct.unpack_from(">ii", data, blank_at), (65536 - blank_at, -875286124))
        g = self.successResultOf(s.get_messages("T", 0, 0, 100))
        self.assertEqual(len(g.messages), 60 if 60 * size < 256 * 1024 else g.message_count)
        cqdir = os.path.join(self.root, "consumequeue", "T", "0")
        self.assertEqual(sorted(os.listdir(cqdir)), [f"{0:020d}", f"{1000:020d}"])
        self.assertTrue(os.path.exists(os.path.join(self.root, "abort")))
        self.successResultOf(s.flush())  # index entries are written in batches
        self.assertEqual(len(os.listdir(os.path.join(self.root, "index"))), 1)
        self.successResultOf(s.stop())
        self.assertFalse(os.path.exists(os.path.join(self.root, "abort")))
        with open(os.path.join(self.root, "checkpoint"), "rb") as f:
            cp = f.read()
        self.assertEqual(len(cp), 4096)
        self.assertEqual(struct.unpack_from(">q", cp, 0)[0], int(T0 * 1000))

    def test_reopen_clean(self) -> None:
        """After a clean stop the store reopens with the same queues, offsets and index."""
        s = self.open_store(self.clock)
        for i in range(30):
            self.successResultOf(
                s.put_message(make_msg(queue_id=i % 3, body=b"b%d" % i, keys=f"key{i}"))
            )
        end = s.get_max_phy_offset()
        self.successResultOf(s.stop())
        s2 = self.open_store(self.clock)
        self.assertFalse(s2.recovered_abnormally)
        self.assertEqual(s2.get_max_phy_offset(), end)
        self.assertEqual(s2.get_max_offset_in_queue("T", 1), 10)
        r = self.successResultOf(s2.put_message(make_msg(queue_id=1)))
        self.assertEqual((r.wrote_offset, r.queue_offset), (end, 10))
        q = self.successResultOf(s2.query_message("T", "key7", 10, 0, 2**62))
        self.assertEqual([m.body for m in decode_messages(q.body())], [b"b7"])

    def test_second_open_locked(self) -> None:
        """A second store on the same directory is refused while the first runs."""
        self.open_store(self.clock)
        other = FileMessageStore(small_config(self.root), self.clock, run_blocking=run_now)
        self.failureResultOf(other.start(), RuntimeError)

    def _new_threads(self, before: set[threading.Thread]) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.is_alive()]

    def test_failed_start_stops_flush_pool(self) -> None:
        """A start that fails after the flush pool started stops the pool (no thread is left to
        keep the process alive), closes the files and releases the directory lock."""
        before = set(threading.enumerate())
        root = self.mktemp()

        def broken_probe(path: str) -> float:
            raise ZeroDivisionError("probe bug")

        store = FileMessageStore(
            small_config(root), self.clock, reactor=self.clock, disk_usage=broken_probe
        )
        self.failureResultOf(store.start(), ZeroDivisionError)
        self.assertIsNone(store._pool)
        self.assertFalse(store.running)
        self.assertEqual(self._new_threads(before), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # the lock is free: a healthy store opens the same directory
        s2 = self.open_store(self.clock, root=root)
        self.assertEqual(s2.commitlog.max_offset, 0)

    def test_failed_start_on_bad_directory_leaves_nothing(self) -> None:
        """A store rooted at a regular file, or at a locked directory, fails to start without
        starting a thread."""
        before = set(threading.enumerate())
        path = self.mktemp()
        with open(path, "wb"):
            pass
        bad = FileMessageStore(small_config(path), self.clock, reactor=self.clock)
        self.failureResultOf(bad.start(), OSError)
        self.open_store(self.clock)
        locked = FileMessageStore(small_config(self.root), self.clock, reactor=self.clock)
        self.failureResultOf(locked.start(), RuntimeError)
        for s in (bad, locked):
            self.assertIsNone(s._pool)
            self.assertIsNone(s._lock_fd)
        self.assertEqual(self._new_threads(before), [])


class GroupCommitTests(FileStoreTestBase):
    """SYNC_FLUSH answers puts by group commit."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.runner = HeldRunner()
        self.store = self.open_store(self.clock, runner=self.runner, flush_disk_type=SYNC_FLUSH)
        self.runner.release_all()

    def test_one_fsync_answers_all_earlier_puts(self) -> None:
        """A put made while an fsync runs starts the next one at once (at most MAX_COMMITS run),
        an fsync answers every put appended before it started, completions apply in order,
        and nothing is visible before its fsync."""
        ds = []
        for i in range(MAX_COMMITS):
            ds.append(self.store.put_message(make_msg(body=b"%d" % i)))
            self.assertEqual(len(self.runner.calls), i + 1)  # pipelined
        late = [self.store.put_message(make_msg(body=b"late")) for _ in range(2)]
        self.assertEqual(len(self.runner.calls), MAX_COMMITS)
        for d in ds + late:
            self.assertNoResult(d)
        # consumers see nothing before the flush
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 0)
        # the second fsync returns first: nothing is answered until the first returns
        self.runner.release_at(1)
        self.assertNoResult(ds[0])
        self.assertNoResult(ds[1])
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 0)
        self.runner.release_one()
        self.assertEqual(self.successResultOf(ds[0]).status, PutMessageStatus.PUT_OK)
        self.assertEqual(self.successResultOf(ds[1]).status, PutMessageStatus.PUT_OK)
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 2)
        # one more fsync started, for both late puts
        self.assertEqual(len(self.runner.calls), MAX_COMMITS - 1)
        while len(self.runner.calls) > 1:
            self.runner.release_one()
        self.assertNoResult(late[0])
        self.runner.release_one()
        self.assertEqual(self.successResultOf(late[0]).status, PutMessageStatus.PUT_OK)
        self.assertEqual(self.successResultOf(late[1]).status, PutMessageStatus.PUT_OK)
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), MAX_COMMITS + 2)
        self.assertEqual(self.runner.calls, [])

    def test_answer_callbacks_share_the_next_fsync(self) -> None:
        """Puts made by the callbacks of answered puts are appended at once and answered only
        once durable; puts waiting together share one fsync; at most MAX_COMMITS run."""
        follow: list[Deferred[Any]] = []
        durable: list[bool] = []

        def check(r: Any) -> None:
            durable.append(self.store._flushed >= r.wrote_offset + r.wrote_bytes)

        def again(r: Any) -> None:
            check(r)
            d = self.store.put_message(make_msg(body=b"again"))
            follow.append(d)
            d.addCallback(check)

        for i in range(10):
            self.store.put_message(make_msg(body=b"%d" % i)).addCallback(again)
        fsyncs = 0
        while self.runner.calls:
            self.assertLessEqual(len(self.runner.calls), MAX_COMMITS)
            self.runner.release_one()
            fsyncs += 1
        self.assertEqual(len(follow), 10)
        self.assertEqual(durable, [True] * 20)
        self.assertLess(fsyncs, 20)
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 20)

    def test_failed_fsync_answers_nobody(self) -> None:
        """When an fsync fails, neither it nor a later fsync that was already running answers
        its puts; the next put's fsync covers every file again and answers them all."""
        d1 = self.store.put_message(make_msg(body=b"1"))
        d2 = self.store.put_message(make_msg(body=b"2"))
        self.assertEqual(len(self.runner.calls), 2)
        _f, _args, first = self.runner.calls.pop(0)
        first.errback(OSError(5, "EIO"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.runner.release_one()  # started before the failure: proves nothing
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 0)
        d3 = self.store.put_message(make_msg(body=b"3"))
        f, args, _d = self.runner.calls[0]
        self.assertEqual(len(args[0]), 1)  # the commit-log file, synced again
        self.runner.release_all()
        for d in (d1, d2, d3):
            self.assertEqual(self.successResultOf(d).status, PutMessageStatus.PUT_OK)
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 3)

    def test_flush_timeout(self) -> None:
        """A put not flushed within syncFlushTimeout is answered FLUSH_DISK_TIMEOUT."""
        d = self.store.put_message(make_msg())
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        r = self.successResultOf(d)
        self.assertEqual(r.status, PutMessageStatus.FLUSH_DISK_TIMEOUT)
        self.runner.release_all()
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 1)
        self.assertIsNone(self.store._timeout_call)

    def test_wait_false(self) -> None:
        """A put with WAIT=false is answered at once but stays invisible until flushed."""
        d = self.store.put_message(make_msg(props={"WAIT": "false"}))
        self.assertEqual(self.successResultOf(d).status, PutMessageStatus.PUT_OK)
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 0)
        self.runner.release_all()
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 1)


class RecoveryTests(FileStoreTestBase):
    """Crash recovery: torn tails, bad CRCs, consume queues past the log end."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)

    def _fill(self, n: int = 5) -> tuple[FileMessageStore, list[int]]:
        s = self.open_store(self.clock)
        offs = []
        for i in range(n):
            r = self.successResultOf(s.put_message(make_msg(body=b"body-%d" % i, keys=f"k{i}")))
            offs.append(r.wrote_offset)
        return s, offs

    def _cl_file(self) -> str:
        return os.path.join(self.root, "commitlog", f"{0:020d}")

    def test_cut_last_record_at_every_byte(self) -> None:
        """Cutting the last record anywhere keeps earlier records, serves no partial one, and
        accepts new puts right after the last whole record."""
        s, offs = self._fill(3)
        # a query writes the batched index entries: the copied index then points at the torn one
        self.successResultOf(s.query_message("T", "k0", 1, 0, 2**62))
        end = s.get_max_phy_offset()
        self.crash(s)
        with open(self._cl_file(), "rb") as f:
            original = f.read()
        last = offs[-1]
        for cut in range(last, end):
            root = self.mktemp()
            os.makedirs(os.path.join(root, "commitlog"))
            data = bytearray(original)
            data[cut:end] = bytes(end - cut)
            with open(os.path.join(root, "commitlog", f"{0:020d}"), "wb") as f:
                f.write(data)
            # keep the consume queue that points at the torn record
            import shutil

            shutil.copytree(
                os.path.join(self.root, "consumequeue"), os.path.join(root, "consumequeue")
            )
            if os.path.isdir(os.path.join(self.root, "index")):  # not yet written: batched
                shutil.copytree(os.path.join(self.root, "index"), os.path.join(root, "index"))
            open(os.path.join(root, "abort"), "wb").close()
            s2 = self.open_store(self.clock, root=root)
            self.assertTrue(s2.recovered_abnormally)
            self.assertEqual(s2.get_max_phy_offset(), last, cut)
            self.assertEqual(s2.get_max_offset_in_queue("T", 0), 2)
            g = self.successResultOf(s2.get_messages("T", 0, 0, 32))
            self.assertEqual(
                [m.body for m in decode_messages(g.body(), check_crc=True)], [b"body-0", b"body-1"]
            )
            r = self.successResultOf(s2.put_message(make_msg(body=b"new")))
            self.assertEqual((r.wrote_offset, r.queue_offset), (last, 2))
            g = self.successResultOf(s2.get_messages("T", 0, 2, 32))
            self.assertEqual([m.body for m in decode_messages(g.body())], [b"new"])
            q = self.successResultOf(s2.query_message("T", "k2", 10, 0, 2**62))
            self.assertEqual(q.messages, [])
            self.successResultOf(s2.stop())

    def test_corrupt_crc(self) -> None:
        """A record with a bad body CRC ends the log there; earlier ones survive."""
        s, offs = self._fill(5)
        self.crash(s)
        with open(self._cl_file(), "r+b") as f:
            f.seek(offs[3] + 90)
            b = f.read(1)
            f.seek(offs[3] + 90)
            f.write(bytes([b[0] ^ 0xFF]))
        s2 = self.open_store(self.clock)
        self.assertEqual(s2.get_max_phy_offset(), offs[3])
        self.assertEqual(s2.get_max_offset_in_queue("T", 0), 3)
        r = self.successResultOf(s2.put_message(make_msg(body=b"after")))
        self.assertEqual(r.queue_offset, 3)
        g = self.successResultOf(s2.get_messages("T", 0, 0, 32))
        self.assertEqual(
            [m.body for m in decode_messages(g.body(), check_crc=True)],
            [b"body-0", b"body-1", b"body-2", b"after"],
        )

    def test_index_survives_crash_between_flushes(self) -> None:
        """Keys indexed after the last flush are still found after a crash, and so are older
        keys sharing their hash slots (4 slots: every chain is long)."""
        s = self.open_store(self.clock, max_hash_slot_num=4, max_index_num=400)
        for i in range(10):
            self.successResultOf(s.put_message(make_msg(body=b"early-%d" % i, keys=f"e{i}")))
        self.successResultOf(s.flush())
        for i in range(10):
            self.successResultOf(s.put_message(make_msg(body=b"late-%d" % i, keys=f"l{i}")))
        self.crash(s)
        s2 = self.open_store(self.clock, max_hash_slot_num=4, max_index_num=400)
        for prefix, body in (("e", b"early-%d"), ("l", b"late-%d")):
            for i in range(10):
                q = self.successResultOf(s2.query_message("T", f"{prefix}{i}", 10, 0, 2**62))
                self.assertEqual([m.body for m in decode_messages(q.body())], [body % i])

    def test_rebuild_lost_consume_queue_and_index(self) -> None:
        """After a crash with the consume queue and index gone, both are rebuilt from the log."""
        s, offs = self._fill(10)
        self.crash(s)
        import shutil

        shutil.rmtree(os.path.join(self.root, "consumequeue"))
        shutil.rmtree(os.path.join(self.root, "index"), ignore_errors=True)
        s2 = self.open_store(self.clock)
        self.assertEqual(s2.get_max_offset_in_queue("T", 0), 10)
        q = self.successResultOf(s2.query_message("T", "k4", 10, 0, 2**62))
        self.assertEqual([m.body for m in decode_messages(q.body())], [b"body-4"])


class RetentionTests(FileStoreTestBase):
    """Expired files are deleted; a full disk refuses puts."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)

    def _age_files(self, hours: float) -> None:
        for name in os.listdir(os.path.join(self.root, "commitlog")):
            t = self.clock.seconds() - hours * 3600
            os.utime(os.path.join(self.root, "commitlog", name), (t, t))

    def test_delete_when_over_ratio(self) -> None:
        """Above diskMaxUsedSpaceRatio, expired files go at once, never the current one; queue
        minimum offsets move up, reads of deleted data report OFFSET_TOO_SMALL, and index files
        wholly below the new minimum are gone."""
        s = self.open_store(self.clock, max_index_num=11)  # 10 entries per index file
        for i in range(60):
            self.successResultOf(s.put_message(make_msg(body=b"x" * 3000, keys=f"r{i}")))
        index_dir = os.path.join(self.root, "index")
        self.successResultOf(s.flush())  # index entries are written in batches
        self.assertEqual(len(os.listdir(index_dir)), 6)
        files = sorted(os.listdir(os.path.join(self.root, "commitlog")))
        self.assertEqual(len(files), 3)
        self._age_files(73)
        self.clock.advance(10)  # not 04:00 and disk fine -> nothing deleted
        self.assertEqual(len(os.listdir(os.path.join(self.root, "commitlog"))), 3)
        self.disk_ratio = 0.80
        self.clock.advance(10)
        self.assertEqual(os.listdir(os.path.join(self.root, "commitlog")), [files[-1]])
        self.assertEqual(s.get_min_phy_offset(), int(files[-1]))
        mn = s.get_min_offset_in_queue("T", 0)
        self.assertGreater(mn, 0)
        for nearest in (True, False):  # deleted records are never an answer
            self.assertEqual(
                self.successResultOf(s.get_offset_in_queue_by_time("T", 0, 0, nearest)), mn
            )
        g = self.successResultOf(s.get_messages("T", 0, 0, 32))
        self.assertEqual((g.status, g.next_begin_offset), (GetMessageStatus.OFFSET_TOO_SMALL, mn))
        # the first consume-queue file still references live records, so it stays
        self.assertEqual(len(os.listdir(os.path.join(self.root, "consumequeue", "T", "0"))), 2)
        g = self.successResultOf(s.get_messages("T", 0, mn, 32))
        self.assertEqual(g.queue_offsets[0], mn)
        self.assertLess(len(os.listdir(index_dir)), 6)
        q = self.successResultOf(s.query_message("T", f"r{mn}", 5, 0, 2**62))
        self.assertEqual(len(q.messages), 1)
        q = self.successResultOf(s.query_message("T", "r0", 5, 0, 2**62))
        self.assertEqual(q.messages, [])

    def test_young_files_kept(self) -> None:
        """Files younger than fileReservedTime survive even above the ratio."""
        s = self.open_store(self.clock)
        for _ in range(30):
            self.successResultOf(s.put_message(make_msg(body=b"x" * 3000)))
        self._age_files(71)
        self.disk_ratio = 0.80
        self.clock.advance(10)
        self.assertEqual(len(os.listdir(os.path.join(self.root, "commitlog"))), 2)

    def test_forced_deletion_above_clean_forcibly_ratio(self) -> None:
        """Above diskSpaceCleanForciblyRatio even young files go, oldest first, never the last."""
        s = self.open_store(self.clock)
        for _ in range(60):
            self.successResultOf(s.put_message(make_msg(body=b"x" * 3000)))
        self._age_files(1)
        self.disk_ratio = 0.86
        self.clock.advance(10)
        files = os.listdir(os.path.join(self.root, "commitlog"))
        self.assertEqual(files, [f"{2 * 65536:020d}"])
        self.flushLoggedErrors()
        r = self.successResultOf(s.put_message(make_msg()))
        self.assertEqual(r.status, PutMessageStatus.PUT_OK)

    def test_retention_runs_during_group_commit(self) -> None:
        """A running fsync does not starve retention: files it is not syncing are deleted."""
        runner = HeldRunner()
        s = self.open_store(self.clock, runner=runner, flush_disk_type=SYNC_FLUSH)
        for _ in range(60):
            d = s.put_message(make_msg(body=b"x" * 3000))
            runner.release_all()
            self.successResultOf(d)
        self._age_files(73)
        held = s.put_message(make_msg(body=b"y"))
        self.assertEqual(len(runner.calls), 1)  # this fsync is still running
        self.disk_ratio = 0.80
        self.clock.advance(10)
        self.assertEqual(len(os.listdir(os.path.join(self.root, "commitlog"))), 1)
        # the held put waited 10 s > syncFlushTimeout; once the fsync returns it is visible
        self.assertEqual(self.successResultOf(held).status, PutMessageStatus.FLUSH_DISK_TIMEOUT)
        runner.release_all()
        self.assertEqual(s.get_max_offset_in_queue("T", 0), 61)

    def test_disk_full_refuses(self) -> None:
        """Above 90 % disk use puts get DISK_FULL with a clear remark; below, puts work again."""
        s = self.open_store(self.clock)
        self.disk_ratio = 0.93
        self.clock.advance(10)
        r = self.successResultOf(s.put_message(make_msg()))
        self.assertEqual(r.status, PutMessageStatus.DISK_FULL)
        self.assertIn("93%", r.remark or "")
        self.assertIn("refused", r.remark or "")
        self.flushLoggedErrors()
        self.disk_ratio = 0.5
        self.clock.advance(10)
        r = self.successResultOf(s.put_message(make_msg()))
        self.assertEqual(r.status, PutMessageStatus.PUT_OK)


class MarkerHeldRunner(HeldRunner):
    """Holds fsyncs and the ``deletedQueues.json`` write alike."""

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if f is _write_deleted_sync:
            d: Deferred[Any] = Deferred()
            self.calls.append((f, args, d))
            return d
        return super().__call__(f, *args)


class QueueRemovalTests(FileStoreTestBase):
    """delete_topics / clean_expired_consume_queues on disk and across restarts."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)

    def bodies(self, s: FileMessageStore, topic: str, qid: int = 0) -> list[bytes]:
        g = self.successResultOf(s.get_messages(topic, qid, 0, 100))
        return [m.body for m in decode_messages(g.body())]

    def cq_dir(self, *parts: str) -> str:
        return os.path.join(self.root, "consumequeue", *parts)

    def test_deleted_queues_stay_deleted_after_restart(self) -> None:
        """Removed queues leave the disk and come back neither after a clean stop nor after a
        crash (recovery does not re-dispatch their records), while a queue re-created after the
        removal keeps exactly its new records."""
        for how in ("stop", "crash"):
            self.root = self.mktemp()
            s = self.open_store(self.clock)
            for i in range(3):
                self.successResultOf(s.put_message(make_msg(body=b"old-%d" % i)))
            self.successResultOf(s.put_message(make_msg(topic="Gone", queue_id=2)))
            self.successResultOf(s.put_message(make_msg(topic="U")))
            self.successResultOf(s.flush())
            self.assertEqual(self.successResultOf(s.delete_topics({"T", "Gone"})), 2)
            self.assertFalse(os.path.exists(self.cq_dir("T")))
            self.assertFalse(os.path.exists(self.cq_dir("Gone")))
            self.assertTrue(os.path.exists(os.path.join(self.root, "deletedQueues.json")))
            r = self.successResultOf(s.put_message(make_msg(body=b"new-0")))
            self.assertEqual(r.queue_offset, 0)
            if how == "stop":
                self.successResultOf(s.stop())
            else:
                self.crash(s)
            s2 = self.open_store(self.clock)
            self.assertEqual(s2.recovered_abnormally, how == "crash")
            self.assertEqual(s2.topic_queues(), {"T": [0], "U": [0]}, how)
            self.assertEqual(self.bodies(s2, "T"), [b"new-0"], how)
            self.assertEqual(os.listdir(self.cq_dir("T")), ["0"])
            r = self.successResultOf(s2.put_message(make_msg(body=b"new-1")))
            self.assertEqual(r.queue_offset, 1)
            r = self.successResultOf(s2.put_message(make_msg(topic="Gone", queue_id=2)))
            self.assertEqual(r.queue_offset, 0)
            self.successResultOf(s2.stop())

    def test_removal_lost_by_crash_is_finished_at_recovery(self) -> None:
        """When the queue files come back after a crash (their unlinking never reached the
        disk) but ``deletedQueues.json`` did, recovery removes them again."""
        import shutil

        s = self.open_store(self.clock)
        for _ in range(3):
            self.successResultOf(s.put_message(make_msg()))
        self.successResultOf(s.flush())
        saved = self.mktemp()
        shutil.copytree(self.cq_dir("T"), saved)
        self.successResultOf(s.delete_topics({"T"}))
        self.crash(s)
        shutil.copytree(saved, self.cq_dir("T"))
        s2 = self.open_store(self.clock)
        self.assertEqual(s2.topic_queues(), {})
        self.assertFalse(os.path.exists(self.cq_dir("T")))
        self.assertEqual(self.successResultOf(s2.put_message(make_msg())).queue_offset, 0)

    def test_sync_flush_removal(self) -> None:
        """Under SYNC_FLUSH a record appended but not yet flushed gets no unit once its topic is
        removed (its put is still answered), and no put made after the removal is answered
        before ``deletedQueues.json`` is written."""
        runner = MarkerHeldRunner()
        s = self.open_store(self.clock, runner=runner, flush_disk_type=SYNC_FLUSH)
        d = s.put_message(make_msg(body=b"old"))
        runner.release_all()
        self.successResultOf(d)
        pending = s.put_message(make_msg(body=b"unflushed"))
        self.assertEqual(len(runner.calls), 1)  # its fsync is held
        removed = s.delete_topics({"T"})
        self.assertEqual(len(runner.calls), 2)  # + the marker write
        after = s.put_message(make_msg(body=b"after"))
        self.assertEqual(len(runner.calls), 2)  # no fsync may start before the marker is written
        runner.release_one()  # the fsync of "unflushed"
        self.assertEqual(self.successResultOf(pending).status, PutMessageStatus.PUT_OK)
        self.assertEqual(s.topic_queues(), {})
        self.assertNoResult(after)
        runner.release_one()  # the marker
        self.assertEqual(self.successResultOf(removed), 1)
        self.assertEqual(len(runner.calls), 1)  # now the fsync of "after"
        runner.release_all()
        r = self.successResultOf(after)
        self.assertEqual((r.status, r.queue_offset), (PutMessageStatus.PUT_OK, 0))
        self.assertEqual(self.bodies(s, "T"), [b"after"])

    def test_clean_expired_consume_queues(self) -> None:
        """With commit-log files gone, clean_expired_consume_queues deletes the consume-queue
        files wholly below the log minimum, removes a queue whose every record is gone (a later
        put restarts it at offset 0, as Java does) and keeps live queues' remaining units."""
        s = self.open_store(self.clock)
        for _ in range(25):  # 21 per 64 KiB file: files 0 and 1
            self.successResultOf(s.put_message(make_msg(body=b"x" * 3000)))
        for _ in range(60):  # U units 0-59 in file 1: U's first consume-queue file (50 units)
            self.successResultOf(s.put_message(make_msg(topic="U", body=b"small")))
        while s.get_max_phy_offset() < 2 * 65536 + 10000:  # into file 2
            self.successResultOf(s.put_message(make_msg(topic="U", body=b"x" * 3000)))
        first_live = s.get_max_offset_in_queue("U", 0)
        self.successResultOf(s.stop())
        for start in (0, 65536):  # as if retention had run but not the consume-queue pass
            os.unlink(os.path.join(self.root, "commitlog", f"{start:020d}"))
        self.assertEqual(len(os.listdir(self.cq_dir("U", "0"))), 2)
        s2 = self.open_store(self.clock)
        self.assertEqual(s2.get_min_phy_offset(), 2 * 65536)
        removed = self.successResultOf(s2.clean_expired_consume_queues({"T", "U"}))
        self.assertEqual(removed, 1)
        self.assertEqual(s2.topic_queues(), {"U": [0]})
        self.assertFalse(os.path.exists(self.cq_dir("T")))
        self.assertEqual(os.listdir(self.cq_dir("U", "0")), [f"{50 * 20:020d}"])
        mn = s2.get_min_offset_in_queue("U", 0)
        self.assertTrue(60 < mn < first_live, (mn, first_live))
        self.assertEqual(s2.get_max_offset_in_queue("U", 0), first_live)
        g = self.successResultOf(s2.get_messages("U", 0, mn, 100))
        self.assertEqual(g.status, GetMessageStatus.FOUND)
        self.assertEqual(self.successResultOf(s2.put_message(make_msg())).queue_offset, 0)
        self.assertEqual(self.successResultOf(s2.clean_expired_consume_queues({"T", "U"})), 0)
        self.successResultOf(s2.stop())
        s3 = self.open_store(self.clock)
        self.assertEqual(s3.get_max_offset_in_queue("T", 0), 1)
        self.assertEqual(s3.get_min_offset_in_queue("U", 0), mn)

    def test_file_being_synced_is_closed_after_its_fsync(self) -> None:
        """A queue file whose descriptor a flush thread is syncing is unlinked at once but
        closed only when that fsync returns (the descriptor is never reused under it)."""
        runner = HeldRunner()
        s = self.open_store(self.clock, runner=runner)
        self.successResultOf(s.put_message(make_msg()))
        self.clock.advance(1)  # the consume-queue flush tick: its fsync is held
        self.assertEqual(len(runner.calls), 1)
        fd = s._cqs[("T", 0)].files.files[0].fd
        self.assertIn(fd, runner.calls[0][1][0])
        self.successResultOf(s.delete_topics({"T"}))
        self.assertFalse(os.path.exists(self.cq_dir("T")))
        os.fstat(fd)  # still open
        self.assertEqual(len(s._close_later), 1)
        runner.release_all()
        self.assertEqual(s._close_later, [])
