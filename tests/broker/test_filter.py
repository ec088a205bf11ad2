"""SQL92 filtering on the broker: registry, consumerFilter.json, CHECK_CLIENT_CONFIG, pull."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.broker.clients import build_subscription
from rmq.broker.config import BrokerConfig
from rmq.broker.filter import (
    BloomFilter,
    ConsumerFilterManager,
    filter_result,
    murmur3_x64_128,
)
from rmq.broker.selector import compile_selector
from rmq.broker.service import build_broker
from rmq.common import fastjson
from rmq.common.message import decode_messages
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.remoting.interfaces import IRequestProcessor
from rmq.store.interfaces import GetMessageResult, GetMessageStatus
from rmq.store.memory import MemoryMessageStore
from tests.broker.support import FakeNameServerClient, MemoryBrokerTestCase, pull_request
from tests.support.vectors import require_vectors

NOW_MS = 1_800_000_000_000


def heartbeat(group: str, subs: list[dict[str, Any]], client: str = "10.0.0.1@c1") -> bytes:
    """A Java-style HEART_BEAT body with one consumer group."""
    return fastjson.dumps(
        {
            "clientID": client,
            "consumerDataSet": [
                {
                    "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                    "consumeType": "CONSUME_PASSIVELY",
                    "groupName": group,
                    "messageModel": "CLUSTERING",
                    "subscriptionDataSet": subs,
                    "unitMode": False,
                }
            ],
            "producerDataSet": [{"groupName": "CLIENT_INNER_PRODUCER"}],
        }
    )


def sql_sub(topic: str, expression: str, version: int) -> dict[str, Any]:
    """A heartbeat SubscriptionData of type SQL92."""
    return {
        "classFilterMode": False,
        "codeSet": [],
        "expressionType": "SQL92",
        "subString": expression,
        "subVersion": version,
        "tagsSet": [],
        "topic": topic,
    }


class BloomTests(SynchronousTestCase):
    def test_murmur3_matches_guava(self) -> None:
        """murmur3_x64_128 gives Guava's known value for the fox sentence and 0 for nothing."""
        h1, h2 = murmur3_x64_128(b"The quick brown fox jumps over the lazy dog")
        self.assertEqual((h1, h2), (0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347))
        self.assertEqual(murmur3_x64_128(b""), (0, 0))

    def test_default_bloom_filter_shape(self) -> None:
        """Java's defaults (20 %, 32 consumers) give k=3 hash functions over 112 bits."""
        bloom = BloomFilter()
        self.assertEqual((bloom.k, bloom.m), (3, 112))
        data = bloom.generate("G#T")
        self.assertEqual(len(data.bit_pos), 3)
        self.assertTrue(all(0 <= p < 112 for p in data.bit_pos))
        self.assertEqual(data, bloom.generate("G#T"))
        self.assertTrue(bloom.is_valid(data))
        self.assertFalse(BloomFilter(10, 64).is_valid(data))


class ManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW_MS / 1000)
        self.manager = ConsumerFilterManager(self.clock)
        self.changes: list[int] = []
        self.manager.listeners.append(lambda: self.changes.append(1))

    def register(self, expression: str, version: int, topic: str = "T") -> None:
        self.manager.register_group("G", [build_subscription(topic, expression, version, "SQL92")])

    def test_register_and_versions(self) -> None:
        """A newer subVersion replaces the expression; an older one is ignored."""
        self.register("a > 1", 10)
        data = self.manager.get("T", "G")
        assert data is not None
        self.assertEqual((data.expression, data.client_version), ("a > 1", 10))
        self.assertIsNotNone(data.selector)
        self.register("a > 2", 5)
        self.assertEqual(self.manager.get("T", "G").expression, "a > 1")  # type: ignore[union-attr]
        self.register("a > 2", 20)
        self.assertEqual(self.manager.get("T", "G").expression, "a > 2")  # type: ignore[union-attr]
        self.assertTrue(self.changes)

    def test_tag_and_invalid_expressions_are_not_registered(self) -> None:
        """TAG subscriptions and expressions that do not compile leave no filter data."""
        self.manager.register_group("G", [build_subscription("T", "TagA", 1)])
        self.assertIsNone(self.manager.get("T", "G"))
        self.register("a >", 1)
        self.assertIsNone(self.manager.get("T", "G"))
        self.register("a > 1", 2)
        self.register("a >>", 3)  # a broken newer version drops the old data
        self.assertIsNone(self.manager.get("T", "G"))

    def test_dead_and_cleaned(self) -> None:
        """Unsubscribed topics and departed groups die; dead data is forgotten after 24 h."""
        self.register("a > 1", 1, topic="T1")
        self.manager.register_group("G", [build_subscription("T2", "b = 'x'", 1, "SQL92")])
        t1 = self.manager.get("T1", "G")
        assert t1 is not None
        self.assertTrue(t1.is_dead)
        self.manager.unregister("G")
        t2 = self.manager.get("T2", "G")
        assert t2 is not None
        self.assertTrue(t2.is_dead)
        self.register("b = 'x'", 1, topic="T2")  # same version revives
        self.assertFalse(t2.is_dead)
        self.clock.advance(24 * 3600)
        self.manager.encode()
        self.assertIsNone(self.manager.get("T1", "G"))
        self.assertIsNotNone(self.manager.get("T2", "G"))

    def test_json_round_trip_in_java_layout(self) -> None:
        """consumerFilter.json has Java's shape and loads back; loaded live data is made dead."""
        self.register("a > 1", 7)
        raw = self.manager.encode()
        obj = fastjson.loads(raw)
        entry = obj["filterDataByTopic"]["T"]
        self.assertEqual(entry["topic"], "T")
        data = entry["groupFilterData"]["G"]
        self.assertEqual(
            sorted(data),
            [
                "bloomFilterData",
                "bornTime",
                "clientVersion",
                "consumerGroup",
                "dead",
                "deadTime",
                "expression",
                "expressionType",
                "topic",
            ],
        )
        self.assertEqual(data["bloomFilterData"]["bitNum"], 112)
        self.assertEqual(data["expressionType"], "SQL92")
        self.assertIs(data["dead"], False)
        self.assertTrue(raw.startswith(b"{\n\t"))
        loaded = ConsumerFilterManager(self.clock)
        loaded.decode(raw)
        got = loaded.get("T", "G")
        assert got is not None
        self.assertEqual((got.expression, got.client_version), ("a > 1", 7))
        self.assertTrue(got.selector is not None and got.selector.matches({"a": "2"}))
        self.assertTrue(got.is_dead)

    def test_java_empty_file(self) -> None:
        """The 4.9.7 consumerFilter.json vector loads, and an empty registry writes the same."""
        raw = (require_vectors() / "store" / "consumerFilter.json").read_bytes()
        self.manager.decode(raw)
        self.assertEqual(self.manager.encode(), raw)

    def test_foreign_bloom_filter_ignored(self) -> None:
        """Data written with another bloom filter shape is ignored, as Java does."""
        self.register("a > 1", 7)
        raw = self.manager.encode()
        other = ConsumerFilterManager(self.clock, BloomFilter(10, 64))
        other.decode(raw)
        self.assertIsNone(other.get("T", "G"))


def _record_result(
    case: SynchronousTestCase, store: MemoryMessageStore, topic: str
) -> GetMessageResult:
    return case.successResultOf(store.get_messages(topic, 0, 0, 32))


def pull(
    offset: int, sys_flag: int = 4, expr: str = "*", etype: str = "SQL92", sub_version: int = 0
) -> RemotingCommand:
    """A PULL_MESSAGE request of group G on T queue 0 with an expression type."""
    return pull_request(offset, sys_flag, expr, subVersion=sub_version, expressionType=etype)


class BrokerFilterTests(MemoryBrokerTestCase):
    def build(self, enabled: bool) -> None:
        self.start_broker(
            BrokerConfig(store_path_root_dir=self.mktemp(), enable_property_filter=enabled),
            NOW_MS / 1000,
        )

    def put(self, props: dict[str, str]) -> None:
        text = "\x02".join(f"{k}\x01{v}" for k, v in props.items())
        req = new_request(
            RequestCode.SEND_MESSAGE_V2,
            {"a": "P", "b": "T", "c": "TBW102", "d": 1, "e": 0, "f": 0, "g": 1, "h": 0, "i": text},
            b"body",
        )
        self.assertEqual(self.answer(req).code, 0)

    def put_numbered(self, n: int) -> None:
        self.broker.topics.create_topic_in_send("T", "TBW102", 1)
        for i in range(n):
            self.put({"TAGS": "even" if i % 2 == 0 else "odd", "n": str(i)})

    def check(self, body: dict[str, Any]) -> RemotingCommand:
        return self.answer(new_request(RequestCode.CHECK_CLIENT_CONFIG, None, fastjson.dumps(body)))

    def test_check_client_config(self) -> None:
        """TAG always passes; SQL92 needs enablePropertyFilter and a valid expression."""
        self.build(enabled=False)
        tag = {"clientId": "c", "group": "G", "subscriptionData": {"expressionType": "TAG"}}
        self.assertEqual(self.check(tag).code, ResponseCode.SUCCESS)
        sql = {
            "clientId": "c",
            "group": "G",
            "subscriptionData": {"expressionType": "SQL92", "subString": "a > 1", "topic": "T"},
        }
        refused = self.check(sql)
        self.assertEqual(refused.code, ResponseCode.SYSTEM_ERROR)
        self.assertEqual(
            refused.remark, "The broker does not support consumer to filter message by SQL92"
        )
        self.build(enabled=True)
        self.assertEqual(self.check(sql).code, ResponseCode.SUCCESS)
        sql["subscriptionData"]["subString"] = "a >"  # type: ignore[index]
        bad = self.check(sql)
        self.assertEqual(bad.code, ResponseCode.SUBSCRIPTION_PARSE_FAILED)
        self.assertIn("Invalid MessageSelector", bad.remark or "")
        self.assertEqual(self.check({}).code, ResponseCode.SUCCESS)

    def test_pull_with_subscription_flag_filters(self) -> None:
        """A SQL92 pull returns only the matching records and moves past the others."""
        self.build(enabled=True)
        self.put_numbered(10)
        resp = self.answer(pull(0, expr="n >= 4 AND TAGS = 'even'"))
        self.assertEqual(resp.code, ResponseCode.SUCCESS)
        msgs = decode_messages(resp.body)
        self.assertEqual([m.properties["n"] for m in msgs], ["4", "6", "8"])
        self.assertEqual(resp.ext_fields["nextBeginOffset"], "10")

    def test_pull_scans_past_non_matching_records(self) -> None:
        """Sparse matches: the pull reads on past maxMsgNums scanned records, as Java does."""
        self.build(enabled=True)
        self.put_numbered(10)
        request = pull(0, expr="n IN ('7', '9')")
        request.ext_fields["maxMsgNums"] = "2"
        resp = self.answer(request)
        self.assertEqual(resp.code, ResponseCode.SUCCESS)
        self.assertEqual([m.properties["n"] for m in decode_messages(resp.body)], ["7", "9"])
        self.assertEqual(resp.ext_fields["nextBeginOffset"], "10")
        request = pull(0, expr="n IN ('3', '5', '7')")
        request.ext_fields["maxMsgNums"] = "2"
        resp = self.answer(request)
        self.assertEqual([m.properties["n"] for m in decode_messages(resp.body)], ["3", "5"])
        self.assertEqual(resp.ext_fields["nextBeginOffset"], "6")

    def test_pull_scan_budget(self) -> None:
        """At most 800 units (Java's 16,000 consume-queue bytes) are scanned per pull."""
        self.build(enabled=True)
        self.put_numbered(850)
        first = self.answer(pull(0, expr="n = '840'"))
        self.assertEqual(first.code, ResponseCode.PULL_RETRY_IMMEDIATELY)
        self.assertEqual(first.ext_fields["nextBeginOffset"], "800")
        second = self.answer(pull(800, expr="n = '840'"))
        self.assertEqual(second.code, ResponseCode.SUCCESS)
        self.assertEqual([m.properties["n"] for m in decode_messages(second.body)], ["840"])
        self.assertEqual(second.ext_fields["nextBeginOffset"], "850")

    def test_pull_nothing_matched(self) -> None:
        """No matching record: PULL_RETRY_IMMEDIATELY past the scanned records."""
        self.build(enabled=True)
        self.put_numbered(3)
        resp = self.answer(pull(0, expr="n > 100"))
        self.assertEqual(resp.code, ResponseCode.PULL_RETRY_IMMEDIATELY)
        self.assertEqual(resp.remark, "NO_MATCHED_MESSAGE")
        self.assertEqual(resp.ext_fields["nextBeginOffset"], "3")

    def test_pull_refusals(self) -> None:
        """Disabled → 1; empty or invalid expression → 23; TAG pulls unaffected."""
        self.build(enabled=False)
        self.put_numbered(2)
        off = self.answer(pull(0, expr="n > 0"))
        self.assertEqual(off.code, ResponseCode.SYSTEM_ERROR)
        self.assertEqual(
            off.remark, "The broker does not support consumer to filter message by SQL92"
        )
        self.assertEqual(self.answer(pull(0, expr="")).code, ResponseCode.SUBSCRIPTION_PARSE_FAILED)
        self.assertEqual(self.answer(pull(0, expr="even", etype="TAG")).code, ResponseCode.SUCCESS)
        self.build(enabled=True)
        self.put_numbered(2)
        self.assertEqual(
            self.answer(pull(0, expr="n >")).code, ResponseCode.SUBSCRIPTION_PARSE_FAILED
        )

    def test_pull_from_heartbeat_subscription(self) -> None:
        """Without the flag the heartbeat's filter data is used; 27 and 28 as Java."""
        self.build(enabled=True)
        self.put_numbered(6)
        hb = new_request(RequestCode.HEART_BEAT, None, heartbeat("G", [sql_sub("T", "n < 2", 5)]))
        self.assertEqual(self.answer(hb).code, 0)
        self.assertIsNotNone(self.broker.filters.get("T", "G"))
        resp = self.answer(pull(0, sys_flag=0, expr="", sub_version=5))
        self.assertEqual(resp.code, ResponseCode.SUCCESS)
        self.assertEqual([m.properties["n"] for m in decode_messages(resp.body)], ["0", "1"])
        self.assertEqual(
            self.answer(pull(0, sys_flag=0, sub_version=6)).code,
            ResponseCode.SUBSCRIPTION_NOT_LATEST,
        )
        # The group's subscription is current but its filter data went missing: 27.
        self.broker.filters._by_topic.clear()
        self.assertEqual(
            self.answer(pull(0, sys_flag=0, sub_version=5)).code,
            ResponseCode.FILTER_DATA_NOT_EXIST,
        )
        hb = new_request(RequestCode.HEART_BEAT, None, heartbeat("G", [sql_sub("T", "n < 2", 7)]))
        self.answer(hb)
        data = self.broker.filters.get("T", "G")
        assert data is not None
        data.client_version = 3  # older than what the group now pulls with: 28
        self.assertEqual(
            self.answer(pull(0, sys_flag=0, sub_version=7)).code,
            ResponseCode.FILTER_DATA_NOT_LATEST,
        )

    def test_filter_table_persisted_and_reloaded(self) -> None:
        """A heartbeat's SQL92 subscription is written to config/consumerFilter.json and a new
        broker on the same directory loads it."""
        self.build(enabled=True)
        hb = new_request(RequestCode.HEART_BEAT, None, heartbeat("G", [sql_sub("T", "n < 2", 5)]))
        self.answer(hb)
        self.successResultOf(self.broker.persister.when_idle())
        path = os.path.join(self.broker.config.config_dir, "consumerFilter.json")
        with open(path, "rb") as f:
            saved = fastjson.loads(f.read())
        self.assertEqual(
            saved["filterDataByTopic"]["T"]["groupFilterData"]["G"]["expression"], "n < 2"
        )
        again = build_broker(self.broker.config, self.clock, self.store, FakeNameServerClient())
        self.assertTrue(again.persister.load(again.filters))
        loaded = again.filters.get("T", "G")
        assert loaded is not None
        self.assertEqual(loaded.client_version, 5)

    def test_processors_provide_the_interface(self) -> None:
        """The CHECK_CLIENT_CONFIG processor is an IRequestProcessor."""
        self.build(enabled=True)
        processor = self.broker.dispatcher.processor_for(RequestCode.CHECK_CLIENT_CONFIG)
        self.assertTrue(verifyObject(IRequestProcessor, processor))

    def test_heartbeat_with_invalid_expression(self) -> None:
        """A heartbeat SQL92 expression that does not compile leaves no data: pulls get 27."""
        self.build(enabled=True)
        self.put_numbered(1)
        hb = new_request(RequestCode.HEART_BEAT, None, heartbeat("G", [sql_sub("T", "n <", 5)]))
        self.answer(hb)
        self.assertEqual(
            self.answer(pull(0, sys_flag=0, sub_version=5)).code,
            ResponseCode.FILTER_DATA_NOT_EXIST,
        )

    def test_held_sql_pull_wakes_on_arrival(self) -> None:
        """A held SQL92 pull is answered when a matching message arrives."""
        self.build(enabled=True)
        self.broker.topics.create_topic_in_send("T", "TBW102", 1)
        d = self.broker.dispatcher.dispatch(self.conn, pull(0, sys_flag=6, expr="n = 'yes'"))
        self.assertNoResult(d)
        self.put({"n": "yes"})
        resp = self.successResultOf(d)
        assert resp is not None
        self.assertEqual(resp.code, ResponseCode.SUCCESS)
        self.assertEqual(len(decode_messages(resp.body)), 1)

    def test_filter_result_keeps_offsets_aligned(self) -> None:
        """filter_result drops records and their queue offsets and tags codes together."""
        self.build(enabled=True)
        self.put_numbered(4)
        result = _record_result(self, self.store, "T")
        filtered = filter_result(result, compile_selector("n IN ('1', '3')"))
        self.assertEqual(filtered.queue_offsets, [1, 3])
        self.assertEqual(len(filtered.tags_codes), 2)
        self.assertIs(filtered.status, GetMessageStatus.FOUND)
        self.assertIs(filter_result(result, compile_selector("n IS NOT NULL")), result)
