"""Slave metadata copy (rmq.broker.slave_sync) against the 4.9.7 master's captured answers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.config import configs_from_properties
from rmq.broker.ha import HAService, install_ha
from rmq.broker.service import build_broker
from rmq.broker.slave_sync import SlaveSynchronize
from rmq.remoting.codes import RequestCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.store.memory import MemoryMessageStore
from tests.support.vectors import load_command

VECTORS: dict[int, str] = {
    RequestCode.GET_ALL_CONSUMER_OFFSET: "broker-slave-get-all-consumer-offset",
    RequestCode.GET_ALL_DELAY_OFFSET: "broker-slave-get-all-delay-offset",
    RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG: "broker-slave-get-all-subscriptiongroup-config",
    RequestCode.GET_ALL_TOPIC_CONFIG: "probe-get-all-topic-config",
}


class VectorMaster:
    """Answers the slave's requests with the captured 4.9.7 responses; records them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, RemotingCommand]] = []

    def invoke(self, addr: str, command: RemotingCommand, timeout: float = 3.0) -> Any:
        self.requests.append((addr, command))
        name = VECTORS.get(command.code)
        if name is None:
            return succeed(new_response(command, ext_fields={}))
        resp = load_command(f"{name}.resp.hex")
        return succeed(new_response(command, resp.code, resp.remark, body=resp.body))

    def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]:
        return succeed(None)


class SlaveSynchronizeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        config, store_config = configs_from_properties(
            {"brokerRole": "SLAVE", "brokerId": "1", "storePathRootDir": self.mktemp()}
        )
        store = MemoryMessageStore(self.clock, store_config)
        self.master = VectorMaster()
        self.broker = build_broker(config, self.clock, store, self.master)
        self.ha = HAService(config, store, self.clock, connect=lambda addr: None)  # type: ignore[arg-type,return-value]
        install_ha(self.broker, self.ha)
        self.sync = self.ha.slave_sync
        assert isinstance(self.sync, SlaveSynchronize)

    def test_requests_match_the_java_slave(self) -> None:
        """The four requests carry the codes of a 4.9.7 slave and no header, to masterAddr."""
        self.ha.master_addr = "127.0.0.1:10911"
        self.successResultOf(self.sync.sync_all())
        self.assertEqual(
            [c.code for _, c in self.master.requests],
            [21, 43, 45, 201],
        )
        for name in ("consumer-offset", "delay-offset", "subscriptiongroup-config"):
            java = load_command(f"broker-slave-get-all-{name}.req.hex")
            (ours,) = [c for _, c in self.master.requests if c.code == java.code]
            self.assertEqual((ours.ext_fields, ours.body), (java.ext_fields, java.body))
        self.assertEqual({a for a, _ in self.master.requests}, {"127.0.0.1:10911"})

    def test_tables_loaded_from_master(self) -> None:
        """Topics, offsets, delay offsets and groups of the master end up in the slave's tables."""
        self.ha.master_addr = "127.0.0.1:10911"
        self.successResultOf(self.sync.sync_all())
        self.assertIsNotNone(self.broker.topics.select("TopicJ"))
        self.assertEqual(self.broker.offsets.query_offset("CG_JAVA", "TopicJ", 1), 4)
        self.assertIsNotNone(self.broker.groups.find("CG_JAVA"))
        (delay,) = [t for t in self.broker.tables if t.file_name == "delayOffset.json"]
        self.assertEqual(delay.offsets, {2: 1, 3: 4})
        self.assertEqual(self.sync.rounds, 1)

    def test_round_runs_when_master_learned_and_every_ten_seconds(self) -> None:
        """Learning masterAddr from registration starts a round; then one every 10 s."""
        self.successResultOf(self.sync.start())
        self.addCleanup(self.sync.stop)
        self.ha.registered(
            RemotingCommand(
                code=0,
                ext_fields={"masterAddr": "127.0.0.1:10911", "haServerAddr": ""},
            )
        )
        self.assertEqual(self.sync.rounds, 1)
        self.clock.advance(10)
        self.assertEqual(self.sync.rounds, 2)
