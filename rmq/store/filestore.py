"""``FileMessageStore``: RocketMQ's on-disk store (Java ``DefaultMessageStore``).

Layout under ``storePathRootDir``: ``commitlog/``, ``consumequeue/TOPIC/QID/``, ``index/``,
``checkpoint``, ``abort``, ``lock`` (protocol §11). Appends, dispatch and reads run on the reactor
thread over mapped files; every fsync runs in the store's thread pool.

Flush: under ASYNC_FLUSH a timer flushes every ``flushIntervalCommitLog`` ms and records are
dispatched (consume queue, index, arrival listeners) as they are appended. Under SYNC_FLUSH puts
are answered by group commit (one fsync answers every put appended before it started) and records
are dispatched only once flushed, so consumers never see unflushed data.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, cast

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from rmq.common.asyncutil import log_failure
from rmq.common.atomicfile import read_with_backup, write_atomic
from rmq.common.message import (
    KEYS,
    MESSAGE_MAGIC_CODE,
    TAGS,
    UNIQ_KEY,
    WAIT,
    BrokerMessage,
    encode_host,
    encode_stored_record,
    string_to_properties,
    tags_hash,
)
from rmq.store.commitlog import CommitLog, check_record
from rmq.store.config import MessageStoreConfig
from rmq.store.consumequeue import FILLER_SIZE, UNIT, ConsumeQueue
from rmq.store.index import IndexService
from rmq.store.interfaces import (
    ArrivalListener,
    GetMessageResult,
    GetMessageStatus,
    IMessageStore,
    IReplicaStore,
    PutMessageResult,
    PutMessageStatus,
    QueryMessageResult,
)
from rmq.store.mappedfile import MappedFile, fdatasync_all, populate_write
from rmq.store.replica import append_raw, dispatchable, read_raw
from rmq.store.rules import (
    MAX_FILTER_UNITS,
    SCHEDULE_TOPIC,
    begin_get,
    dispatch_tags_code,
    goes_to_consume_queue,
    index_keys,
    key_matches,
    prepare,
    search_by_time,
)

_CHECKPOINT = struct.Struct(">qqq")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_HEAD = struct.Struct(">iiiiiqqiq")
_FIXED_V4 = struct.Struct(">iiiiiqqiq8sq8siqi")  # record head with IPv4 hosts, to body length
_UNIT_PACK = UNIT.pack_into

RunBlocking = Callable[..., "Deferred[Any]"]
# (phys, size, topic, queue_id, queue_offset or -1, tags_code, store_ts, index key(s))
DispatchEntry = tuple[int, int, str, int, int, int, int, "str | list[str] | None"]

MAX_COMMITS = 3
"""Commit-log fsyncs that may run at once under SYNC_FLUSH (group commit pipelining)."""

INDEX_BATCH = 256
"""Index entries of dispatched records are written in batches of this many records (and before
every query, index flush, checkpoint, retention pass and stop): one tight loop per batch instead
of a method chain per record. Records not yet indexed when the process dies lie past the index's
end offset, so recovery re-indexes them."""


DELETED_QUEUES_FILE = "deletedQueues.json"
"""In the store root: ``{topic: {queue id: commit-log offset}}`` for consume queues removed by
``delete_topics``/``clean_expired_consume_queues``. Recovery never re-dispatches a record of such
a queue below that offset (the commit log keeps them), so deleted queues stay deleted; an entry
is dropped once the commit log's minimum offset has passed it."""


def disk_usage_ratio(path: str) -> float:
    """Used fraction of the file system holding ``path`` (0.0-1.0), as ``df`` reports it."""
    u = shutil.disk_usage(path)
    return u.used / (u.used + u.free) if u.used + u.free else 0.0


class _Waiter:
    __slots__ = ("end", "d", "result", "deadline")

    def __init__(
        self, end: int, d: Deferred[PutMessageResult], result: PutMessageResult, deadline: float
    ) -> None:
        self.end = end
        self.d = d
        self.result = result
        self.deadline = deadline


@implementer(IMessageStore, IReplicaStore)
class FileMessageStore:
    """The commit-log store.

    ``run_blocking(f, *args) -> Deferred`` runs blocking calls (fsync); by default a private
    thread pool on ``reactor`` (which must provide ``callFromThread``; defaults to ``clock``).
    ``disk_usage(path) -> ratio`` is the disk probe (tests fake it).
    """

    log = Logger()

    def __init__(
        self,
        config: MessageStoreConfig,
        clock: IReactorTime,
        *,
        reactor: Any = None,
        run_blocking: RunBlocking | None = None,
        disk_usage: Callable[[str], float] = disk_usage_ratio,
    ) -> None:
        self.config = config
        self._clock = clock
        self._reactor = reactor if reactor is not None else clock
        self._run_blocking = run_blocking
        self._pool: ThreadPool | None = None
        self._disk_usage = disk_usage
        self.root = config.store_path_root_dir
        self._delays = config.delay_levels_ms()
        self._sync = config.sync_flush
        self.commitlog = CommitLog(config.commit_log_dir, config.mapped_file_size_commit_log)
        self._cq_root = os.path.join(self.root, "consumequeue")
        self._host_hex: dict[str, str] = {}
        self._host_bytes: dict[str, bytes] = {}
        self._topics: dict[str, tuple[bytes, str]] = {}
        self._record_structs: dict[tuple[int, int, int], struct.Struct] = {}
        self._index_todo: list[tuple[str, int, int]] = []
        self._max_size = config.max_message_size
        self._max_record = config.mapped_file_size_commit_log - 8
        self._index_on = config.message_index_enable
        self._sync_timeout = config.sync_flush_timeout_ms / 1000.0
        self._cqs: dict[tuple[str, int], ConsumeQueue] = {}
        self.index = IndexService(
            os.path.join(self.root, "index"), config.max_hash_slot_num, config.max_index_num
        )
        self._next_qoff: dict[tuple[str, int], int] = {}
        self._listeners: tuple[ArrivalListener, ...] = ()
        self._pending: deque[tuple[DispatchEntry, int]] = deque()  # (entry, end) awaiting flush
        self._waiters: deque[_Waiter] = deque()
        self._timeout_call: IDelayedCall | None = None
        self._flushing = False  # a commit fsync (see _commits) or an exclusive flush runs
        # in-flight commit fsyncs: [target, ts, done, tainted by an earlier failure]
        self._commits: deque[list[Any]] = deque()
        self._requested = 0  # highest commit-log offset an fsync was started for
        self._answering = False
        self._flushed = 0
        self._idle: list[Deferred[None]] = []
        self._inflight = 0
        self._busy_fds: dict[int, int] = {}
        self._close_later: list[MappedFile] = []  # unlinked, closed once no fsync holds them
        # removed consume queues -> commit-log end when removed (see DELETED_QUEUES_FILE)
        self._deleted: dict[tuple[str, int], int] = {}
        self._marker_writes = 0  # DELETED_QUEUES_FILE writes in flight: no group commit starts
        self._last_ts = 0
        self._last_dispatched_ts = 0
        self._last_appended_ts = 0
        self._flushed_ts = 0
        self._cq_flushed_ts = 0
        self._last_thorough = 0.0
        self._disk_full = False
        self._disk_ratio = 0.0
        self._loops: list[LoopingCall] = []
        self._lock_fd: int | None = None
        self._last_record = -1
        self._replica_next = 0
        self.running = False
        self.recovered_abnormally = False

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Lock the directory, recover, create ``abort``, start the flush and cleanup timers."""
        return maybeDeferred(self._start)

    def _start(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            self._lock_fd = None
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RuntimeError(f"store {self.root} is locked by another process") from e
            raise
        try:
            self._start_locked()
        except BaseException:
            self._abandon_start()
            raise

    def _abandon_start(self) -> None:
        """Undo a failed start: stop timers and the flush pool, close files, release the lock,
        so nothing keeps the process alive (the pool's threads are not daemons)."""
        self.running = False
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._pool is not None:
            self._pool.stop()  # joins its threads first: they may touch the mappings
            self._pool = None
        self.commitlog.close()
        for cq in self._cqs.values():
            cq.close()
        self._cqs = {}
        self.index.close(write_headers=False)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _start_locked(self) -> None:
        abort = os.path.join(self.root, "abort")
        abnormal = os.path.exists(abort)
        t0 = time.monotonic()
        self._recover(abnormal)
        self.log.info(
            "Store {root} recovered ({how}) to offset {offset} in {secs:.3f} s",
            root=self.root,
            how="abnormal" if abnormal else "normal",
            offset=self.commitlog.max_offset,
            secs=time.monotonic() - t0,
        )
        # Created, not fsynced (no fsync on the reactor thread): like Java, a crash that also
        # loses this file's creation merely takes the normal path, whose checks still run.
        os.close(os.open(abort, os.O_WRONLY | os.O_CREAT, 0o644))
        if self._run_blocking is None:
            self._pool = ThreadPool(
                minthreads=1, maxthreads=MAX_COMMITS + 2, name="rmq-store-flush"
            )
            self._pool.start()
        self.commitlog.on_prefault = self._prefault
        self.index.on_prefault = self._prefault_range
        self._flushed = self._requested = self.commitlog.max_offset
        self._last_thorough = self._clock.seconds()
        self._check_disk()
        c = self.config
        for interval_ms, fn in (
            (c.flush_interval_commit_log_ms, self._async_flush_tick),
            (c.flush_interval_consume_queue_ms, self._cq_flush_tick),
            (c.clean_resource_interval_ms, self._clean_tick),
        ):
            if fn == self._async_flush_tick and self._sync:
                continue
            loop = LoopingCall(fn)
            loop.clock = self._clock
            loop.start(interval_ms / 1000.0, now=False).addErrback(log_failure("store timer"))
            self._loops.append(loop)
        self.running = True

    def stop(self) -> Deferred[None]:
        """Flush everything, write the checkpoint, delete ``abort`` and close the files."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if not self.running:
            return
        self.running = False
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        while self._flushing or self._inflight:
            d: Deferred[None] = Deferred()
            self._idle.append(d)
            await d
        await self._flush_all()
        self._answer_waiters(self._flushed)
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self.commitlog.close()
        for cq in self._cqs.values():
            cq.close()
        self.index.close()
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        try:
            os.unlink(os.path.join(self.root, "abort"))
        except FileNotFoundError:
            pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _run(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        self._inflight += 1
        if self._run_blocking is not None:
            d = self._run_blocking(f, *args)
        else:
            assert self._pool is not None
            d = deferToThreadPool(cast(IReactorFromThreads, self._reactor), self._pool, f, *args)

        def done(r: Any) -> Any:
            self._inflight -= 1
            self._maybe_idle()
            return r

        return d.addBoth(done)

    def _fsync(self, fds: list[int]) -> Deferred[None]:
        """fdatasync ``fds`` in a thread; they stay in ``_busy_fds`` (never closed) meanwhile."""
        busy = self._busy_fds
        for fd in fds:
            busy[fd] = busy.get(fd, 0) + 1

        def done(r: Any) -> Any:
            for fd in fds:
                n = busy.pop(fd) - 1
                if n:
                    busy[fd] = n
            if self._close_later:
                self._close_idle_files()
            return r

        return self._run(fdatasync_all, fds).addBoth(done)

    def _maybe_idle(self) -> None:
        if not self._flushing and not self._inflight and self._idle:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    # --- put ----------------------------------------------------------------------------------

    def _refusal(self) -> PutMessageResult | None:
        if not self.running:
            return PutMessageResult(
                PutMessageStatus.SERVICE_NOT_AVAILABLE, remark="store not running"
            )
        if self._disk_full:
            return PutMessageResult(
                PutMessageStatus.DISK_FULL,
                remark=f"disk usage {self._disk_ratio:.0%} is above "
                f"{self.config.disk_space_warning_level_ratio:.0%}: puts refused until it "
                "falls below",
            )
        return None

    def _store_ts(self) -> int:
        ts = int(self._clock.seconds() * 1000)
        if ts < self._last_ts:
            ts = self._last_ts
        self._last_ts = ts
        return ts

    def _offset_id(self, store_host: str, phys: int) -> str:
        prefix = self._host_hex.get(store_host)
        if prefix is None:
            prefix = self._host_hex[store_host] = encode_host(store_host).hex().upper()
        return f"{prefix}{phys:016X}"

    def _host(self, address: str) -> bytes:
        raw = self._host_bytes.get(address)
        if raw is None:
            if len(self._host_bytes) > 4096:
                self._host_bytes.clear()
            raw = self._host_bytes[address] = encode_host(address)
        return raw

    def _topic_info(self, topic: str) -> tuple[bytes, str]:
        """``(TOPIC field, index key prefix "topic#")``, cached; ValueError beyond 127 bytes."""
        info = self._topics.get(topic)
        if info is None:
            raw = topic.encode()
            if len(raw) > 127:
                raise ValueError("topic longer than 127 bytes")
            info = self._topics[topic] = (bytes((len(raw),)) + raw, topic + "#")
        return info

    def _append(self, msg: BrokerMessage, store_ts: int) -> tuple[int, int, int]:
        """Append one record and dispatch it (or queue it for dispatch after the fsync).

        The record goes straight into the mapped file with one ``pack_into`` (a ``Struct`` per
        body/topic/property length, cached). Returns ``(phys, size, queue offset)``; ValueError
        if it cannot fit in a file."""
        topic = msg.topic
        qid = msg.queue_id
        sys_flag = msg.sys_flag
        in_cq = not sys_flag & 4  # TRANSACTION_PREPARED_TYPE (also set in ROLLBACK)
        key = (topic, qid)
        qoff = self._next_qoff.get(key, 0) if in_cq else 0
        info = self._topics.get(topic)
        if info is None:
            info = self._topic_info(topic)
        tfield = info[0]
        born = self._host_bytes.get(msg.born_host) or self._host(msg.born_host)
        store = self._host_bytes.get(msg.store_host) or self._host(msg.store_host)
        props = msg.properties_str.encode()
        plen = len(props)
        body = msg.body
        blen = len(body)
        size = 90 + blen + len(tfield) + plen
        cl = self.commitlog
        mf = cl._last
        if (
            mf is not None
            and mf.wrote + size + 8 <= mf.size
            and len(born) == 8
            and len(store) == 8
            and plen <= 32767
            and type(body) is bytes
        ):
            pos = mf.wrote
            phys = mf.start + pos
            shape = (blen, len(tfield), plen)
            st = self._record_structs.get(shape)
            if st is None:
                if len(self._record_structs) >= 1024:
                    self._record_structs.clear()
                st = self._record_structs[shape] = struct.Struct(
                    f">iiiiiqqiq8sq8siqi{blen}s{len(tfield)}sh{plen}s"
                )
            st.pack_into(
                mf.mm,
                pos,
                size,
                MESSAGE_MAGIC_CODE,
                zlib.crc32(body) & 0x7FFFFFFF,
                qid,
                msg.flag,
                qoff,
                phys,
                sys_flag & ~0x30,  # both hosts IPv4
                msg.born_timestamp,
                born,
                store_ts,
                store,
                msg.reconsume_times,
                msg.prepared_transaction_offset,
                blen,
                body,
                tfield,
                plen,
                props,
            )
            mf.wrote = pos + size
            mf.dirty = True
            if mf.wrote + 1048576 >= mf.populated and cl.on_prefault is not None:
                cl.on_prefault(mf)
        else:
            raw = encode_stored_record(msg, qoff, 0, store_ts)
            size = len(raw)
            if size > self._max_record:
                raise ValueError("record larger than a commit-log file")
            phys = cl.append(raw)
        tags = msg.tags_code
        if in_cq:
            self._next_qoff[key] = qoff + 1
            if topic == SCHEDULE_TOPIC:
                tags = dispatch_tags_code(topic, tags, msg.properties, store_ts, self._delays)
        keys: str | list[str] | None = None
        if self._index_on:
            mprops = msg.properties
            if KEYS in mprops:
                keys = index_keys(topic, mprops)
            else:
                uniq = mprops.get(UNIQ_KEY)
                if uniq:
                    keys = info[1] + uniq
        if self._sync:
            self._pending.append(
                ((phys, size, topic, qid, qoff if in_cq else -1, tags, store_ts, keys), phys + size)
            )
            return phys, size, qoff
        # ASYNC_FLUSH: dispatch now. The usual case (next unit inside the queue's last file,
        # one index key) is _dispatch_record inlined: this runs once per message.
        cq = self._cqs.get(key) if in_cq else None
        if (
            cq is not None
            and qoff == cq.max_offset
            and not isinstance(keys, list)
            and (files := cq.files.files)
            and 0 <= (pos := qoff * 20 - (cf := files[-1]).start) < cf.size
        ):
            _UNIT_PACK(cf.mm, pos, phys, size, tags)
            cf.wrote = pos + 20
            cf.dirty = True
            cq.max_offset = qoff + 1
            cq.max_phy = phys + size
            if keys is not None:
                todo = self._index_todo
                todo.append((keys, phys, store_ts))
                if len(todo) >= INDEX_BATCH:
                    self._drain_index()
            self._last_dispatched_ts = store_ts
            if self._listeners:
                for listener in self._listeners:
                    try:
                        listener(topic, qid, qoff, tags)
                    except Exception:
                        self.log.failure("Arrival listener failed")
        else:
            self._dispatch_record(
                phys, size, topic, qid, qoff if in_cq else -1, tags, store_ts, keys
            )
        return phys, size, qoff

    def put_message(self, msg: BrokerMessage) -> Deferred[PutMessageResult]:
        """Append one record (see IMessageStore)."""
        if self._disk_full or not self.running:
            return succeed(self._refusal())  # type: ignore[arg-type]
        pstr = msg.properties_str
        if (
            msg.topic not in self._topics  # a topic is cached once a put passed its checks
            or not pstr
            or len(pstr) > 10922
            or len(msg.body) > self._max_size
        ):
            bad = prepare(msg, self._max_size)
            if bad is not None:
                return succeed(bad)
        store_ts = int(self._clock.seconds() * 1000)
        if store_ts < self._last_ts:
            store_ts = self._last_ts
        self._last_ts = store_ts
        try:
            phys, size, qoff = self._append(msg, store_ts)
        except ValueError as e:
            return succeed(PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL, remark=str(e)))
        self._last_appended_ts = store_ts
        prefix = self._host_hex.get(msg.store_host)
        result = PutMessageResult(
            PutMessageStatus.PUT_OK,
            phys,
            f"{prefix}{phys:016X}" if prefix else self._offset_id(msg.store_host, phys),
            qoff,
            store_ts,
            1,
            size,
        )
        if not self._sync:
            return succeed(result)
        return self._await_flush(result, phys + size, msg)

    def put_messages(self, msgs: Sequence[BrokerMessage]) -> Deferred[PutMessageResult]:
        """Append records with consecutive queue offsets; answer per the flush mode."""
        bad = self._refusal()
        if bad is None and not msgs:
            bad = PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL, remark="empty batch")
        for msg in msgs:
            if bad is not None:
                break
            bad = prepare(msg, self._max_size)
        if bad is not None:
            return succeed(bad)
        for msg in msgs:
            if len(msg.body) + 400 + len(msg.properties_str) * 3 > self._max_record:
                return succeed(
                    PutMessageResult(
                        PutMessageStatus.MESSAGE_ILLEGAL,
                        remark="record larger than a commit-log file",
                    )
                )
        store_ts = self._store_ts()
        ids = []
        first_phys = first_qoff = -1
        total = 0
        end = 0
        for msg in msgs:
            phys, size, qoff = self._append(msg, store_ts)
            if first_phys < 0:
                first_phys, first_qoff = phys, qoff
            ids.append(self._offset_id(msg.store_host, phys))
            total += size
            end = phys + size
        self._last_appended_ts = store_ts
        result = PutMessageResult(
            PutMessageStatus.PUT_OK,
            first_phys,
            ",".join(ids),
            first_qoff,
            store_ts,
            len(msgs),
            total,
        )
        if not self._sync:
            return succeed(result)
        return self._await_flush(result, end, msgs[0])

    def _await_flush(
        self, result: PutMessageResult, end: int, msg: BrokerMessage
    ) -> Deferred[PutMessageResult]:
        """SYNC_FLUSH: a Deferred answered by the group commit covering ``end``."""
        if msg.properties.get(WAIT) == "false":
            self._group_commit()
            return succeed(result)
        d: Deferred[PutMessageResult] = Deferred()
        deadline = self._clock.seconds() + self._sync_timeout
        self._waiters.append(_Waiter(end, d, result, deadline))
        if self._timeout_call is None:
            self._arm_timeout()
        self._group_commit()
        return d

    def _prefault(self, mf: MappedFile) -> None:
        """Pre-fault the pages ahead of the commit-log write position in a thread."""
        req = mf.prefault_request()
        if req is None:
            return

        def done(_: object) -> None:
            mf.prefaulting = False

        self._run(populate_write, *req).addBoth(done)

    def _prefault_range(self, addr: int, length: int) -> None:
        """Pre-fault ``length`` bytes of a mapping at ``addr`` in a thread (index files)."""
        self._run(populate_write, addr, length).addErrback(log_failure("index pre-fault"))

    # --- dispatch -----------------------------------------------------------------------------

    def _cq(self, topic: str, queue_id: int) -> ConsumeQueue:
        cq = self._cqs.get((topic, queue_id))
        if cq is None:
            cq = ConsumeQueue(
                self._cq_root, topic, queue_id, self.config.mapped_file_size_consume_queue
            )
            self._cqs[(topic, queue_id)] = cq
        return cq

    def _dispatch(self, entry: DispatchEntry) -> None:
        self._dispatch_record(*entry)

    def _dispatch_record(
        self,
        phys: int,
        size: int,
        topic: str,
        qid: int,
        qoff: int,
        tags: int,
        ts: int,
        keys: str | list[str] | None,
    ) -> None:
        """Write the consume-queue unit of a record, queue its index entries, tell the
        listeners."""
        if qoff >= 0:
            cq = self._cqs.get((topic, qid))
            if cq is None:
                cq = self._cq(topic, qid)
            if qoff == cq.max_offset and (files := cq.files.files):
                # the common case inlined: the next unit inside the last file
                mf = files[-1]
                pos = qoff * 20 - mf.start
                if 0 <= pos < mf.size:
                    _UNIT_PACK(mf.mm, pos, phys, size, tags)
                    mf.wrote = pos + 20
                    mf.dirty = True
                    cq.max_offset = qoff + 1
                    cq.max_phy = phys + size
                else:
                    cq.put(qoff, phys, size, tags)
            else:
                cq.put(qoff, phys, size, tags)
        if keys:
            todo = self._index_todo
            if type(keys) is str:
                todo.append((keys, phys, ts))
            else:
                for k in keys:
                    todo.append((k, phys, ts))
            if len(todo) >= INDEX_BATCH:
                self._drain_index()
        self._last_dispatched_ts = ts
        if qoff >= 0 and self._listeners:
            for listener in self._listeners:
                try:
                    listener(topic, qid, qoff, tags)
                except Exception:
                    self.log.failure("Arrival listener failed")

    def _drain_index(self) -> None:
        """Write the index entries of dispatched records (batched: see ``INDEX_BATCH``)."""
        todo = self._index_todo
        if todo:
            self._index_todo = []
            self.index.put_batch(todo)

    # --- flush --------------------------------------------------------------------------------

    def _group_commit(self) -> None:
        """Start an fsync of everything appended so far, unless ``MAX_COMMITS`` run already (or
        one runs while waiters are being answered: their callbacks' puts then share the next).

        A put arriving while an fsync runs is appended at once and answered by the next fsync,
        which may start before the running one returns; completions are applied in order."""
        if self._marker_writes:  # puts after a queue removal wait until it is durable
            return
        commits = self._commits
        if commits:
            if len(commits) >= MAX_COMMITS or self._answering:
                return
        elif self._flushing:  # an exclusive flush (flush(), stop) runs
            return
        target = self.commitlog.max_offset
        if target <= self._requested:  # covered by a running or finished fsync
            return
        self._requested = target
        fds = self.commitlog.files.dirty_fds()
        entry = [target, self._last_appended_ts, False, False]  # + done, tainted
        commits.append(entry)
        self._flushing = True
        d = self._fsync(fds)
        d.addCallbacks(
            self._commit_done, self._commit_failed, callbackArgs=(entry,), errbackArgs=(entry,)
        )

    def _commit_done(self, _: object, entry: list[Any]) -> None:
        entry[2] = True
        commits = self._commits
        target = -1
        ts = 0
        while commits and commits[0][2]:
            done = commits.popleft()
            if not done[3]:
                target, ts = done[0], done[1]
        self._flushing = bool(commits)
        if target < 0:  # a later fsync finished first: wait for the earlier one
            return
        # Records appended during that fsync get theirs now, before the answers run.
        if self.running:
            self._group_commit()
        self._flushed_to(target, ts)

    def _flushed_to(self, target: int, ts: int) -> None:
        """Everything before ``target`` is durable: dispatch it and answer its puts."""
        if target > self._flushed:
            self._flushed = target
            self._flushed_ts = max(self._flushed_ts, ts)
        if target > self._requested:
            self._requested = target
        pending = self._pending
        dispatch = self._dispatch_record
        while pending and pending[0][1] <= target:
            dispatch(*pending.popleft()[0])
        self._answering = True
        try:
            self._answer_waiters(target)
        finally:
            self._answering = False
        self._maybe_idle()
        if self.running and (self._waiters or pending):
            self._group_commit()

    def _commit_failed(self, failure: Failure, entry: list[Any]) -> None:
        commits = self._commits
        if entry in commits:
            commits.remove(entry)
        # fsyncs started before this failure did not cover its files (each syncs the files
        # dirtied since the previous one): their success proves nothing. Mark every file dirty
        # so the next fsync, started by the next put, covers everything not yet durable.
        for other in commits:
            other[3] = True
        for mf in self.commitlog.files.files:
            mf.dirty = True
        self._requested = self._flushed
        self._flushing = bool(commits)
        self.log.failure("Commit-log fsync failed", failure)
        self._maybe_idle()

    def _answer_waiters(self, flushed: int) -> None:
        waiters = self._waiters
        while waiters and waiters[0].end <= flushed:
            w = waiters.popleft()
            if not w.d.called:
                w.d.callback(w.result)
        if not waiters and self._timeout_call is not None:
            if self._timeout_call.active():
                self._timeout_call.cancel()
            self._timeout_call = None

    def _arm_timeout(self) -> None:
        if self._waiters:
            delay = max(0.0, self._waiters[0].deadline - self._clock.seconds())
            self._timeout_call = self._clock.callLater(delay, self._expire)
        else:
            self._timeout_call = None

    def _expire(self) -> None:
        """Answer puts whose flush took longer than syncFlushTimeout with FLUSH_DISK_TIMEOUT."""
        now = self._clock.seconds()
        waiters = self._waiters
        while waiters and waiters[0].deadline <= now:
            w = waiters.popleft()
            w.result.status = PutMessageStatus.FLUSH_DISK_TIMEOUT
            w.result.remark = "flush to disk timed out"
            w.d.callback(w.result)
        self._arm_timeout()

    def _async_flush_tick(self) -> None:
        """ASYNC_FLUSH: flush when >= flushCommitLogLeastPages are dirty or the thorough interval
        has passed since the last full flush."""
        if self._flushing:
            return
        now = self._clock.seconds()
        dirty = self.commitlog.max_offset - self._flushed
        thorough = (
            now - self._last_thorough >= self.config.flush_commit_log_thorough_interval_ms / 1000
        )
        if dirty <= 0:
            return
        if dirty >= self.config.flush_commit_log_least_pages * 4096 or thorough:
            self._last_thorough = now
            self._group_commit()

    def _cq_flush_tick(self) -> Deferred[None] | None:
        """Flush consume queues and index files, then the checkpoint."""
        if not self.running:
            return None
        self._drain_index()
        ts = self._last_dispatched_ts
        phys_ts = self._flushed_ts
        fds = [fd for cq in self._cqs.values() for fd in cq.files.dirty_fds()]
        fds += self.index.dirty_fds()
        if not fds and ts == self._cq_flushed_ts:
            return None
        d = self._fsync(fds)

        def flushed(_: object) -> Deferred[None] | None:
            self._cq_flushed_ts = ts
            return self._write_checkpoint(phys_ts, ts, ts)

        d.addCallback(flushed)
        return d

    async def _flush_all(self) -> None:
        """Flush commit log, consume queues, index and checkpoint (used at stop)."""
        self._flushing = True
        target = self.commitlog.max_offset
        try:
            fds = self.commitlog.files.dirty_fds()
            await self._fsync(fds)
        finally:
            self._flushing = False
        self._flushed = self._requested = max(target, self._requested)
        self._flushed_ts = self._last_appended_ts
        while self._pending:
            self._dispatch(self._pending.popleft()[0])
        self._drain_index()
        fds = [fd for cq in self._cqs.values() for fd in cq.files.dirty_fds()]
        fds += self.index.dirty_fds()
        await self._fsync(fds)
        ts = self._last_dispatched_ts
        await self._write_checkpoint(self._flushed_ts, ts, ts)

    def _write_checkpoint(self, phys_ts: int, logics_ts: int, index_ts: int) -> Deferred[None]:
        data = _CHECKPOINT.pack(phys_ts, logics_ts, index_ts) + bytes(4096 - 24)
        return self._run(_write_file_sync, os.path.join(self.root, "checkpoint"), data)

    def flush(self) -> Deferred[int]:
        """Flush the commit log now (plus consume queues and index); fires with the offset."""
        return Deferred.fromCoroutine(self._flush())

    async def _flush(self) -> int:
        while self._flushing:
            d: Deferred[None] = Deferred()
            self._idle.append(d)
            await d
        target = self.commitlog.max_offset
        ts = self._last_appended_ts
        self._flushing = True
        try:
            await self._fsync(self.commitlog.files.dirty_fds())
        except BaseException:
            self._flushing = False
            raise
        self._flushing = False
        self._flushed_to(target, ts)
        cq_flush = self._cq_flush_tick()
        if cq_flush is not None:
            await cq_flush
        return target

    # --- reads --------------------------------------------------------------------------------

    def get_messages(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_count: int,
        tags_filter: set[int] | frozenset[int] | None = None,
    ) -> Deferred[GetMessageResult]:
        """Read records through the consume queue (see IMessageStore)."""
        return succeed(self.get_messages_now(topic, queue_id, offset, max_count, tags_filter))

    def get_messages_now(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_count: int,
        tags_filter: set[int] | frozenset[int] | None = None,
    ) -> GetMessageResult:
        """Synchronous body of ``get_messages`` (reads mapped files)."""
        cq = self._cqs.get((topic, queue_id))
        if cq is None:
            return GetMessageResult(GetMessageStatus.NO_MATCHED_LOGIC_QUEUE, 0, 0, 0)
        min_offset, max_offset = cq.min_offset, cq.max_offset
        result, final = begin_get(offset, min_offset, max_offset)
        if final:
            return result
        msgs = result.messages
        qoffs = result.queue_offsets
        codes = result.tags_codes
        limit_bytes = self.config.max_transfer_bytes_on_message_in_memory
        total = 0
        cl = self.commitlog
        cl_min = cl.min_offset
        i = offset
        scan = max(max_count, MAX_FILTER_UNITS) if tags_filter is not None else max_count
        missing = 0
        done = False
        while not done and i < max_offset and i - offset < scan:
            units = cq.read_units(i, scan - (i - offset))
            if not units:
                break
            for phys, size, tags in UNIT.iter_unpack(units):
                if len(msgs) >= max_count:
                    done = True
                    break
                if size == FILLER_SIZE or (tags_filter is not None and tags not in tags_filter):
                    i += 1
                    continue
                if phys < cl_min:
                    missing += 1
                    i += 1
                    continue
                if msgs and total + size > limit_bytes:
                    done = True
                    break
                raw = cl.read(phys, size)
                if raw is None:
                    missing += 1
                    i += 1
                    continue
                msgs.append(raw)
                qoffs.append(i)
                codes.append(tags)
                total += size
                i += 1
        result.next_begin_offset = i
        if msgs:
            result.status = GetMessageStatus.FOUND
        elif missing:
            result.status = GetMessageStatus.OFFSET_FOUND_NULL
        return result

    def get_min_offset_in_queue(self, topic: str, queue_id: int) -> int:
        """First live unit of the queue (0 for an unknown queue)."""
        cq = self._cqs.get((topic, queue_id))
        return cq.min_offset if cq else 0

    def get_max_offset_in_queue(self, topic: str, queue_id: int) -> int:
        """Number of visible units (dispatched records) in the queue."""
        cq = self._cqs.get((topic, queue_id))
        return cq.max_offset if cq else 0

    def _unit_ts(self, cq: ConsumeQueue, offset: int) -> int:
        unit = cq.read_unit(offset)
        if unit is None or unit[1] == FILLER_SIZE:
            return -1
        return self.commitlog.store_ts_at(unit[0])

    def get_offset_in_queue_by_time(
        self, topic: str, queue_id: int, timestamp_ms: int, nearest: bool = False
    ) -> Deferred[int]:
        """Binary search of the queue by store time (see IMessageStore)."""
        cq = self._cqs.get((topic, queue_id))
        if cq is None or cq.max_offset <= cq.min_offset:
            return succeed(0)
        cl_min = self.commitlog.min_offset

        def store_time(offset: int) -> int:
            # -1: no record (filler, or below the log's minimum): counts as "earlier"
            unit = cq.read_unit(offset)
            if unit is None or unit[1] == FILLER_SIZE or unit[0] < cl_min:
                return -1
            return self.commitlog.store_ts_at(unit[0])

        return succeed(
            search_by_time(cq.min_offset, cq.max_offset, store_time, timestamp_ms, nearest)
        )

    def get_message_store_timestamp(self, topic: str, queue_id: int, offset: int) -> Deferred[int]:
        """Store time of the record at ``offset`` of the queue (-1 if none)."""
        cq = self._cqs.get((topic, queue_id))
        return succeed(self._unit_ts(cq, offset) if cq else -1)

    def get_earliest_message_time(self, topic: str, queue_id: int) -> Deferred[int]:
        """Store time of the queue's oldest live record (-1 if none)."""
        cq = self._cqs.get((topic, queue_id))
        return succeed(self._unit_ts(cq, cq.min_offset) if cq else -1)

    def get_earliest_store_time(self) -> Deferred[int]:
        """Store time of the oldest record in the commit log (-1 if empty)."""
        cl = self.commitlog
        if cl.max_offset <= cl.min_offset:
            return succeed(-1)
        return succeed(cl.store_ts_at(cl.min_offset))

    def look_message_by_offset(self, commit_log_offset: int) -> Deferred[bytes | None]:
        """The record at ``commit_log_offset`` (None past the flushed end under SYNC_FLUSH)."""
        visible = self._flushed if self._sync else self.commitlog.max_offset
        if commit_log_offset >= visible:
            return succeed(None)
        return succeed(self.commitlog.record_at(commit_log_offset))

    def query_message(
        self, topic: str, key: str, max_num: int, begin_ms: int, end_ms: int
    ) -> Deferred[QueryMessageResult]:
        """Look ``topic#key`` up in the index files, re-checking each record's topic and keys."""
        self._drain_index()
        result = QueryMessageResult()
        offsets = self.index.query(f"{topic}#{key}", max_num, begin_ms, end_ms)
        seen: set[int] = set()
        for phys in offsets:
            if phys in seen:
                continue
            seen.add(phys)
            raw = self.commitlog.record_at(phys)
            if raw is None:
                continue
            topic_r, props = _topic_and_props(raw)
            if topic_r != topic or not key_matches(key, props):
                continue
            result.messages.append(raw)
            result.index_last_update_timestamp = max(
                result.index_last_update_timestamp, self.commitlog.store_ts_at(phys)
            )
        result.index_last_update_phyoffset = self.index.end_phy
        return succeed(result)

    def get_min_phy_offset(self) -> int:
        """Start of the oldest commit-log file."""
        return self.commitlog.min_offset

    def get_max_phy_offset(self) -> int:
        """End of the last appended record."""
        return self.commitlog.max_offset

    def add_arrival_listener(self, listener: ArrivalListener) -> None:
        """Register an arrival callback."""
        self._listeners = (*self._listeners, listener)

    def remove_arrival_listener(self, listener: ArrivalListener) -> None:
        """Unregister an arrival callback."""
        listeners = list(self._listeners)
        listeners.remove(listener)
        self._listeners = tuple(listeners)

    def topic_queues(self) -> dict[str, list[int]]:
        """Topics with consume queues and their queue ids."""
        out: dict[str, list[int]] = {}
        for topic, qid in sorted(self._cqs):
            out.setdefault(topic, []).append(qid)
        return out

    # --- queue removal ------------------------------------------------------------------------

    def delete_topics(self, topics: AbstractSet[str]) -> Deferred[int]:
        """Remove the topics' consume queues: files, directories and next queue offsets (Java
        ``deleteTopics``); records stay in the commit log. Fires with the number of topics that
        had queues once ``deletedQueues.json`` is durable (see ``DELETED_QUEUES_FILE``)."""
        keys = {k for k in (*self._cqs, *self._next_qoff) if k[0] in topics}
        self._drop_queues(keys)
        return self._persist_deleted(len({k[0] for k in keys}) if keys else 0, bool(keys))

    def clean_expired_consume_queues(self, live_topics: AbstractSet[str]) -> Deferred[int]:
        """Delete consume-queue files wholly below the commit log's minimum (the retention
        pass), then remove whole queues whose last record left the commit log (Java
        ``cleanExpiredConsumerQueue``) and queues of topics not in ``live_topics``;
        ``SCHEDULE_TOPIC_XXXX`` is kept. Fires with the number of queues removed."""
        phy_min = self.commitlog.min_offset
        busy = self._busy_fds
        files = 0
        drop: set[tuple[str, int]] = set()
        for key, cq in self._cqs.items():
            if key[0] == SCHEDULE_TOPIC:
                continue
            if key[0] not in live_topics:
                drop.add(key)
                continue
            files += cq.delete_files_below(phy_min, busy)
            # Expired: units exist, the last record is below the minimum and no record of the
            # queue awaits dispatch (SYNC_FLUSH appends before the unit is written).
            if (
                0 < cq.max_phy <= phy_min
                and cq.max_offset > 0
                and self._next_qoff.get(key, 0) <= cq.max_offset
            ):
                drop.add(key)
        self.log.info(
            "cleanExpiredConsumeQueue: {files} files below {phy_min} deleted, {queues} queues "
            "removed",
            files=files,
            phy_min=phy_min,
            queues=len(drop),
        )
        self._drop_queues(drop)
        return self._persist_deleted(len(drop), bool(drop))

    def _drop_queues(self, keys: set[tuple[str, int]]) -> None:
        """Forget the queues and delete their files now; records of them awaiting dispatch
        (SYNC_FLUSH) get no unit. A file a flush thread is syncing is unlinked now and closed
        when that fsync returns."""
        if not keys:
            return
        end = self.commitlog.max_offset
        busy = self._busy_fds
        topics = set()
        for key in sorted(keys):
            topic, qid = key
            topics.add(topic)
            self._next_qoff.pop(key, None)
            self._deleted[key] = end
            cq = self._cqs.pop(key, None)
            if cq is None:
                continue
            for mf in cq.files.files:
                os.unlink(mf.path)
                if mf.fd in busy:
                    self._close_later.append(mf)
                else:
                    mf.close()
            cq.files.files = []
            _rmdir(cq.files.directory)
            self.log.info("Consume queue {topic}/{qid} removed", topic=topic, qid=qid)
        for topic in topics:
            _rmdir(os.path.join(self._cq_root, topic))
        pending = self._pending
        if pending:
            kept = [
                ((e[0], e[1], e[2], e[3], -1, e[5], e[6], e[7]), pend)
                if e[4] >= 0 and (e[2], e[3]) in keys
                else (e, pend)
                for e, pend in pending
            ]
            pending.clear()
            pending.extend(kept)

    def _close_idle_files(self) -> None:
        busy = self._busy_fds
        still = []
        for mf in self._close_later:
            if mf.fd in busy:
                still.append(mf)
            else:
                mf.close()
        self._close_later = still

    def _persist_deleted(self, result: int, changed: bool) -> Deferred[int]:
        """Write ``deletedQueues.json`` and fsync the consume-queue directory in a thread; no
        group commit starts meanwhile, so no put made after the removal is answered before the
        removal is durable. Fires with ``result``."""
        if not changed:
            return succeed(result)
        floor = self.commitlog.min_offset
        table: dict[str, dict[str, int]] = {}
        for (topic, qid), end in sorted(self._deleted.items()):
            if end > floor:
                table.setdefault(topic, {})[str(qid)] = end
        data = json.dumps(table, sort_keys=True).encode()
        self._marker_writes += 1

        def done(r: Any) -> Any:
            self._marker_writes -= 1
            if self.running and not self._marker_writes:
                self._group_commit()
            return r

        args = (os.path.join(self.root, DELETED_QUEUES_FILE), data, self._cq_root)
        if self._pool is None and self._run_blocking is None:  # not started: no thread pool
            d: Deferred[Any] = maybeDeferred(_write_deleted_sync, *args)
        else:
            d = self._run(_write_deleted_sync, *args)
        return d.addBoth(done).addCallback(lambda _: result)

    def _load_deleted(self) -> None:
        data = read_with_backup(os.path.join(self.root, DELETED_QUEUES_FILE), json.loads)
        self._deleted = {}
        if data is None:
            return
        for topic, queues in json.loads(data).items():
            for qid, end in queues.items():
                self._deleted[(topic, int(qid))] = int(end)

    # --- replication (IReplicaStore) ---------------------------------------------------------

    def commit_log_file_size(self) -> int:
        """``mappedFileSizeCommitLog``."""
        return self.config.mapped_file_size_commit_log

    def read_commit_log(self, offset: int, max_bytes: int) -> bytes:
        """Raw appended bytes from ``offset`` within its file (Java ``CommitLog.getData``)."""
        return read_raw(self.commitlog, offset, max_bytes)

    def append_replica(self, offset: int, data: bytes) -> None:
        """Append a master's bytes at the end and dispatch every record now complete."""
        if not self.commitlog.files.files:
            self._replica_next = offset
        append_raw(self.commitlog, offset, data)
        records, nxt = dispatchable(self.commitlog, self._replica_next)
        for phys, rec in records:
            in_cq = goes_to_consume_queue(rec.sys_flag)
            props = rec.properties
            ts = rec.store_timestamp
            tags = dispatch_tags_code(rec.topic, rec.tags_code, props, ts, self._delays)
            if in_cq:
                key = (rec.topic, rec.queue_id)
                self._next_qoff[key] = max(self._next_qoff.get(key, 0), rec.queue_offset + 1)
            keys = (
                index_keys(rec.topic, props)
                if self._index_on and (rec.sys_flag & 0xC) != 0xC
                else None
            )
            self._dispatch_record(
                phys,
                rec.size,
                rec.topic,
                rec.queue_id,
                rec.queue_offset if in_cq else -1,
                tags,
                ts,
                keys,
            )
            self._last_ts = max(self._last_ts, ts)
            self._last_appended_ts = ts
        self._replica_next = nxt
        # ASYNC_FLUSH: the flush tick fsyncs the replicated bytes (they are dirty, not flushed).
        if self._sync:
            self._group_commit()

    # --- recovery -----------------------------------------------------------------------------

    def _load_consume_queues(self) -> None:
        if not os.path.isdir(self._cq_root):
            return
        for topic in sorted(os.listdir(self._cq_root)):
            tdir = os.path.join(self._cq_root, topic)
            if not os.path.isdir(tdir):
                continue
            for q in sorted(os.listdir(tdir)):
                if not q.isdigit():
                    continue
                cq = self._cq(topic, int(q))
                cq.recover()
                removed_at = self._deleted.get((topic, cq.queue_id))
                if removed_at is not None and _older_than(cq, removed_at):
                    # removed before the crash, but the removal had not reached the disk
                    self._drop_queues({(topic, cq.queue_id)})
                    self._deleted[(topic, cq.queue_id)] = removed_at

    def _read_checkpoint(self) -> tuple[int, int, int]:
        try:
            with open(os.path.join(self.root, "checkpoint"), "rb") as f:
                data = f.read(24)
        except FileNotFoundError:
            return 0, 0, 0
        if len(data) < 24:
            return 0, 0, 0
        return _CHECKPOINT.unpack(data)  # type: ignore[return-value]

    def _recover(self, abnormal: bool) -> None:
        """Load files, check the commit-log tail, re-dispatch and truncate (Java ``recover``)."""
        self.recovered_abnormally = abnormal
        cl = self.commitlog
        cl.load()
        self._load_deleted()
        self._load_consume_queues()
        self.index.load()
        files = cl.files.files
        if not files:
            cl.truncate(0)
            return
        phys_ts, logics_ts, index_ts = self._read_checkpoint()
        if abnormal:
            limit = min(phys_ts, logics_ts) - 3000
            if self.config.message_index_safe:
                limit = min(limit, index_ts)
            start = 0
            for i in range(len(files) - 1, -1, -1):
                mf = files[i]
                size, _magic = struct.unpack_from(">ii", mf.mm, 0)
                if size <= 0:
                    continue
                (sys_flag,) = _I32.unpack_from(mf.mm, 36)
                born = 20 if sys_flag & 0x10 else 8
                (ts,) = _I64.unpack_from(mf.mm, 48 + born)
                if 0 < ts <= limit:
                    start = i
                    break
        else:
            start = max(0, len(files) - 3)
        end = self._scan_and_dispatch(start)
        cl.truncate(end)
        for cq in self._cqs.values():
            cq.truncate_phys(end)
            cq.correct_min_offset(cl.min_offset)
        self._next_qoff = {k: cq.max_offset for k, cq in self._cqs.items()}
        self._deleted = {k: v for k, v in self._deleted.items() if v > cl.min_offset}
        self._flushed = end
        self._replica_next = end
        last_ts = cl.store_ts_at(self._last_record) if self._last_record >= 0 else 0
        self._last_ts = max(last_ts, 0)
        self._last_appended_ts = self._flushed_ts = self._last_ts
        self._last_dispatched_ts = self._cq_flushed_ts = self._last_ts

    def _scan_and_dispatch(self, start: int) -> int:
        """Check records from file ``start`` on; re-dispatch those the queues or index lack.

        Returns the offset after the last valid record."""
        cl = self.commitlog
        check_crc = self.config.check_crc_on_recover
        index_end = self.index.end_phy
        index_on = self.config.message_index_enable
        files = cl.files.files
        end = files[start].start
        topics: dict[bytes, str] = {}
        cqs = self._cqs
        deleted = self._deleted
        fix = _FIXED_V4
        fix_unpack = fix.unpack_from
        crc32 = zlib.crc32
        magic_ok = MESSAGE_MAGIC_CODE
        for mf in files[start:]:
            pos = 0
            limit = mf.size
            stop = False
            base = mf.start
            with memoryview(mf.mm) as mv:
                while True:
                    # Fast path: IPv4 hosts, checked inline (same rules as check_record).
                    if pos + 91 <= limit:
                        (
                            size,
                            magic,
                            crc,
                            qid,
                            _f,
                            qoff,
                            _ph,
                            sys_flag,
                            _bt,
                            _bh,
                            store_ts,
                            _sh,
                            _rc,
                            _pt,
                            blen,
                        ) = fix_unpack(mv, pos)
                    else:
                        magic = 0
                    if magic == magic_ok and not sys_flag & 0x30:
                        rec_end = pos + size
                        p = pos + 88 + blen
                        if (
                            size < 91
                            or rec_end > limit
                            or blen < 0
                            or p + 3 > rec_end
                            or (check_crc and crc32(mv[pos + 88 : p]) & 0x7FFFFFFF != crc)
                        ):
                            stop = True
                            break
                        tlen = mv[p]
                        q = p + 1 + tlen
                        if q + 2 > rec_end:
                            stop = True
                            break
                        plen = (mv[q] << 8) | mv[q + 1]
                        if (
                            q + 2 + plen != rec_end
                            or tlen > 127
                            or (mv[rec_end - 1] == 0 if plen else (tlen and mv[q - 1] == 0))
                        ):
                            stop = True
                            break
                    else:
                        size = check_record(mv, pos, limit, check_crc)
                        if size == 0:  # blank: go to the next file
                            end = mf.end
                            break
                        if size < 0:
                            stop = True
                            break
                        (_, _, _, qid, _, qoff, _, sys_flag, _) = _HEAD.unpack_from(mv, pos)
                        born = 20 if sys_flag & 0x10 else 8
                        (store_ts,) = _I64.unpack_from(mv, pos + 48 + born)
                        p = pos + 64 + born + (20 if sys_flag & 0x20 else 8)
                        (blen,) = _I32.unpack_from(mv, p)
                        p += 4 + blen
                        tlen = mv[p]
                        q = p + 1 + tlen
                        plen = (mv[q] << 8) | mv[q + 1]
                    phys = base + pos
                    self._last_record = phys
                    traw = mv[p + 1 : q].tobytes()
                    topic = topics.get(traw)
                    if topic is None:
                        topic = topics[traw] = traw.decode("utf-8", "replace")
                    in_cq = not sys_flag & 0x4
                    need_cq = False
                    if in_cq:
                        cq = cqs.get((topic, qid))
                        need_cq = cq is None or qoff >= cq.max_offset
                        if need_cq and deleted and phys < deleted.get((topic, qid), -1):
                            need_cq = False  # its queue was removed after it was stored
                    need_index = index_on and phys > index_end
                    if need_cq or need_index:
                        props = string_to_properties(str(mv[q + 2 : q + 2 + plen], "utf-8"))
                        tags = dispatch_tags_code(
                            topic, tags_hash(props.get(TAGS)), props, store_ts, self._delays
                        )
                        if need_cq:
                            self._cq(topic, qid).put(qoff, phys, size, tags)
                        if need_index and (sys_flag & 0xC) != 0xC:
                            keys = index_keys(topic, props)
                            if keys:
                                self.index.put_keys(keys, phys, store_ts, store_ts)
                    pos += size
                    end = base + pos
            if stop:
                break
        return end

    # --- retention ----------------------------------------------------------------------------

    def _check_disk(self) -> None:
        try:
            ratio = self._disk_usage(self.root)
        except OSError:
            self.log.failure("Disk usage probe failed")
            return
        self._disk_ratio = ratio
        full = ratio >= self.config.disk_space_warning_level_ratio
        if full and not self._disk_full:
            self.log.error(
                "Disk usage {ratio:.0%} above {limit:.0%}: refusing puts",
                ratio=ratio,
                limit=self.config.disk_space_warning_level_ratio,
            )
        elif self._disk_full and not full:
            self.log.info("Disk usage {ratio:.0%}: accepting puts again", ratio=ratio)
        self._disk_full = full

    def _clean_tick(self) -> None:
        """Delete expired commit-log files at deleteWhen or when the disk is over the ratio;
        above diskSpaceCleanForciblyRatio delete the oldest files even if not expired."""
        self._check_disk()
        now = self._clock.seconds()
        hours = {int(h) for h in self.config.delete_when.split(";") if h.strip().isdigit()}
        at_hour = time.localtime(now).tm_hour in hours
        over = self._disk_ratio * 100 >= self.config.disk_max_used_space_ratio
        force = self._disk_ratio >= self.config.disk_space_clean_forcibly_ratio
        if not (at_hour or over or force):
            return
        self.delete_expired_files(now, force=force)

    def delete_expired_files(self, now: float, force: bool = False) -> int:
        """Delete leading commit-log files older than fileReservedTime (any age when ``force``,
        at most 10 per call, like Java's cleanImmediately), never the last one; then
        consume-queue and index files wholly below the new minimum. Returns files deleted."""
        keep_s = self.config.file_reserved_time_hours * 3600
        self._drain_index()
        files = self.commitlog.files.files
        deleted = 0
        busy = self._busy_fds  # never close a file a flush thread is syncing
        while (
            len(files) > 1
            and files[0].fd not in busy
            and ((force and deleted < 10) or now - os.path.getmtime(files[0].path) > keep_s)
        ):
            mf = files.pop(0)
            self.log.info(
                "Deleting {how} commit-log file {path}",
                how="expired"
                if now - os.path.getmtime(mf.path) > keep_s
                else "unexpired (disk full)",
                path=mf.path,
            )
            mf.destroy()
            deleted += 1
        if deleted:
            phy_min = self.commitlog.min_offset
            for cq in self._cqs.values():
                cq.delete_files_below(phy_min, busy)
            self.index.delete_below(phy_min, busy)
        return deleted


def _older_than(cq: ConsumeQueue, removed_at: int) -> bool:
    """True when ``cq`` is the queue removed at commit-log offset ``removed_at`` (its first
    unit is a filler or points below it), not one re-created after the removal."""
    if cq.max_offset <= cq.min_offset:
        return True
    unit = cq.read_unit(cq.min_offset)
    return unit is None or unit[1] == FILLER_SIZE or unit[0] < removed_at


def _rmdir(path: str) -> None:
    """Remove ``path`` if it is an empty directory."""
    try:
        os.rmdir(path)
    except OSError:
        pass


def _write_deleted_sync(path: str, data: bytes, cq_root: str) -> None:
    """Write ``deletedQueues.json`` atomically and make the queue directories' removal durable
    (runs in a flush thread)."""
    write_atomic(path, data)
    try:
        fd = os.open(cq_root, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_sync(path: str, data: bytes) -> None:
    """Write ``data`` at the start of ``path`` and fsync it (runs in a flush thread)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _topic_and_props(raw: bytes) -> tuple[str, str]:
    """Topic and property string of one encoded record."""
    (sys_flag,) = _I32.unpack_from(raw, 36)
    p = 84 + (12 if sys_flag & 0x10 else 0) + (12 if sys_flag & 0x20 else 0)
    (blen,) = _I32.unpack_from(raw, p)
    p += 4 + blen
    tlen = raw[p]
    topic = raw[p + 1 : p + 1 + tlen].decode("utf-8", "replace")
    p += 1 + tlen
    (plen,) = _I16.unpack_from(raw, p)
    return topic, raw[p + 2 : p + 2 + plen].decode("utf-8", "replace")
