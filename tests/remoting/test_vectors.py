"""Every captured remoting frame in the shared vectors decodes and re-encodes.

One test method per ``*.hex`` file (generated below). Frames written by Java peers (the Java
client, mqadmin, the 4.9.7 broker and NameServer, and the probes) and every ROCKETMQ binary
header re-encode byte for byte. The files in ``EQUAL_VALUES`` come from peers whose JSON
formatting is not Java's; for those the re-encoded frame must decode to equal values.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from rmq.remoting.codec import decode, encode
from rmq.remoting.codes import LanguageCode, SerializeType
from tests.support.vectors import (
    frame_names,
    load_command,
    load_frame,
    load_hex,
    require_vectors,
    vectors_dir,
)

_ALIONS = "ali-ons JSON: fixed key order, typed ext values, no serializeTypeCurrentRPC"
_CPP = 'cpp JSON: trailing newline, remark "", typed ext values, no serializeTypeCurrentRPC'

#: Files whose re-encoding is compared by decoded values, not bytes (every other file: bytes).
EQUAL_VALUES: dict[str, str] = {
    "alions-consumer-send-msg-back.req.hex": _ALIONS,
    "alions-get-consumer-list-by-group.req.hex": _ALIONS,
    "alions-get-route.req.hex": _ALIONS,
    "alions-heartbeat.req.hex": _ALIONS,
    "alions-pull.req.hex": _ALIONS,
    "alions-query-consumer-offset.req.hex": _ALIONS,
    "alions-send-v2-compressed.req.hex": _ALIONS,
    "alions-send-v2.req.hex": _ALIONS,
    "alions-unregister-client.req.hex": _ALIONS,
    "alions-update-consumer-offset.req.hex": _ALIONS,
    "cpp-get-consumer-list-by-group.req.hex": _CPP,
    "cpp-get-route-not-exist.req.hex": _CPP,
    "cpp-get-route-tbw102.req.hex": _CPP,
    "cpp-heartbeat.req.hex": _CPP,
    "cpp-pull.req.hex": _CPP,
    "cpp-query-consumer-offset.req.hex": _CPP,
    "cpp-send-batch.req.hex": _CPP,
    "cpp-send-message-compressed.req.hex": _CPP,
    "cpp-send-message-delay.req.hex": _CPP,
    "cpp-send-message.req.hex": _CPP,
    "cpp-unregister-client.req.hex": _CPP,
    "cpp-update-consumer-offset.req.hex": _CPP,
}


def _check_frame(test: SynchronousTestCase, name: str) -> None:
    data = load_frame(name)
    test.assertEqual(int.from_bytes(data[:4], "big"), len(data) - 4, "total length word")
    cmd = decode(data[4:])
    kind = name.rsplit(".", 2)[-2]
    if kind == "resp":
        test.assertEqual(cmd.flag, 1)
    elif kind == "oneway":
        test.assertEqual(cmd.flag, 2)
    else:
        test.assertEqual(cmd.flag, 0)
    test.assertTrue(all(type(v) is str for v in cmd.ext_fields.values()))
    again = encode(cmd)
    if name in EQUAL_VALUES:
        test.assertNotEqual(again, data, f"{name} now re-encodes exactly: update EQUAL_VALUES")
        test.assertEqual(decode(again[4:]), cmd)
    else:
        test.assertEqual(again.hex(), data.hex())


def _make_test(name: str) -> Callable[[SynchronousTestCase], None]:
    def test(self: SynchronousTestCase) -> None:
        _check_frame(self, name)

    mode = "decodes to equal values" if name in EQUAL_VALUES else "re-encodes byte for byte"
    test.__doc__ = f"{name} decodes and {mode}."
    return test


class VectorFrameTests(SynchronousTestCase):
    """One generated test per captured frame."""

    def test_vectors_present(self) -> None:
        """The vectors folder exists and every file in EQUAL_VALUES is in it."""
        require_vectors()
        names = set(frame_names())
        self.assertGreater(len(names), 150)
        self.assertEqual(set(EQUAL_VALUES) - names, set())


for _name in frame_names():
    _method = "test_" + _name.removesuffix(".hex").replace("-", "_").replace(".", "_")
    setattr(VectorFrameTests, _method, _make_test(_name))


class VectorContentTests(SynchronousTestCase):
    """Decoded values of selected vectors match protocol §1.5/§1.6 and vectors/README."""

    def test_cpp_trailing_newline_and_empty_remark(self) -> None:
        """cpp's header ends with a newline and has remark ""; we read remark None."""
        data = load_frame("cpp-get-route-tbw102.req.hex")
        self.assertTrue(data[8 : 8 + (int.from_bytes(data[5:8], "big"))].endswith(b"\n"))
        cmd = decode(data[4:])
        self.assertEqual(cmd.code, 105)
        self.assertEqual(cmd.language, LanguageCode.CPP)
        self.assertEqual(cmd.version, 63)
        self.assertIsNone(cmd.remark)
        self.assertEqual(cmd.ext_fields["topic"], "TBW102")

    def test_alions_typed_values(self) -> None:
        """ali-ons numbers and booleans arrive as Java text."""
        cmd = decode(load_frame("alions-send-v2.req.hex")[4:])
        self.assertEqual(cmd.code, 310)
        self.assertEqual(cmd.version, 121)
        self.assertEqual((cmd.ext_fields["d"], cmd.ext_fields["k"]), ("4", "false"))
        self.assertEqual(cmd.ext_fields["g"], "1795295269500")

    def test_rocketmq_request(self) -> None:
        """The ROCKETMQ GET_MAX_OFFSET probe decodes with language PYTHON and its fields."""
        cmd = decode(load_frame("probe-rocketmq-get-max-offset.req.hex")[4:])
        self.assertEqual(cmd.serialize_type, SerializeType.ROCKETMQ)
        self.assertEqual((cmd.code, cmd.language, cmd.version, cmd.opaque), (30, 3, 401, 1))
        self.assertEqual(cmd.ext_fields["topic"], "TopicJ")

    def test_rocketmq_send_response_order(self) -> None:
        """The ROCKETMQ send response keeps Java's entry order (fast header first)."""
        cmd = decode(load_frame("java-rmqser-send-v2.resp.hex")[4:])
        self.assertEqual(
            list(cmd.ext_fields), ["msgId", "queueId", "queueOffset", "TRACE_ON", "MSG_REGION"]
        )

    def test_unknown_code_response(self) -> None:
        """The broker's answer to code 9999 carries the leading-space remark."""
        cmd = decode(load_frame("probe-broker-unknown-code.resp.hex")[4:])
        self.assertEqual((cmd.code, cmd.remark), (3, " request type 9999 not supported"))

    def test_pull_body(self) -> None:
        """A FOUND pull answer keeps its body (the stored records) intact."""
        data = load_frame("java-pull.resp.hex")
        cmd = decode(data[4:])
        self.assertEqual(cmd.remark, "FOUND")
        self.assertTrue(data.endswith(cmd.body))
        self.assertGreater(len(cmd.body), 0)


class VectorLoaderTests(SynchronousTestCase):
    """tests.support.vectors finds the folder through RMQ_VECTORS and skips clearly without it."""

    def _set_env(self, value: str) -> None:
        old = os.environ.get("RMQ_VECTORS")
        os.environ["RMQ_VECTORS"] = value

        def restore() -> None:
            if old is None:
                os.environ.pop("RMQ_VECTORS", None)
            else:
                os.environ["RMQ_VECTORS"] = old

        self.addCleanup(restore)

    def test_missing_folder_skips_with_reason(self) -> None:
        """A missing folder raises SkipTest naming the path and the variable."""
        missing = self.mktemp()
        self._set_env(missing)
        self.assertIsNone(vectors_dir())
        self.assertEqual(frame_names(), [])
        err = self.assertRaises(SkipTest, require_vectors)
        self.assertIn(missing, str(err))
        self.assertIn("RMQ_VECTORS", str(err))

    def test_env_folder_used(self) -> None:
        """RMQ_VECTORS points the loader at another folder; frames and excerpts load from it."""
        folder = Path(self.mktemp())
        (folder / "store").mkdir(parents=True)
        (folder / "x.req.hex").write_text("0000000800000002" + "7b7d7b7d" + "\n")
        (folder / "store" / "a.hex").write_text("00ff\n")
        self._set_env(str(folder))
        self.assertEqual(frame_names(), ["x.req.hex"])
        self.assertEqual(load_hex("store/a.hex"), b"\x00\xff")
        self.assertEqual(load_frame("x.req.hex")[:4], b"\x00\x00\x00\x08")
        self.assertEqual(load_command("x.req.hex").body, b"{}")
