"""Tests for rmq.common.fastjson: the lenient reader and the compact and pretty writers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rmq.common import fastjson
from rmq.common.fastjson import JsonError, ObjectKey
from tests.support.vectors import require_vectors


class LoadsTests(SynchronousTestCase):
    def test_standard_json(self) -> None:
        """Standard JSON parses as the stdlib would, from bytes or str."""
        self.assertEqual(
            fastjson.loads(b'{"a":[1,2.5,"x",null,true]}'), {"a": [1, 2.5, "x", None, True]}
        )
        self.assertEqual(fastjson.loads('"\\u00e9"'), "\u00e9")

    def test_loads_object(self) -> None:
        """loads_object returns an object and names what it read when the JSON is not one."""
        self.assertEqual(fastjson.loads_object(b'{1:"a"}', "t.json"), {"1": "a"})
        with self.assertRaises(ValueError) as cm:
            fastjson.loads_object(b"[1]", "t.json")
        self.assertEqual(str(cm.exception), "t.json is not a JSON object")
        self.assertRaises(JsonError, fastjson.loads_object, b"{", "t.json")

    def test_unquoted_numeric_keys_become_strings(self) -> None:
        """fastjson's unquoted integer keys are read as string keys."""
        got = fastjson.loads(
            b'{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"x":{-1:2}}'
        )
        self.assertEqual(
            got, {"brokerAddrs": {"0": "127.0.0.1:10911", "1": "127.0.0.1:10921"}, "x": {"-1": 2}}
        )

    def test_object_keys(self) -> None:
        """A JSON object used as a key becomes a hashable ObjectKey keeping field order."""
        got = fastjson.loads(
            b'{"offsetTable":{{"brokerName":"a","queueId":2,"topic":"T"}:{"o":1}}}'
        )
        (key,) = got["offsetTable"]
        self.assertIsInstance(key, ObjectKey)
        self.assertEqual(key.as_dict(), {"brokerName": "a", "queueId": 2, "topic": "T"})
        self.assertEqual(
            got["offsetTable"][ObjectKey.of(brokerName="a", queueId=2, topic="T")], {"o": 1}
        )

    def test_trailing_newline_and_whitespace(self) -> None:
        """Whitespace around the value (cpp's trailing newline) is accepted in both parsers."""
        self.assertEqual(fastjson.loads(b' {"a":1}\n'), {"a": 1})
        self.assertEqual(fastjson.loads(b" {0 : 1 ,\n 2:3}\n"), {"0": 1, "2": 3})

    def test_errors(self) -> None:
        """Text that is not JSON in any dialect raises JsonError (a ValueError)."""
        for bad in (b"", b"{", b'{"a":}', b"[1,2", b'{"a":1} x', b"\xff\xfe", b"{[1]:2}"):
            self.assertRaises(JsonError, fastjson.loads, bad)
        self.assertTrue(issubclass(JsonError, ValueError))

    def test_store_vectors_parse(self) -> None:
        """Every config file RocketMQ 4.9.7 wrote (vectors/store/*.json) parses."""
        store = require_vectors() / "store"
        offsets = fastjson.loads((store / "consumerOffset.json").read_bytes())
        self.assertEqual(offsets["offsetTable"]["TopicJ@CG_JAVA"], {"0": 3, "1": 4, "2": 1, "3": 1})
        delay = fastjson.loads((store / "delayOffset.json").read_bytes())
        self.assertEqual(delay, {"offsetTable": {"2": 1, "3": 4}})
        kv = fastjson.loads((store / "kvConfig.json").read_bytes())
        self.assertEqual(kv, {"configTable": {"ORDER_TOPIC_CONFIG": {"TopicOrd": "broker-a:4"}}})


class DumpsTests(SynchronousTestCase):
    def test_compact_int_keys_unquoted(self) -> None:
        """Integer keys are unquoted in fastjson style and quoted in standard mode."""
        obj = {"brokerAddrs": {0: "a", 1: "b"}, "n": -5, "f": 0.0, "t": True, "z": None}
        self.assertEqual(
            fastjson.dumps(obj), b'{"brokerAddrs":{0:"a",1:"b"},"n":-5,"f":0.0,"t":true,"z":null}'
        )
        self.assertEqual(
            fastjson.dumps(obj, standard=True),
            b'{"brokerAddrs":{"0":"a","1":"b"},"n":-5,"f":0.0,"t":true,"z":null}',
        )

    def test_strings(self) -> None:
        """Strings are escaped; non-ASCII stays UTF-8 except in standard (browser) mode."""
        self.assertEqual(
            fastjson.dumps(['a"b\\\n', "\u00e9"]), '["a\\"b\\\\\\n","\u00e9"]'.encode()
        )
        self.assertEqual(fastjson.dumps(["\u00e9"], standard=True), b'["\\u00e9"]')

    def test_object_key_round_trip(self) -> None:
        """An ObjectKey is written as a JSON object key and read back equal."""
        obj = {"offsetTable": {ObjectKey.of(brokerName="a", queueId=2, topic="T"): 7}}
        text = fastjson.dumps(obj)
        self.assertEqual(text, b'{"offsetTable":{{"brokerName":"a","queueId":2,"topic":"T"}:7}}')
        self.assertEqual(fastjson.loads(text), obj)

    def test_unsupported(self) -> None:
        """Objects that have no JSON form raise TypeError."""
        self.assertRaises(TypeError, fastjson.dumps, object())
        self.assertRaises(TypeError, fastjson.dumps, {1.5: 1})

    def test_pretty_matches_rocketmq_files(self) -> None:
        """dumps_pretty reproduces the config files RocketMQ 4.9.7 wrote, byte for byte."""
        store = require_vectors() / "store"
        for name in ("topics.json", "subscriptionGroup.json", "consumerFilter.json"):
            raw = (store / name).read_bytes()
            self.assertEqual(fastjson.dumps_pretty(fastjson.loads(raw)), raw, name)
        for name in ("consumerOffset.json", "delayOffset.json"):
            raw = (store / name).read_bytes()
            parsed = fastjson.loads(raw)

            def intkeys(d: object) -> object:
                if isinstance(d, dict):
                    return {
                        (int(k) if k.lstrip("-").isdigit() else k): intkeys(v) for k, v in d.items()
                    }
                return d

            self.assertEqual(fastjson.dumps_pretty(intkeys(parsed)), raw, name)

    def test_pretty_lists_and_empties(self) -> None:
        """Lists put each item on its own line; empty maps and lists stay on one line."""
        self.assertEqual(
            fastjson.dumps_pretty({"a": [1, 2], "b": {}, "c": []}),
            b'{\n\t"a":[\n\t\t1,\n\t\t2\n\t],\n\t"b":{},\n\t"c":[]\n}',
        )


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(), st.integers(-1000, 1000)), children, max_size=4),
    ),
    max_leaves=20,
)


def _stringify_keys(value: object) -> object:
    """What a reader sees: integer keys come back as their decimal text."""
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


class RoundTripTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(_values)
    def test_every_writer_round_trips(self, value: object) -> None:
        """Compact fastjson, standard and pretty output all read back to the same value."""
        expected = _stringify_keys(value)
        self.assertEqual(fastjson.loads(fastjson.dumps(value)), expected)
        self.assertEqual(fastjson.loads(fastjson.dumps(value, standard=True)), expected)
        self.assertEqual(fastjson.loads(fastjson.dumps_pretty(value)), expected)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=64))
    def test_garbage_never_crashes(self, data: bytes) -> None:
        """Arbitrary bytes either parse or raise JsonError, never anything else."""
        try:
            fastjson.loads(data)
        except JsonError:
            pass
