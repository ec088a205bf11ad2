"""Replay every captured NameServer request against rmq; compare with Java 4.9.7's answer.

The answers must agree in meaning: same response code, same remark where Java sets one, same
header fields, and bodies that decode to the same brokers, queue data, permissions, topic sets
and KV values (key and list order may differ). Registrations captured from the real broker
(``broker-register-*``) set up the state each query needs, as on the capture NameServer.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rmq.common import fastjson
from rmq.common.route import ClusterInfo, TopicRouteData
from rmq.remoting.codec import decode
from rmq.remoting.codes import ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand
from tests.namesrv.support import Connection, NamesrvHarness
from tests.support.vectors import load_frame

#: The three registrations of broker-a captured in order (first start, after auto-creating
#: TopicJ, and the last one, with every topic the later admin queries saw).
REGISTRATIONS = (
    "broker-register-broker.req.hex",
    "broker-register-broker-oneway.oneway.hex",
    "broker-register-broker-kvtable.req.hex",
)


def java(name: str) -> RemotingCommand:
    """A captured frame, decoded."""
    return decode(load_frame(name)[4:])


def _route_meaning(body: bytes) -> Any:
    route = TopicRouteData.from_json(body)
    return (
        sorted(
            (q.broker_name, q.read_queue_nums, q.write_queue_nums, q.perm, q.topic_sys_flag)
            for q in route.queue_datas
        ),
        sorted(
            (b.cluster, b.broker_name, sorted(b.broker_addrs.items())) for b in route.broker_datas
        ),
        route.filter_server_table,
        route.order_topic_conf,
    )


class VectorReplayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ns = NamesrvHarness(self.mktemp())
        self.broker = self.ns.connect()
        self.client = self.ns.connect()

    def replay(
        self, stem: str, conn: Connection | None = None
    ) -> tuple[RemotingCommand, RemotingCommand]:
        """Send ``<stem>.req.hex``; return (our response, Java's response)."""
        conn = conn or self.client
        responses = conn.send_frame(load_frame(stem + ".req.hex"))
        self.assertEqual(len(responses), 1, stem)
        ours, theirs = responses[0], java(stem + ".resp.hex")
        request = java(stem + ".req.hex")
        self.assertEqual(ours.code, theirs.code, stem)
        self.assertEqual(ours.opaque, request.opaque, stem)
        self.assertEqual(ours.flag, 1, stem)
        self.assertEqual(ours.serialize_type, request.serialize_type, stem)
        self.assertEqual(ours.remark, theirs.remark, stem)
        self.assertEqual(ours.ext_fields, theirs.ext_fields, stem)
        return ours, theirs

    def register(self, *names: str) -> None:
        for name in names or REGISTRATIONS[:1]:
            for response in self.broker.send_frame(load_frame(name)):
                self.assertEqual(response.code, ResponseCode.SUCCESS, name)

    def test_register_broker(self) -> None:
        """The master's first registration is answered like Java: empty extFields, no body."""
        ours, theirs = self.replay("broker-register-broker", self.broker)
        self.assertTrue(ours.ext_fields_present)
        self.assertEqual(ours.body, theirs.body)
        self.assertEqual(
            self.ns.routes.broker_addr_table["broker-a"].broker_addrs, {0: "127.0.0.1:40911"}
        )
        self.assertEqual(len(self.ns.routes.topic_queue_table), 8)

    def test_oneway_registration_gets_no_answer(self) -> None:
        """The oneway re-registration is applied (TopicJ appears) and not answered."""
        self.register()
        self.assertEqual(
            self.broker.send_frame(load_frame("broker-register-broker-oneway.oneway.hex")), []
        )
        self.assertIn("TopicJ", self.ns.routes.topic_queue_table)

    def test_register_with_kv_table(self) -> None:
        """Once ORDER_TOPIC_CONFIG exists (even empty) registrations carry its KVTable."""
        self.register(*REGISTRATIONS[:2])
        self.replay("admin-put-kv-config")
        self.replay("admin-delete-kv-config")
        ours, theirs = self.replay("broker-register-broker-kvtable", self.broker)
        self.assertEqual(fastjson.loads(ours.body), fastjson.loads(theirs.body))

    def test_slave_registration(self) -> None:
        """A slave's registration is answered with its master's address and HA address."""
        self.register()
        self.replay("admin-put-kv-config")
        self.replay("admin-delete-kv-config")
        slave = self.ns.connect()
        ours, theirs = self.replay("broker-slave-register-broker", slave)
        self.assertEqual(fastjson.loads(ours.body), fastjson.loads(theirs.body))
        addrs = self.ns.routes.broker_addr_table["broker-a"].broker_addrs
        self.assertEqual(addrs, {0: "127.0.0.1:40911", 1: "127.0.0.1:41911"})

    def test_unregister_broker(self) -> None:
        """Clean broker shutdown is answered like Java and the broker's routes disappear."""
        self.register()
        ours, _ = self.replay("broker-unregister-broker", self.broker)
        self.assertFalse(ours.ext_fields_present)
        self.assertEqual(self.ns.routes.broker_addr_table, {})
        self.assertEqual(self.ns.routes.topic_queue_table, {})

    def test_routes(self) -> None:
        """Java, ali-ons, cpp and ROCKETMQ-header route requests get Java's route and JSON style."""
        self.register(*REGISTRATIONS)
        for stem, standard in (
            ("java-get-route-tbw102", True),
            ("alions-get-route", False),
            ("cpp-get-route-tbw102", False),
            ("java-rmqser-get-route", True),
            ("probe-rocketmq-get-route", True),
        ):
            ours, theirs = self.replay(stem)
            self.assertEqual(_route_meaning(ours.body), _route_meaning(theirs.body), stem)
            self.assertEqual(b'"0":' in ours.body, standard, stem)
            self.assertEqual(b"{0:" in ours.body, not standard, stem)
            if stem.startswith("java") or stem.startswith("cpp"):
                self.assertEqual(ours.body, theirs.body, stem)  # same state: identical bytes

    def test_rocketmq_header_answered_in_kind(self) -> None:
        """A ROCKETMQ-serialized route request is answered with a ROCKETMQ header."""
        self.register(*REGISTRATIONS)
        ours, _ = self.replay("probe-rocketmq-get-route")
        self.assertEqual(ours.serialize_type, SerializeType.ROCKETMQ)

    def test_routes_not_exist(self) -> None:
        """Unknown topics get TOPIC_NOT_EXIST with Java's exact remark, for Java and cpp."""
        self.register()
        for stem in ("java-get-route-not-exist", "cpp-get-route-not-exist"):
            ours, _ = self.replay(stem)
            self.assertEqual(ours.body, b"")

    def test_cluster_info(self) -> None:
        """Cluster info matches Java's, unquoted brokerId keys included."""
        self.register()
        ours, theirs = self.replay("admin-get-broker-cluster-info")
        self.assertEqual(ClusterInfo.from_json(ours.body), ClusterInfo.from_json(theirs.body))
        self.assertEqual(ours.body, theirs.body)

    def test_topic_lists(self) -> None:
        """The all-topics list equals Java's; topics by cluster and system topics agree too."""
        self.register(*REGISTRATIONS)
        ours, theirs = self.replay("admin-get-all-topic-list")
        self.assertEqual(
            sorted(fastjson.loads(ours.body)["topicList"]),
            sorted(fastjson.loads(theirs.body)["topicList"]),
        )
        ours, theirs = self.replay("probe-get-system-topic-list-from-ns")
        mine, java_list = fastjson.loads(ours.body), fastjson.loads(theirs.body)
        self.assertEqual(mine["brokerAddr"], java_list["brokerAddr"])
        self.assertEqual(sorted(mine["topicList"]), sorted(java_list["topicList"]))

    def test_delete_topic_and_topics_by_cluster(self) -> None:
        """DELETE_TOPIC_IN_NAMESRV removes TopicDel; the cluster's topics then match Java's list.

        Java's list was taken after the cpp and ali-ons runs had created TopicC and two retry
        topics that no captured registration carries; those three are left out.
        """
        self.register(*REGISTRATIONS)
        self.replay("admin-delete-topic-in-namesrv")
        self.assertNotIn("TopicDel", self.ns.routes.topic_queue_table)
        ours, theirs = self.replay("probe-get-topics-by-cluster")
        later = {"TopicC", "%RETRY%CG_ALIONS", "%RETRY%CG_CPP"}
        self.assertEqual(
            set(fastjson.loads(ours.body)["topicList"]),
            set(fastjson.loads(theirs.body)["topicList"]) - later,
        )

    def test_kv_config(self) -> None:
        """PUT, DELETE, GET (not found) and GET_KVLIST answer like Java, and PUT persists."""
        self.replay("admin-put-kv-config")
        with open(self.ns.kv.path, "rb") as f:
            self.assertEqual(
                fastjson.loads(f.read()),
                {"configTable": {"ORDER_TOPIC_CONFIG": {"TopicOrd": "broker-a:4"}}},
            )
        self.replay("admin-delete-kv-config")
        ours, _ = self.replay("probe-get-kv-config-not-found")
        self.assertTrue(ours.ext_fields_present)
        ours, theirs = self.replay("probe-get-kvlist-by-namespace")
        self.assertEqual(fastjson.loads(ours.body), fastjson.loads(theirs.body))

    def test_get_namesrv_config(self) -> None:
        """GET_NAMESRV_CONFIG answers Properties text carrying Java's NamesrvConfig keys."""
        ours, theirs = self.replay("admin-get-namesrv-config")
        from rmq.common.config import parse_properties

        mine = parse_properties(ours.body.decode())
        java_props = parse_properties(theirs.body.decode())
        for key in (
            "rocketmqHome",
            "kvConfigPath",
            "configStorePath",
            "productEnvName",
            "clusterTest",
            "orderMessageEnable",
            "listenPort",
        ):
            self.assertIn(key, mine)
            self.assertIn(key, java_props)
        for key in ("productEnvName", "clusterTest", "orderMessageEnable"):
            self.assertEqual(mine[key], java_props[key], key)

    def test_unknown_code(self) -> None:
        """An unknown code gets REQUEST_CODE_NOT_SUPPORTED naming it (Java stays silent)."""
        (response,) = self.client.send_frame(load_frame("probe-namesrv-unknown-code.req.hex"))
        self.assertEqual(response.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
        self.assertIn("9999", response.remark or "")
