"""Command lines of twistd rmq-broker and rmq-standalone, and broker.conf loading."""

from __future__ import annotations

import os

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.config import load_broker_config
from rmq.broker.tap import Options
from rmq.standalone import Options as StandaloneOptions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BrokerOptionsTests(SynchronousTestCase):
    def test_worked_example(self) -> None:
        """etc/broker-a.conf loads; command-line options override it."""
        options = Options()
        options.parseOptions(
            ["-c", os.path.join(REPO, "etc", "broker-a.conf"), "-p", "10999", "-n", "h:1;h:2"]
        )
        config, store = options.broker_config, options.store_config
        self.assertEqual((config.broker_name, config.listen_port), ("broker-a", 10999))
        self.assertEqual(config.namesrv_addrs, ["h:1", "h:2"])
        self.assertEqual(store.flush_disk_type, "ASYNC_FLUSH")
        self.assertEqual(store.store_path_root_dir, config.store_path_root_dir)
        self.assertFalse(options["memory-store"])

    def test_bad_value_names_key(self) -> None:
        """A bad value is a usage error naming the key."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("defaultTopicQueueNums=many\n")
        with self.assertRaises(UsageError) as cm:
            load_broker_config(path)
        self.assertIn("defaultTopicQueueNums", str(cm.exception))
        with open(path, "w") as f:
            f.write("brokerRole=BOSS\n")
        with self.assertRaises(UsageError) as cm:
            load_broker_config(path)
        self.assertIn("brokerRole", str(cm.exception))

    def test_unknown_key_logged(self) -> None:
        """An unknown key is logged by name and otherwise ignored."""
        from twisted.logger import capturedLogs

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("noSuchKey=1\nflushDiskType=SYNC_FLUSH\n")
        with capturedLogs() as events:
            config, store = load_broker_config(path)
        self.assertEqual(store.flush_disk_type, "SYNC_FLUSH")
        self.assertEqual([e.get("key") for e in events if e.get("key")], ["noSuchKey"])

    def test_missing_file(self) -> None:
        """An unreadable config file is a usage error."""
        self.assertRaises(UsageError, load_broker_config, self.mktemp())


class StandaloneOptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Defaults: NameServer 9876, broker 10911, data ./data."""
        options = StandaloneOptions()
        options.parseOptions([])
        props = options.broker_properties()
        self.assertEqual(props["listenPort"], "10911")
        self.assertEqual(props["namesrvAddr"], "127.0.0.1:9876")
        self.assertEqual(props["storePathRootDir"], os.path.abspath(os.path.join("data", "store")))

    def test_bad_port(self) -> None:
        """A non-numeric port is refused."""
        self.assertRaises(UsageError, StandaloneOptions().parseOptions, ["--broker-port", "x"])
