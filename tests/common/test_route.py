"""Tests for rmq.common.route: route JSON in both styles, ClusterInfo, register bodies."""

from __future__ import annotations

import struct
import zlib

from twisted.trial.unittest import SynchronousTestCase

from rmq.common import fastjson
from rmq.common.route import (
    BrokerData,
    ClusterInfo,
    DataVersion,
    QueueData,
    RegisterBrokerBody,
    TopicRouteData,
    body_crc32,
    kv_table_json,
    perm_to_string,
    topic_list_json,
)
from tests.support.vectors import load_frame


def _body(frame: bytes) -> bytes:
    """The body of a JSON- or ROCKETMQ-header frame vector."""
    (word,) = struct.unpack_from(">I", frame, 4)
    return frame[8 + (word & 0xFFFFFF) :]


def _header(frame: bytes) -> dict[str, object]:
    (word,) = struct.unpack_from(">I", frame, 4)
    result = fastjson.loads(frame[8 : 8 + (word & 0xFFFFFF)])
    assert isinstance(result, dict)
    return result


def _route() -> TopicRouteData:
    return TopicRouteData(
        queue_datas=[QueueData("broker-a", 8, 8, 7, 0)],
        broker_datas=[BrokerData("DefaultCluster", "broker-a", {0: "127.0.0.1:40911"})],
    )


class TopicRouteDataTests(SynchronousTestCase):
    def test_standard_json_matches_java(self) -> None:
        """Standard-style route JSON equals Java's answer to a 4.9.7 client byte for byte."""
        self.assertEqual(
            _route().to_json(True), _body(load_frame("java-get-route-tbw102.resp.hex"))
        )

    def test_fastjson_style_matches_java(self) -> None:
        """fastjson-style route JSON equals the Java answer to cpp 1.0.1 byte for byte."""
        self.assertEqual(
            _route().to_json(False), _body(load_frame("cpp-get-route-tbw102.resp.hex"))
        )

    def test_reads_every_style(self) -> None:
        """from_json reads quoted and unquoted brokerId keys into the same value."""
        for name in (
            "java-get-route-tbw102.resp.hex",
            "cpp-get-route-tbw102.resp.hex",
            "java-rmqser-get-route.resp.hex",
        ):
            self.assertEqual(TopicRouteData.from_json(_body(load_frame(name))), _route(), name)

    def test_order_topic_conf_and_filter_servers(self) -> None:
        """orderTopicConf is written only when set, between filterServerTable and queueDatas."""
        route = _route()
        route.order_topic_conf = "broker-a:4"
        route.filter_server_table = {"127.0.0.1:40911": ["127.0.0.1:30000"]}
        text = route.to_json(False)
        self.assertIn(
            b'"filterServerTable":{"127.0.0.1:40911":["127.0.0.1:30000"]},"orderTopicConf":"broker-a:4","queueDatas"',
            text,
        )
        self.assertEqual(TopicRouteData.from_json(text), route)

    def test_bad_bodies(self) -> None:
        """Bodies of the wrong shape raise ValueError."""
        for bad in (
            b"[]",
            b'{"brokerDatas":{}}',
            b'{"queueDatas":[{"perm":6}]}',
            b'{"brokerDatas":[{"brokerName":"a","brokerAddrs":{"x":"y"}}]}',
        ):
            self.assertRaises(ValueError, TopicRouteData.from_json, bad)

    def test_numbers_as_strings(self) -> None:
        """Numeric fields given as strings are accepted."""
        q = QueueData.from_dict(
            {"brokerName": "a", "perm": "6", "readQueueNums": 4, "writeQueueNums": "4"}
        )
        self.assertEqual(q, QueueData("a", 4, 4, 6, 0))


class ClusterInfoTests(SynchronousTestCase):
    def test_matches_java(self) -> None:
        """ClusterInfo JSON equals the Java answer (unquoted brokerId keys) and reads back."""
        expected = _body(load_frame("admin-get-broker-cluster-info.resp.hex"))
        info = ClusterInfo(
            broker_addr_table={
                "broker-a": BrokerData("DefaultCluster", "broker-a", {0: "127.0.0.1:40911"})
            },
            cluster_addr_table={"DefaultCluster": ["broker-a"]},
        )
        self.assertEqual(info.to_json(), expected)
        self.assertEqual(ClusterInfo.from_json(expected), info)


class SmallBodiesTests(SynchronousTestCase):
    def test_topic_list_and_kv_table(self) -> None:
        """TopicList and KVTable bodies have Java's shape."""
        self.assertEqual(
            topic_list_json(["broker-a", "DefaultCluster"], "127.0.0.1:40911"),
            _body(load_frame("probe-get-system-topic-list-from-ns.resp.hex")),
        )
        self.assertEqual(topic_list_json([]), b'{"topicList":[]}')
        self.assertEqual(
            kv_table_json({}), _body(load_frame("probe-get-kvlist-by-namespace.resp.hex"))
        )

    def test_perm_string(self) -> None:
        """Permissions print like PermName.perm2String."""
        self.assertEqual([perm_to_string(p) for p in (6, 7, 4, 0)], ["RW-", "RWX", "R--", "---"])

    def test_data_version(self) -> None:
        """DataVersion JSON has Java's key order and compares by both fields."""
        dv = DataVersion(timestamp=1795295062352, counter=3)
        self.assertEqual(dv.to_json(), b'{"counter":3,"timestamp":1795295062352}')
        self.assertEqual(DataVersion.from_json(dv.to_json()), dv)
        self.assertNotEqual(dv, DataVersion(timestamp=1795295062352, counter=4))


class RegisterBrokerBodyTests(SynchronousTestCase):
    def test_java_body_decodes_and_crc_matches(self) -> None:
        """The captured REGISTER_BROKER body decodes and its bodyCrc32 header equals body_crc32."""
        frame = load_frame("broker-register-broker.req.hex")
        body = _body(frame)
        ext = _header(frame)["extFields"]
        assert isinstance(ext, dict)
        self.assertEqual(body_crc32(body), int(ext["bodyCrc32"]))
        reg = RegisterBrokerBody.decode(body, compressed=False)
        self.assertEqual(reg.data_version, DataVersion(timestamp=1795295062352, counter=0))
        self.assertEqual(len(reg.topic_config_table), 8)
        tbw = reg.topic_config_table["TBW102"]
        self.assertEqual((tbw["readQueueNums"], tbw["writeQueueNums"], tbw["perm"]), (8, 8, 7))
        self.assertEqual(reg.filter_server_list, [])
        self.assertEqual(fastjson.loads(reg.encode()), fastjson.loads(body))

    def test_compressed_round_trip(self) -> None:
        """The compressed form round-trips names, queue numbers, perm and filter type."""
        reg = RegisterBrokerBody.decode(_body(load_frame("broker-register-broker.req.hex")), False)
        reg.filter_server_list = ["127.0.0.1:30000"]
        again = RegisterBrokerBody.decode(reg.encode(compressed=True), compressed=True)
        self.assertEqual(again.data_version, reg.data_version)
        self.assertEqual(again.filter_server_list, ["127.0.0.1:30000"])
        self.assertEqual(again.topic_config_table.keys(), reg.topic_config_table.keys())
        for name, tc in reg.topic_config_table.items():
            got = again.topic_config_table[name]
            for key in ("topicName", "readQueueNums", "writeQueueNums", "perm", "topicFilterType"):
                self.assertEqual(got[key], tc[key], (name, key))

    def test_compressed_layout(self) -> None:
        """The inflated compressed body has Java's layout: DataVersion, topics, filters."""
        reg = RegisterBrokerBody(
            DataVersion(5, 2),
            {
                "T": {
                    "topicName": "T",
                    "readQueueNums": 4,
                    "writeQueueNums": 2,
                    "perm": 6,
                    "topicFilterType": "SINGLE_TAG",
                }
            },
            [],
        )
        raw = zlib.decompress(reg.encode(compressed=True))
        dv = b'{"counter":2,"timestamp":5}'
        line = b"T 4 2 6 SINGLE_TAG"
        expected = (
            struct.pack(">i", len(dv))
            + dv
            + struct.pack(">ii", 1, len(line))
            + line
            + struct.pack(">i", 2)
            + b"[]"
        )
        self.assertEqual(raw, expected)

    def test_bad_compressed(self) -> None:
        """Garbage or truncated compressed bodies raise ValueError."""
        self.assertRaises(ValueError, RegisterBrokerBody.decode, b"not zlib", True)
        self.assertRaises(
            ValueError, RegisterBrokerBody.decode, zlib.compress(b"\x00\x00\x00\x10{}"), True
        )
        bad_line = (
            struct.pack(">i", 2)
            + b"{}"
            + struct.pack(">ii", 1, 3)
            + b"T 4"
            + struct.pack(">i", 2)
            + b"[]"
        )
        self.assertRaises(ValueError, RegisterBrokerBody.decode, zlib.compress(bad_line), True)
