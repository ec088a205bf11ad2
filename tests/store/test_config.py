"""MessageStoreConfig: RocketMQ key names through rmq.common.config.load_config."""

from __future__ import annotations

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.config import load_config
from rmq.store.config import MessageStoreConfig, parse_delay_levels


class MessageStoreConfigTests(SynchronousTestCase):
    """Keys, defaults and validation."""

    def test_defaults(self) -> None:
        """Defaults are RocketMQ 4.9's."""
        c = MessageStoreConfig()
        self.assertEqual(c.mapped_file_size_commit_log, 1 << 30)
        self.assertEqual(c.mapped_file_size_consume_queue, 6_000_000)
        self.assertEqual((c.max_hash_slot_num, c.max_index_num), (5_000_000, 20_000_000))
        self.assertEqual((c.flush_disk_type, c.flush_interval_commit_log_ms), ("ASYNC_FLUSH", 500))
        self.assertEqual((c.sync_flush_timeout_ms, c.file_reserved_time_hours), (5000, 72))
        self.assertEqual((c.delete_when, c.disk_max_used_space_ratio), ("04", 75))

    def test_rocketmq_keys(self) -> None:
        """A broker.conf with RocketMQ key names sets the fields."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "storePathRootDir=/data/store\nflushDiskType=SYNC_FLUSH\n"
                "mappedFileSizeCommitLog=1048576\nmaxHashSlotNum=100\nfileReservedTime=48\n"
            )
        c = load_config(MessageStoreConfig, path)
        self.assertEqual(c.store_path_root_dir, "/data/store")
        self.assertEqual(c.commit_log_dir, "/data/store/commitlog")
        self.assertTrue(c.sync_flush)
        self.assertEqual((c.mapped_file_size_commit_log, c.max_hash_slot_num), (1048576, 100))
        self.assertEqual(c.file_reserved_time_hours, 48)

    def test_bad_flush_type(self) -> None:
        """An unknown flushDiskType is refused with a UsageError."""
        self.assertRaises(
            UsageError, load_config, MessageStoreConfig, None, {"flushDiskType": "SOMETIMES"}
        )

    def test_delay_levels(self) -> None:
        """The delay-level string parses into milliseconds per level."""
        levels = parse_delay_levels("1s 5m 2h 1d")
        self.assertEqual(levels, {1: 1000, 2: 300_000, 3: 7_200_000, 4: 86_400_000})
        self.assertEqual(len(MessageStoreConfig().delay_levels_ms()), 18)
        self.assertRaises(ValueError, parse_delay_levels, "1s 5x")
