"""Tests of rmq.remoting.codec: frame layout, both header serializations, errors."""

from __future__ import annotations

import json
import struct

from hypothesis import given, strategies
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.errors import FrameError, HeaderError
from rmq.remoting.codec import (
    UndecodableHeaderError,
    _ext_json,
    decode,
    encode,
    encode_head,
    json_string,
)
from rmq.remoting.codes import LanguageCode, RequestCode, SerializeType
from rmq.remoting.command import RemotingCommand


def frame(header: bytes, body: bytes = b"", serialize_type: int = 0) -> bytes:
    """A frame without its total-length word, around a hand-written header."""
    return struct.pack(">I", (serialize_type << 24) | len(header)) + header + body


def _ext_json_reference(ext: dict[str, str]) -> str:
    """The extFields text built the slow, obvious way."""
    return "{" + ",".join(json_string(k) + ":" + json_string(v) for k, v in ext.items()) + "}"


class FrameLayoutTests(SynchronousTestCase):
    """Encoded frames follow protocol §1.2."""

    def test_length_words(self) -> None:
        """Total length counts the header word, header and body; the type is the high byte."""
        cmd = RemotingCommand(code=10, body=b"hello", serialize_type=SerializeType.ROCKETMQ)
        data = encode(cmd)
        total, word = struct.unpack(">iI", data[:8])
        self.assertEqual(total, len(data) - 4)
        self.assertEqual(word >> 24, 1)
        self.assertEqual(total, 4 + (word & 0xFFFFFF) + 5)
        self.assertEqual(data[-5:], b"hello")

    def test_encode_head_plus_body(self) -> None:
        """``encode_head`` followed by the body is exactly ``encode``."""
        cmd = RemotingCommand(code=11, opaque=3, body=b"x" * 100)
        self.assertEqual(encode_head(cmd) + cmd.body, encode(cmd))

    def test_rocketmq_worked_example(self) -> None:
        """The worked example of protocol §1.6 encodes byte for byte."""
        cmd = RemotingCommand(
            code=RequestCode.GET_ROUTEINFO_BY_TOPIC,
            ext_fields={"topic": "TBW102"},
            serialize_type=SerializeType.ROCKETMQ,
        )
        self.assertEqual(
            encode(cmd).hex(),
            "0000002a01000026006900019700000000000000000000000000000011"
            "0005746f70696300000006544257313032",
        )

    def test_json_java_layout(self) -> None:
        """The JSON header has Java's sorted keys, no spaces and serializeTypeCurrentRPC."""
        cmd = RemotingCommand(code=0, opaque=6, flag=1, remark="x", ext_fields={"b": "1", "a": "2"})
        header = encode(cmd)[8:]
        self.assertEqual(
            header,
            b'{"code":0,"extFields":{"b":"1","a":"2"},"flag":1,"language":"JAVA","opaque":6,'
            b'"remark":"x","serializeTypeCurrentRPC":"JSON","version":407}',
        )

    def test_json_empty_ext_fields(self) -> None:
        """Empty ext fields are omitted unless the command says it has a custom header."""
        self.assertNotIn(b"extFields", encode(RemotingCommand(code=0)))
        cmd = RemotingCommand(code=0, ext_fields_present=True)
        self.assertIn(b'"extFields":{}', encode(cmd))

    def test_empty_remark_omitted(self) -> None:
        """An empty remark is not written (cpp and Java read "" differently)."""
        self.assertNotIn(b"remark", encode(RemotingCommand(code=1, remark="")))

    def test_json_string_escapes(self) -> None:
        """Strings are escaped like fastjson: short escapes, \\uXXXX upper-case, UTF-8 kept."""
        self.assertEqual(json_string('a"b\\c'), '"a\\"b\\\\c"')
        self.assertEqual(json_string("\x01\x02\n\t"), '"\\u0001\\u0002\\n\\t"')
        self.assertEqual(json_string("\x1f\x7f"), '"\\u001F\\u007F"')
        self.assertEqual(json_string("é/中"), '"é/中"')

    def test_ext_fields_with_placeholder_characters(self) -> None:
        """Keys and values holding U+E000/U+E001 (used internally as separators) survive."""
        for ext in ({"a\ue000": 'x"', "b": "\ue001"}, {"k": "v\ue000\x01"}, {"\ue001": ""}):
            cmd = RemotingCommand(code=1, ext_fields=ext)
            header = encode(cmd)[8:]
            self.assertEqual(json.loads(header)["extFields"], ext)
            self.assertEqual(decode(encode(cmd)[4:]).ext_fields, ext)

    def test_ext_fields_fast_path_matches_per_string_escaping(self) -> None:
        """Ext fields that look safe but hold quotes, backslashes or controls are escaped."""
        for value in ('q"', "b\\", "\x7f", "\x01", "tab\t", "é", "\u2028", "", "%s", '":"'):
            ext = {"k": value, "n": "1"}
            self.assertEqual(_ext_json(ext), _ext_json_reference(ext), repr(value))

    @given(strategies.dictionaries(strategies.text(max_size=6), strategies.text(max_size=6)))
    def test_ext_fields_like_per_string_escaping(self, ext: dict[str, str]) -> None:
        """Any ext mapping is written exactly as escaping each key and value on its own."""
        self.assertEqual(_ext_json(ext), _ext_json_reference(ext))

    def test_non_string_ext_values_written_as_strings(self) -> None:
        """A processor's int or bool ext value is still written as a JSON string."""
        cmd = RemotingCommand(code=0, ext_fields={"n": 5, "b": True})  # type: ignore[dict-item]
        self.assertIn(b'"extFields":{"n":"5","b":"true"}', encode(cmd))

    def test_unencodable(self) -> None:
        """A code outside int16 cannot be written in a ROCKETMQ header: HeaderError."""
        cmd = RemotingCommand(code=70000, opaque=4, serialize_type=SerializeType.ROCKETMQ)
        err = self.assertRaises(HeaderError, encode, cmd)
        self.assertEqual(err.opaque, 4)


class RoundTripTests(SynchronousTestCase):
    """decode(encode(cmd)) == cmd in both serializations."""

    def test_round_trip(self) -> None:
        """Every header field, unicode text and the body survive both serializations."""
        for st in (SerializeType.JSON, SerializeType.ROCKETMQ):
            cmd = RemotingCommand(
                code=310,
                opaque=-5,
                flag=3,
                remark="rémark\n\x00",
                ext_fields={"a": "PG", "i": "TAGS\x01TagA\x02", "empty": "", "中": "文"},
                body=b"\x00\xff body",
                language=LanguageCode.PYTHON,
                version=401,
                serialize_type=st,
            )
            self.assertEqual(decode(encode(cmd)[4:]), cmd)


class LenientDecodeTests(SynchronousTestCase):
    """The reader accepts what other clients write (protocol §1.5, §12)."""

    def test_cpp_style(self) -> None:
        """Trailing newline, remark "" (-> None), numbers as ext values, CPP language."""
        header = (
            b'{"code":10,"extFields":{"queueId":3,"batch":"0","x":null},"flag":0,'
            b'"language":"CPP","opaque":2,"remark":"","version":63}\n'
        )
        cmd = decode(frame(header, b"body"))
        self.assertEqual(cmd.code, 10)
        self.assertEqual(cmd.ext_fields, {"queueId": "3", "batch": "0"})
        self.assertIsNone(cmd.remark)
        self.assertEqual(cmd.language, LanguageCode.CPP)
        self.assertEqual(cmd.version, 63)
        self.assertEqual(cmd.body, b"body")

    def test_alions_style(self) -> None:
        """Any key order; booleans, big numbers and floats become Java text."""
        header = (
            b'{"code":310,"language":"JAVA","opaque":1,"flag":0,"version":121,'
            b'"extFields":{"k":false,"g":1795295269512,"f":1.5,"o":{"a":[1]}}}'
        )
        cmd = decode(frame(header))
        self.assertEqual(
            cmd.ext_fields, {"k": "false", "g": "1795295269512", "f": "1.5", "o": '{"a":[1]}'}
        )

    def test_missing_fields_default(self) -> None:
        """Absent opaque/flag/version/language/extFields take Java's defaults."""
        cmd = decode(frame(b'{"code":105}'))
        self.assertEqual(cmd, RemotingCommand(code=105, version=0))

    def test_language_ordinal_and_unknown_name(self) -> None:
        """An integer language is taken as the code; an unknown name becomes OTHER."""
        self.assertEqual(decode(frame(b'{"code":1,"language":3}')).language, LanguageCode.PYTHON)
        self.assertEqual(
            decode(frame(b'{"code":1,"language":"COBOL"}')).language, LanguageCode.OTHER
        )

    def test_rocketmq_empty_remark_is_none(self) -> None:
        """A zero-length remark in a ROCKETMQ header decodes as None."""
        cmd = RemotingCommand(code=1, remark="", serialize_type=SerializeType.ROCKETMQ)
        self.assertIsNone(decode(encode(cmd)[4:]).remark)


class DecodeErrorTests(SynchronousTestCase):
    """Bad input raises FrameError or HeaderError, with the opaque when it was readable."""

    def test_short_frame(self) -> None:
        """Fewer than 4 bytes is a FrameError."""
        self.assertRaises(FrameError, decode, b"\x00\x00")

    def test_header_longer_than_frame(self) -> None:
        """A header length beyond the frame is a FrameError."""
        self.assertRaises(FrameError, decode, struct.pack(">I", 10) + b"{}")

    def test_unknown_serialize_type(self) -> None:
        """A serialize type other than 0 or 1 is a HeaderError."""
        self.assertRaises(HeaderError, decode, frame(b"{}", serialize_type=7))

    def test_bad_json_keeps_opaque(self) -> None:
        """Broken JSON still reports the opaque when the text shows it."""
        err = self.assertRaises(UndecodableHeaderError, decode, frame(b'{"opaque":42,"code":'))
        self.assertEqual(err.opaque, 42)

    def test_bad_field_type_keeps_opaque_and_flag(self) -> None:
        """A field of the wrong type is a HeaderError carrying opaque and flag."""
        err = self.assertRaises(
            UndecodableHeaderError, decode, frame(b'{"code":[1],"opaque":7,"flag":2}')
        )
        self.assertEqual((err.opaque, err.flag), (7, 2))

    def test_not_an_object(self) -> None:
        """A JSON header that is not an object is a HeaderError without opaque."""
        err = self.assertRaises(UndecodableHeaderError, decode, frame(b"[1,2]"))
        self.assertIsNone(err.opaque)

    def test_int32_range(self) -> None:
        """An opaque outside the int32 range is refused."""
        self.assertRaises(HeaderError, decode, frame(json.dumps({"opaque": 2**31}).encode()))

    def test_bad_utf8(self) -> None:
        """Invalid UTF-8 in a JSON header is a HeaderError."""
        self.assertRaises(HeaderError, decode, frame(b'{"code":1,"remark":"\xff"}'))

    def test_rocketmq_truncated(self) -> None:
        """A ROCKETMQ header cut inside the ext area reports opaque and flag."""
        cmd = RemotingCommand(
            code=1, opaque=99, ext_fields={"k": "v"}, serialize_type=SerializeType.ROCKETMQ
        )
        header = encode(cmd)[8:]
        for cut in range(9, len(header)):
            with self.subTest(cut=cut):
                err = self.assertRaises(
                    UndecodableHeaderError, decode, frame(header[:cut], serialize_type=1)
                )
                self.assertEqual(err.opaque, 99)

    def test_rocketmq_negative_lengths(self) -> None:
        """Negative remark, area, key or value lengths are HeaderErrors."""
        fixed = struct.pack(">hBhiii", 1, 0, 1, 5, 0, -1)
        self.assertRaises(HeaderError, decode, frame(fixed + b"\x00" * 4, serialize_type=1))
        fixed = struct.pack(">hBhiii", 1, 0, 1, 5, 0, 0)
        area = struct.pack(">h", -1) + b"\x00" * 4
        data = fixed + struct.pack(">i", len(area)) + area
        self.assertRaises(HeaderError, decode, frame(data, serialize_type=1))
        area = struct.pack(">h", 1) + b"k" + struct.pack(">i", -3)
        data = fixed + struct.pack(">i", len(area)) + area
        self.assertRaises(HeaderError, decode, frame(data, serialize_type=1))
