"""rmq.testing's test clusters: small store files, indifferent to the host's disk usage."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from rmq.store.filestore import FileMessageStore
from rmq.testing import start_local_cluster


class TestClusterStoreDefaultsTests(TestCase):
    async def test_file_store_uses_small_files_and_ignores_disk_usage(self) -> None:
        """A file-store test cluster has 16 MiB commit-log files and only refuses a full disk."""
        cluster = await start_local_cluster(reactor, file_store=True)
        self.addCleanup(cluster.stop)
        store = cluster.store
        assert isinstance(store, FileMessageStore)
        self.assertEqual(store.config.mapped_file_size_commit_log, 16 * 1024 * 1024)
        self.assertEqual(store.config.disk_space_warning_level_ratio, 1.0)
        self.assertEqual(store.config.disk_max_used_space_ratio, 100)

    async def test_caller_properties_win(self) -> None:
        """broker_properties given by the caller override the test-cluster store defaults."""
        cluster = await start_local_cluster(
            reactor,
            file_store=True,
            broker_properties={"mappedFileSizeCommitLog": str(4 * 1024 * 1024)},
        )
        self.addCleanup(cluster.stop)
        store = cluster.store
        assert isinstance(store, FileMessageStore)
        self.assertEqual(store.config.mapped_file_size_commit_log, 4 * 1024 * 1024)
