"""NameServer processors on StringTransport connections: every command's wire behaviour."""

from __future__ import annotations

import os
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.common import fastjson
from rmq.common.config import parse_properties
from rmq.common.route import DataVersion, RegisterBrokerBody, TopicRouteData, body_crc32
from rmq.remoting.codes import RequestCode, ResponseCode, Version
from rmq.remoting.command import RemotingCommand, new_request
from rmq.remoting.interfaces import IRequestProcessor
from tests.namesrv.support import NamesrvHarness

ADDR = "127.0.0.1:10911"


def topic_table(*names: str, perm: int = 6, sys_flag: int = 0) -> dict[str, dict[str, Any]]:
    """Topic configs in Java's JSON shape."""
    return {
        n: {
            "order": False,
            "perm": perm,
            "readQueueNums": 4,
            "topicFilterType": "SINGLE_TAG",
            "topicName": n,
            "topicSysFlag": sys_flag,
            "writeQueueNums": 4,
        }
        for n in names
    }


def register_fields(addr: str = ADDR, broker_id: int = 0, **overrides: Any) -> dict[str, Any]:
    """REGISTER_BROKER header fields like a Java broker's; ``overrides`` replace or add fields."""
    return {
        "brokerName": "broker-a",
        "brokerAddr": addr,
        "clusterName": "DefaultCluster",
        "haServerAddr": addr[:-1] + "2",
        "brokerId": broker_id,
        **overrides,
    }


def register_request(
    body: RegisterBrokerBody,
    compressed: bool = False,
    broker_id: int = 0,
    addr: str = ADDR,
    crc: int | None = None,
    version: int | None = None,
) -> RemotingCommand:
    """A REGISTER_BROKER request like a Java broker's."""
    raw = body.encode(compressed)
    fields = register_fields(
        addr,
        broker_id,
        compressed=compressed,
        bodyCrc32=body_crc32(raw) if crc is None else crc,
    )
    cmd = new_request(RequestCode.REGISTER_BROKER, fields, raw)
    if version is not None:
        cmd.version = version
    return cmd


class ProcessorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tmp = self.mktemp()
        self.ns = NamesrvHarness(self.tmp)
        self.broker = self.ns.connect()
        self.client = self.ns.connect()

    def register(
        self, *topics: str, version: DataVersion | None = None, **kw: Any
    ) -> RemotingCommand:
        body = RegisterBrokerBody(version or DataVersion(1, 1), topic_table(*topics))
        return self.broker.request(register_request(body, **kw))

    def route(self, topic: str, **ext: Any) -> RemotingCommand:
        return self.client.request(
            new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic, **ext})
        )

    def test_compressed_registration(self) -> None:
        """A compressed body registers every topic it carries."""
        response = self.register("T1", "T2", compressed=True)
        self.assertEqual(response.code, ResponseCode.SUCCESS)
        self.assertEqual(self.route("T2").code, ResponseCode.SUCCESS)

    def test_crc_mismatch(self) -> None:
        """A body whose CRC32 differs from bodyCrc32 is refused with Java's remark."""
        response = self.register("T1", crc=12345)
        self.assertEqual(
            (response.code, response.remark), (ResponseCode.SYSTEM_ERROR, "crc32 not match")
        )
        self.assertEqual(self.ns.routes.broker_live_table, {})

    def test_crc_zero_skips_check(self) -> None:
        """bodyCrc32 0 means no check."""
        self.assertEqual(self.register("T1", crc=0).code, ResponseCode.SUCCESS)

    def test_bad_bodies(self) -> None:
        """Undecodable bodies and missing header fields get SYSTEM_ERROR naming the problem."""
        fields = register_fields(brokerName="b", clusterName="C", haServerAddr="x", compressed=True)
        cmd = new_request(RequestCode.REGISTER_BROKER, fields, b"junk")
        response = self.broker.request(cmd)
        self.assertEqual(response.code, ResponseCode.SYSTEM_ERROR)
        self.assertIn("REGISTER_BROKER body", response.remark or "")
        response = self.client.request(new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {}))
        self.assertEqual(response.code, ResponseCode.SYSTEM_ERROR)
        self.assertIn("topic", response.remark or "")

    def test_old_broker_body(self) -> None:
        """A broker older than V3_0_11 sends a bare TopicConfigSerializeWrapper, which registers."""
        wrapper = {
            "dataVersion": {"counter": 1, "timestamp": 2},
            "topicConfigTable": topic_table("Old"),
        }
        raw = fastjson.dumps(wrapper)
        fields = register_fields(clusterName="C", haServerAddr="h")
        cmd = new_request(RequestCode.REGISTER_BROKER, fields, raw)
        cmd.version = 30
        self.assertEqual(self.broker.request(cmd).code, ResponseCode.SUCCESS)
        self.assertEqual(self.route("Old").code, ResponseCode.SUCCESS)

    def test_empty_body(self) -> None:
        """A registration without a body registers the broker with no topics."""
        fields = register_fields(clusterName="C", haServerAddr="h")
        cmd = new_request(RequestCode.REGISTER_BROKER, fields)
        self.assertEqual(self.broker.request(cmd).code, ResponseCode.SUCCESS)
        self.assertEqual(self.ns.routes.query_broker_topic_config(ADDR), DataVersion(0, 0))

    def test_route_json_style_by_version(self) -> None:
        """Old clients get unquoted brokerId keys unless they ask for standard JSON only."""
        self.register("T1")
        old = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"})
        old.version = Version.V4_9_4 - 1
        self.assertIn(b'{0:"', self.client.request(old).body)
        old = new_request(
            RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1", "acceptStandardJsonOnly": True}
        )
        old.version = 63
        self.assertIn(b'{"0":"', self.client.request(old).body)
        self.assertIn(b'{"0":"', self.route("T1").body)

    def test_route_follows_changes(self) -> None:
        """A cached route answer is replaced once the broker registers a new DataVersion."""
        self.register("T1", version=DataVersion(1, 1))
        first = TopicRouteData.from_json(self.route("T1").body)
        self.assertEqual(first.queue_datas[0].perm, 6)
        body = RegisterBrokerBody(DataVersion(1, 2), topic_table("T1", perm=4))
        self.broker.request(register_request(body))
        self.assertEqual(TopicRouteData.from_json(self.route("T1").body).queue_datas[0].perm, 4)

    def test_order_topic_conf(self) -> None:
        """With orderMessageEnable a route carries ORDER_TOPIC_CONFIG/<topic> as orderTopicConf."""
        self.register("T1")
        put = new_request(
            RequestCode.PUT_KV_CONFIG,
            {"namespace": "ORDER_TOPIC_CONFIG", "key": "T1", "value": "broker-a:4"},
        )
        self.assertEqual(self.client.request(put).code, ResponseCode.SUCCESS)
        self.assertIsNone(TopicRouteData.from_json(self.route("T1").body).order_topic_conf)
        update = new_request(RequestCode.UPDATE_NAMESRV_CONFIG, body=b"orderMessageEnable=true\n")
        self.assertEqual(self.client.request(update).code, ResponseCode.SUCCESS)
        self.assertEqual(
            TopicRouteData.from_json(self.route("T1").body).order_topic_conf, "broker-a:4"
        )
        response = self.register("T1")
        self.assertEqual(fastjson.loads(response.body), {"table": {"T1": "broker-a:4"}})

    def test_query_data_version(self) -> None:
        """QUERY_DATA_VERSION answers changed=true/false and the stored DataVersion."""
        self.register("T1", version=DataVersion(7, 3))
        ext = {
            "brokerName": "broker-a",
            "brokerAddr": ADDR,
            "clusterName": "DefaultCluster",
            "brokerId": 0,
        }
        same = self.broker.request(
            new_request(RequestCode.QUERY_DATA_VERSION, ext, DataVersion(7, 3).to_json())
        )
        self.assertEqual((same.code, same.ext_fields), (ResponseCode.SUCCESS, {"changed": "false"}))
        self.assertEqual(DataVersion.from_json(same.body), DataVersion(7, 3))
        other = self.broker.request(
            new_request(RequestCode.QUERY_DATA_VERSION, ext, DataVersion(7, 4).to_json())
        )
        self.assertEqual(other.ext_fields, {"changed": "true"})
        ext["brokerAddr"] = "127.0.0.1:1"
        unknown = self.broker.request(
            new_request(RequestCode.QUERY_DATA_VERSION, ext, DataVersion(7, 4).to_json())
        )
        self.assertEqual((unknown.ext_fields, unknown.body), ({"changed": "true"}, b""))

    def test_write_perm_commands(self) -> None:
        """WIPE/ADD_WRITE_PERM_OF_BROKER answer topic counts and change the route's perm."""
        self.register("T1", "T2")
        wipe = self.client.request(
            new_request(RequestCode.WIPE_WRITE_PERM_OF_BROKER, {"brokerName": "broker-a"})
        )
        self.assertEqual(wipe.ext_fields, {"wipeTopicCount": "2"})
        self.assertEqual(TopicRouteData.from_json(self.route("T1").body).queue_datas[0].perm, 4)
        add = self.client.request(
            new_request(RequestCode.ADD_WRITE_PERM_OF_BROKER, {"brokerName": "broker-a"})
        )
        self.assertEqual(add.ext_fields, {"addTopicCount": "2"})
        self.assertEqual(TopicRouteData.from_json(self.route("T1").body).queue_datas[0].perm, 6)

    def test_unit_topic_lists(self) -> None:
        """The three unit topic lists select by sys flag."""
        self.broker.request(
            register_request(
                RegisterBrokerBody(
                    DataVersion(1, 1),
                    {**topic_table("U", sys_flag=1), **topic_table("S", sys_flag=2)},
                )
            )
        )
        lists = {}
        for code in (
            RequestCode.GET_UNIT_TOPIC_LIST,
            RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST,
            RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
        ):
            lists[code] = fastjson.loads(self.client.request(new_request(code)).body)["topicList"]
        self.assertEqual(list(lists.values()), [["U"], ["S"], ["S"]])

    def test_kv_get_value(self) -> None:
        """GET_KV_CONFIG answers the stored value in the value header field."""
        self.client.request(
            new_request(RequestCode.PUT_KV_CONFIG, {"namespace": "N", "key": "k", "value": "v"})
        )
        response = self.client.request(
            new_request(RequestCode.GET_KV_CONFIG, {"namespace": "N", "key": "k"})
        )
        self.assertEqual(
            (response.code, response.ext_fields), (ResponseCode.SUCCESS, {"value": "v"})
        )
        missing = self.client.request(
            new_request(RequestCode.GET_KVLIST_BY_NAMESPACE, {"namespace": "X"})
        )
        self.assertEqual(missing.code, ResponseCode.QUERY_NOT_FOUND)
        bad = self.client.request(
            new_request(RequestCode.PUT_KV_CONFIG, {"key": "k", "value": "v"})
        )
        self.assertEqual(
            (bad.code, bad.remark), (ResponseCode.SYSTEM_ERROR, "namespace or key is null")
        )

    def test_update_namesrv_config(self) -> None:
        """Black-listed keys are refused, bad values name the key, good ones apply and persist."""
        store = os.path.join(self.tmp, "namesrv.properties")
        self.ns.config.current = attrs.evolve(self.ns.config.current, config_store_path=store)
        refused = self.client.request(
            new_request(RequestCode.UPDATE_NAMESRV_CONFIG, body=b"kvConfigPath=/etc/x\n")
        )
        self.assertEqual(
            (refused.code, refused.remark),
            (ResponseCode.NO_PERMISSION, "Can not update config in black list."),
        )
        bad = self.client.request(
            new_request(RequestCode.UPDATE_NAMESRV_CONFIG, body=b"orderMessageEnable=perhaps\n")
        )
        self.assertEqual(bad.code, ResponseCode.SYSTEM_ERROR)
        self.assertIn("orderMessageEnable", bad.remark or "")
        ok = self.client.request(
            new_request(
                RequestCode.UPDATE_NAMESRV_CONFIG, body=b"productEnvName=test\nnoSuchKey=1\n"
            )
        )
        self.assertEqual(ok.code, ResponseCode.SUCCESS)
        got = self.client.request(new_request(RequestCode.GET_NAMESRV_CONFIG))
        self.assertEqual(parse_properties(got.body.decode())["productEnvName"], "test")
        with open(store, encoding="utf-8") as f:
            self.assertEqual(parse_properties(f.read())["productEnvName"], "test")

    def test_connection_close_drops_broker(self) -> None:
        """When the broker's connection closes, its routes disappear at once."""
        self.register("T1")
        self.assertEqual(self.route("T1").code, ResponseCode.SUCCESS)
        self.client.close()
        self.assertEqual(self.route_after_reconnect("T1"), ResponseCode.SUCCESS)
        self.broker.close()
        self.assertEqual(self.route_after_reconnect("T1"), ResponseCode.TOPIC_NOT_EXIST)

    def route_after_reconnect(self, topic: str) -> int:
        conn = self.ns.connect()
        return conn.request(new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})).code


class InterfaceTests(SynchronousTestCase):
    def test_processors_provide_interface(self) -> None:
        """Every NameServer processor provides IRequestProcessor and covers its codes."""
        ns = NamesrvHarness(self.mktemp())
        seen = set()
        for code in RequestCode:
            processor = ns.dispatcher.processor_for(code)
            if processor is not None:
                verifyObject(IRequestProcessor, processor)
                seen.add(code)
        expected = {
            RequestCode.REGISTER_BROKER,
            RequestCode.UNREGISTER_BROKER,
            RequestCode.QUERY_DATA_VERSION,
            RequestCode.GET_ROUTEINFO_BY_TOPIC,
            RequestCode.GET_BROKER_CLUSTER_INFO,
            RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
            RequestCode.GET_TOPICS_BY_CLUSTER,
            RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS,
            RequestCode.GET_UNIT_TOPIC_LIST,
            RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST,
            RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
            RequestCode.DELETE_TOPIC_IN_NAMESRV,
            RequestCode.WIPE_WRITE_PERM_OF_BROKER,
            RequestCode.ADD_WRITE_PERM_OF_BROKER,
            RequestCode.PUT_KV_CONFIG,
            RequestCode.GET_KV_CONFIG,
            RequestCode.DELETE_KV_CONFIG,
            RequestCode.GET_KVLIST_BY_NAMESPACE,
            RequestCode.GET_NAMESRV_CONFIG,
            RequestCode.UPDATE_NAMESRV_CONFIG,
        }
        self.assertEqual(seen, expected)
