"""A store written by Apache RocketMQ 4.9.7 and left by ``kill -9`` opens and serves its data."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.message import MessageExt, decode_messages
from rmq.store.config import MessageStoreConfig
from rmq.store.filestore import FileMessageStore
from rmq.store.interfaces import GetMessageResult, PutMessageStatus
from tests.store.contract import make_msg
from tests.store.test_filestore import run_now

VECTORS = Path("/work/shared/vectors")
_here = Path(__file__).resolve().parents[3] / "shared" / "vectors"
if _here.exists():
    VECTORS = _here
CRASH = VECTORS / "store-crash-4.9.7"


class RocketMQ497CrashStoreTests(SynchronousTestCase):
    """vectors/store-crash-4.9.7 goes through abnormal recovery and serves every message."""

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(self.root)
        with tarfile.open(CRASH / "store.tar.gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(self.root, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(self.root)  # noqa: S202 - our own vector file
        self.manifest = json.loads((CRASH / "manifest.json").read_text())["sent"]
        config = MessageStoreConfig(
            store_path_root_dir=self.root,
            mapped_file_size_commit_log=1048576,
            mapped_file_size_consume_queue=1200,
            max_hash_slot_num=100,
            max_index_num=400,
        )
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = FileMessageStore(config, self.clock, run_blocking=run_now)
        self.successResultOf(self.store.start())
        self.addCleanup(lambda: self.successResultOf(self.store.stop()))

    def _read_all(self) -> dict[tuple[str, str], MessageExt]:
        found: dict[tuple[str, str], MessageExt] = {}
        for topic, qids in self.store.topic_queues().items():
            for q in qids:
                off = self.store.get_min_offset_in_queue(topic, q)
                while True:
                    g: GetMessageResult = self.successResultOf(
                        self.store.get_messages(topic, q, off, 32)
                    )
                    if not g.messages:
                        break
                    for m in decode_messages(g.body(), check_crc=True):
                        self.assertEqual((m.topic, m.queue_id), (topic, q))
                        found[(m.topic, m.properties.get("seq", ""))] = m
                    off = g.next_begin_offset
        return found

    def test_abnormal_recovery_serves_manifest(self) -> None:
        """Every manifest message is served on its real topic with body, tags and key intact."""
        self.assertTrue(self.store.recovered_abnormally)
        found = self._read_all()
        for e in self.manifest:
            m = found.get((e["topic"], str(e["seq"])))
            assert m is not None, e
            self.assertEqual(hashlib.sha256(m.body).hexdigest(), e["body_sha256"], e)
            self.assertEqual(len(m.body), e["body_len"])
            self.assertEqual(m.tags, e["tags"])
            self.assertEqual(m.keys, [e["keys"]])
        delayed = [e for e in self.manifest if e["delay_level"]]
        self.assertEqual(len(delayed), 30)

    def test_keys_and_unique_keys_through_index(self) -> None:
        """Every key and every unique key is found through the 4.9.7 index files."""
        for e in self.manifest:
            q = self.successResultOf(self.store.query_message(e["topic"], e["keys"], 32, 0, 2**62))
            ms = decode_messages(q.body())
            self.assertIn(str(e["seq"]), [m.properties.get("seq") for m in ms], e)
            q = self.successResultOf(
                self.store.query_message(e["topic"], e["msg_id"], 32, 0, 2**62)
            )
            self.assertIn(e["msg_id"], [m.unique_key for m in decode_messages(q.body())])

    def test_new_puts_after_last_record(self) -> None:
        """New puts land after the recovered end with the next queue offset, and survive reopen."""
        end = self.store.get_max_phy_offset()
        nxt = self.store.get_max_offset_in_queue("FixtureA", 0)
        r = self.successResultOf(self.store.put_message(make_msg(topic="FixtureA", body=b"new")))
        self.assertEqual(r.status, PutMessageStatus.PUT_OK)
        self.assertEqual((r.wrote_offset, r.queue_offset), (end, nxt))
        g = self.successResultOf(self.store.get_messages("FixtureA", 0, nxt, 32))
        self.assertEqual([m.body for m in decode_messages(g.body())], [b"new"])
