"""Tests for rmq.namesrv.routeinfo.RouteInfoManager: registration, routes, liveness, admin."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.route import BrokerData, DataVersion, QueueData
from rmq.namesrv.routeinfo import RouteInfoManager

CLUSTER = "DefaultCluster"
A_MASTER = "127.0.0.1:10911"
A_SLAVE = "127.0.0.1:10921"
B_MASTER = "127.0.0.1:20911"


def topics(*specs: tuple[str, int, int, int]) -> dict[str, dict[str, Any]]:
    """Topic configs in Java's JSON shape from (name, read, write, perm) tuples."""
    return {
        name: {
            "topicName": name,
            "readQueueNums": r,
            "writeQueueNums": w,
            "perm": p,
            "topicSysFlag": 0,
            "topicFilterType": "SINGLE_TAG",
            "order": False,
        }
        for name, r, w, p in specs
    }


class RouteInfoManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.routes = RouteInfoManager(self.clock)

    def register(
        self,
        addr: str = A_MASTER,
        name: str = "broker-a",
        broker_id: int = 0,
        tcs: dict[str, dict[str, Any]] | None = None,
        version: DataVersion | None = None,
        channel: str | None = None,
        cluster: str = CLUSTER,
        filters: list[str] | None = None,
    ) -> Any:
        if tcs is None:
            tcs = topics(("TopicA", 4, 4, 6))
        return self.routes.register_broker(
            cluster,
            addr,
            name,
            broker_id,
            addr.replace("911", "912").replace("921", "922"),
            version or DataVersion(1, 1),
            tcs,
            filters if filters is not None else [],
            channel,
        )

    def test_master_registration_creates_route(self) -> None:
        """A master's registration creates cluster, broker and queue data seen in the route."""
        result = self.register()
        self.assertIsNone(result.master_addr)
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual(route.queue_datas, [QueueData("broker-a", 4, 4, 6, 0)])
        self.assertEqual(route.broker_datas, [BrokerData(CLUSTER, "broker-a", {0: A_MASTER})])
        self.assertEqual(route.filter_server_table, {})
        self.assertIsNone(self.routes.pickup_topic_route_data("Nope"))
        self.assertEqual(list(self.routes.cluster_addr_table), [CLUSTER])

    def test_route_is_a_copy(self) -> None:
        """Changing a returned route does not change the manager's state."""
        self.register()
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        route.broker_datas[0].broker_addrs[5] = "x"
        route.queue_datas[0].perm = 0
        again = self.routes.pickup_topic_route_data("TopicA")
        assert again is not None
        self.assertEqual(again.broker_datas[0].broker_addrs, {0: A_MASTER})
        self.assertEqual(again.queue_datas[0].perm, 6)

    def test_slave_learns_master_and_never_changes_queue_data(self) -> None:
        """A slave's answer names the master and its HA address; its topic configs are ignored."""
        self.register()
        result = self.register(
            A_SLAVE, broker_id=1, tcs=topics(("TopicA", 1, 1, 4), ("SlaveOnly", 1, 1, 6))
        )
        self.assertEqual((result.master_addr, result.ha_server_addr), (A_MASTER, "127.0.0.1:10912"))
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual(route.queue_datas, [QueueData("broker-a", 4, 4, 6, 0)])
        self.assertEqual(route.broker_datas[0].broker_addrs, {0: A_MASTER, 1: A_SLAVE})
        self.assertIsNone(self.routes.pickup_topic_route_data("SlaveOnly"))

    def test_slave_without_master(self) -> None:
        """A slave whose master is not registered gets no master address."""
        result = self.register(A_SLAVE, broker_id=1)
        self.assertIsNone(result.master_addr)
        self.assertIsNone(result.ha_server_addr)

    def test_queue_data_updated_only_when_data_version_changes(self) -> None:
        """Re-registering with the same DataVersion keeps queue data; a new version replaces it."""
        self.register(version=DataVersion(1, 1))
        self.register(
            tcs=topics(("TopicA", 8, 8, 6), ("TopicB", 2, 2, 6)), version=DataVersion(1, 1)
        )
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual(route.queue_datas[0].read_queue_nums, 4)
        self.assertIsNone(self.routes.pickup_topic_route_data("TopicB"))
        self.register(
            tcs=topics(("TopicA", 8, 8, 6), ("TopicB", 2, 2, 6)), version=DataVersion(1, 2)
        )
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual(route.queue_datas[0].read_queue_nums, 8)
        self.assertIsNotNone(self.routes.pickup_topic_route_data("TopicB"))

    def test_vanished_topics_stay(self) -> None:
        """A topic missing from a later registration keeps its queue data (as in Java)."""
        self.register(version=DataVersion(1, 1))
        self.register(tcs=topics(("TopicB", 2, 2, 6)), version=DataVersion(1, 2))
        self.assertEqual(sorted(self.routes.get_all_topic_list()), ["TopicA", "TopicB"])

    def test_slave_switch_to_master_replaces_id(self) -> None:
        """An address re-registering under another brokerId loses its old id entry."""
        self.register(A_SLAVE, broker_id=1)
        self.register(A_SLAVE, broker_id=0)
        self.assertEqual(self.routes.broker_addr_table["broker-a"].broker_addrs, {0: A_SLAVE})

    def test_two_brokers_one_topic(self) -> None:
        """A topic on two broker groups has queue data and broker data for both."""
        self.register()
        self.register(B_MASTER, name="broker-b", tcs=topics(("TopicA", 2, 2, 6)))
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual({q.broker_name for q in route.queue_datas}, {"broker-a", "broker-b"})
        self.assertEqual({b.broker_name for b in route.broker_datas}, {"broker-a", "broker-b"})

    def test_filter_servers(self) -> None:
        """Filter servers appear in the route for their broker; an empty list removes them."""
        self.register(filters=["127.0.0.1:30000"])
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual(route.filter_server_table, {A_MASTER: ["127.0.0.1:30000"]})
        self.register(filters=[])
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual(route.filter_server_table, {})

    def test_unregister_last_address_removes_everything(self) -> None:
        """Unregistering the only address removes broker, cluster and the topics left empty."""
        self.register()
        self.register(
            B_MASTER, name="broker-b", tcs=topics(("TopicA", 2, 2, 6), ("TopicB", 1, 1, 6))
        )
        self.routes.unregister_broker(CLUSTER, B_MASTER, "broker-b", 0)
        self.assertNotIn("broker-b", self.routes.broker_addr_table)
        self.assertEqual(list(self.routes.cluster_addr_table[CLUSTER]), ["broker-a"])
        self.assertEqual(self.routes.get_all_topic_list(), ["TopicA"])
        self.routes.unregister_broker(CLUSTER, A_MASTER, "broker-a", 0)
        self.assertEqual(self.routes.cluster_addr_table, {})
        self.assertEqual(self.routes.topic_queue_table, {})
        self.assertEqual(self.routes.broker_live_table, {})

    def test_unregister_logs_once_per_broker(self) -> None:
        """Removing a broker with many topics logs one event with the count, not one per topic."""
        many = topics(*((f"T{i}", 1, 1, 6) for i in range(1000)))
        self.register(tcs=many)
        self.register(B_MASTER, name="broker-b", tcs=topics(("T0", 1, 1, 6)))
        with capturedLogs() as events:
            self.routes.unregister_broker(CLUSTER, A_MASTER, "broker-a", 0)
        self.assertEqual(len(self.routes.topic_queue_table), 1)
        removed = [e for e in events if "removed" in e]
        self.assertEqual([(e["broker_name"], e["removed"]) for e in removed], [("broker-a", 999)])
        self.assertLessEqual(len(events), 2)

    def test_unregister_master_keeps_route_via_slave(self) -> None:
        """With a slave left, the topic's queue data stays and the route lists only the slave."""
        self.register()
        self.register(A_SLAVE, broker_id=1)
        self.routes.unregister_broker(CLUSTER, A_MASTER, "broker-a", 0)
        route = self.routes.pickup_topic_route_data("TopicA")
        assert route is not None
        self.assertEqual(route.broker_datas[0].broker_addrs, {1: A_SLAVE})

    def test_scan_drops_silent_brokers(self) -> None:
        """A broker silent for more than 120 s is dropped by the scan; a fresh one is kept."""
        self.register(channel="127.0.0.1:50001")
        self.clock.advance(60)
        self.register(B_MASTER, name="broker-b", tcs=topics(("TopicB", 1, 1, 6)))
        self.clock.advance(60)
        self.assertEqual(self.routes.scan_not_active_broker(), [])
        self.clock.advance(0.5)
        expired = self.routes.scan_not_active_broker()
        self.assertEqual(
            [(a, live.channel) for a, live in expired], [(A_MASTER, "127.0.0.1:50001")]
        )
        self.assertIsNone(self.routes.pickup_topic_route_data("TopicA"))
        self.assertIsNotNone(self.routes.pickup_topic_route_data("TopicB"))

    def test_query_data_version_refreshes(self) -> None:
        """update_broker_info_update_timestamp keeps a broker alive past the original deadline."""
        self.register(version=DataVersion(5, 6))
        self.assertFalse(self.routes.is_broker_topic_config_changed(A_MASTER, DataVersion(5, 6)))
        self.assertTrue(self.routes.is_broker_topic_config_changed(A_MASTER, DataVersion(5, 7)))
        self.assertTrue(self.routes.is_broker_topic_config_changed(B_MASTER, DataVersion(5, 6)))
        self.assertEqual(self.routes.query_broker_topic_config(A_MASTER), DataVersion(5, 6))
        self.clock.advance(100)
        self.routes.update_broker_info_update_timestamp(A_MASTER)
        self.clock.advance(100)
        self.assertEqual(self.routes.scan_not_active_broker(), [])

    def test_channel_destroy(self) -> None:
        """Closing the registering connection drops the broker at once; others do nothing."""
        self.register(channel="127.0.0.1:50001")
        self.register(A_SLAVE, broker_id=1, channel="127.0.0.1:50002")
        self.assertEqual(self.routes.on_channel_destroy("127.0.0.1:59999"), [])
        self.assertEqual(self.routes.on_channel_destroy("127.0.0.1:50001"), [A_MASTER])
        self.assertEqual(self.routes.broker_addr_table["broker-a"].broker_addrs, {1: A_SLAVE})
        self.assertEqual(self.routes.on_channel_destroy("127.0.0.1:50002"), [A_SLAVE])
        self.assertEqual(self.routes.broker_addr_table, {})
        self.assertEqual(self.routes.topic_queue_table, {})

    def test_channel_destroy_falls_back_to_broker_address(self) -> None:
        """A closed connection whose address equals a broker address drops that broker."""
        self.register()
        self.assertEqual(self.routes.on_channel_destroy(A_MASTER), [A_MASTER])

    def test_cluster_info_and_topic_lists(self) -> None:
        """Cluster info, topics by cluster and the system topic list reflect registrations."""
        self.register()
        self.register(B_MASTER, name="broker-b", cluster="C2", tcs=topics(("TopicB", 1, 1, 6)))
        info = self.routes.get_all_cluster_info()
        self.assertEqual(info.cluster_addr_table, {CLUSTER: ["broker-a"], "C2": ["broker-b"]})
        self.assertEqual(info.broker_addr_table["broker-b"].broker_addrs, {0: B_MASTER})
        self.assertEqual(self.routes.get_topics_by_cluster("C2"), ["TopicB"])
        self.assertEqual(self.routes.get_topics_by_cluster("nope"), [])
        names, addr = self.routes.get_system_topic_list()
        self.assertEqual(names, [CLUSTER, "broker-a", "C2", "broker-b"])
        self.assertEqual(addr, A_MASTER)
        self.assertEqual(RouteInfoManager(self.clock).get_system_topic_list(), ([], None))

    def test_unit_topic_lists(self) -> None:
        """Unit lists select topics by the sys-flag bits of their queue data."""
        tcs = topics(("Plain", 1, 1, 6), ("Unit", 1, 1, 6), ("UnitSub", 1, 1, 6), ("Both", 1, 1, 6))
        tcs["Unit"]["topicSysFlag"] = 1
        tcs["UnitSub"]["topicSysFlag"] = 2
        tcs["Both"]["topicSysFlag"] = 3
        self.register(tcs=tcs)
        self.assertEqual(sorted(self.routes.get_unit_topics()), ["Both", "Unit"])
        self.assertEqual(sorted(self.routes.get_has_unit_sub_topic_list()), ["Both", "UnitSub"])
        self.assertEqual(self.routes.get_has_unit_sub_un_unit_topic_list(), ["UnitSub"])

    def test_delete_topic(self) -> None:
        """Deleting without a cluster drops the topic; with a cluster only that cluster's queues."""
        self.register(tcs=topics(("T1", 1, 1, 6), ("T2", 1, 1, 6)))
        self.register(B_MASTER, name="broker-b", cluster="C2", tcs=topics(("T2", 1, 1, 6)))
        self.routes.delete_topic("T1")
        self.assertNotIn("T1", self.routes.topic_queue_table)
        self.routes.delete_topic("T2", CLUSTER)
        self.assertEqual(list(self.routes.topic_queue_table["T2"]), ["broker-b"])
        self.routes.delete_topic("T2", "C2")
        self.assertEqual(self.routes.topic_queue_table, {})
        self.routes.delete_topic("T2", "nope")

    def test_write_perm(self) -> None:
        """Wipe clears a broker's write bits, add restores READ|WRITE; both count topics."""
        self.register(tcs=topics(("T1", 1, 1, 6), ("T2", 1, 1, 7)))
        self.assertEqual(self.routes.wipe_write_perm_of_broker("broker-a"), 2)
        self.assertEqual(
            sorted(q["broker-a"].perm for q in self.routes.topic_queue_table.values()), [4, 5]
        )
        self.assertEqual(self.routes.add_write_perm_of_broker("broker-a"), 2)
        self.assertEqual(
            [q["broker-a"].perm for q in self.routes.topic_queue_table.values()], [6, 6]
        )
        self.assertEqual(self.routes.wipe_write_perm_of_broker("nope"), 0)

    def test_generation_moves_only_on_change(self) -> None:
        """An identical re-registration leaves the generation alone; a route change moves it."""
        self.register()
        g = self.routes.generation
        self.register()
        self.assertEqual(self.routes.generation, g)
        self.routes.wipe_write_perm_of_broker("broker-a")
        self.assertGreater(self.routes.generation, g)
