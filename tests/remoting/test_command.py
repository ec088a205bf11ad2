"""Tests of rmq.remoting.command: RemotingCommand, constructors, typed ext accessors."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rmq.common.errors import HeaderError
from rmq.remoting.codes import RequestCode, ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand, new_request, new_response


class NewRequestTests(SynchronousTestCase):
    """``new_request`` builds requests the way Java's createRequestCommand does."""

    def test_values_become_strings(self) -> None:
        """Ints, bools and enums become Java toString() text; None values are dropped."""
        req = new_request(
            RequestCode.PULL_MESSAGE,
            {
                "queueId": 3,
                "unitMode": False,
                "batch": True,
                "code": ResponseCode.SYSTEM_ERROR,
                "topic": "T",
                "subscription": None,
            },
        )
        self.assertEqual(
            req.ext_fields,
            {"queueId": "3", "unitMode": "false", "batch": "true", "code": "1", "topic": "T"},
        )
        self.assertEqual(req.code, 11)
        self.assertFalse(req.is_response)
        self.assertFalse(req.is_oneway)

    def test_fresh_opaque(self) -> None:
        """Two requests never share an opaque."""
        a = new_request(RequestCode.HEART_BEAT)
        b = new_request(RequestCode.HEART_BEAT)
        self.assertNotEqual(a.opaque, b.opaque)

    def test_oneway(self) -> None:
        """``oneway=True`` sets flag bit 1 only."""
        req = new_request(RequestCode.UPDATE_CONSUMER_OFFSET, oneway=True)
        self.assertEqual(req.flag, 2)
        self.assertTrue(req.is_oneway)
        self.assertFalse(req.is_response)


class NewResponseTests(SynchronousTestCase):
    """``new_response`` answers with the request's opaque and serialization."""

    def test_response_copies_opaque_and_serialize_type(self) -> None:
        """The response has flag 1, the request's opaque and its serialize type."""
        req = RemotingCommand(code=105, opaque=77, serialize_type=SerializeType.ROCKETMQ)
        resp = new_response(req, ResponseCode.TOPIC_NOT_EXIST, "no route", {"x": 1}, b"b")
        self.assertEqual(resp.flag, 1)
        self.assertTrue(resp.is_response)
        self.assertEqual(resp.opaque, 77)
        self.assertEqual(resp.serialize_type, SerializeType.ROCKETMQ)
        self.assertEqual(
            (resp.code, resp.remark, resp.ext_fields, resp.body), (17, "no route", {"x": "1"}, b"b")
        )

    def test_default_success(self) -> None:
        """Without arguments the response is SUCCESS with no remark, fields or body."""
        resp = new_response(RemotingCommand(code=34, opaque=5))
        self.assertEqual((resp.code, resp.remark, resp.ext_fields, resp.body), (0, None, {}, b""))


class ExtAccessorTests(SynchronousTestCase):
    """Typed ext accessors read like Java and fail with a HeaderError naming the field."""

    def setUp(self) -> None:
        self.cmd = RemotingCommand(
            code=11,
            opaque=9,
            ext_fields={
                "queueId": "3",
                "neg": "-12",
                "big": "9223372036854775807",
                "flagT": "TRUE",
                "flag1": "1",
                "bad": "12a",
                "empty": "",
            },
        )

    def test_ext_str(self) -> None:
        """Present fields are returned; absent ones give the default."""
        self.assertEqual(self.cmd.ext_str("queueId"), "3")
        self.assertIsNone(self.cmd.ext_str("nope", None))

    def test_missing_required(self) -> None:
        """A missing required field raises HeaderError with SYSTEM_ERROR, the name and opaque."""
        for accessor in (self.cmd.ext_str, self.cmd.ext_int, self.cmd.ext_bool):
            err = self.assertRaises(HeaderError, accessor, "topic")
            self.assertIn("topic", err.remark)
            self.assertEqual(err.code, ResponseCode.SYSTEM_ERROR)
            self.assertEqual(err.opaque, 9)

    def test_ext_int(self) -> None:
        """Decimal text parses, including signs and 64-bit values; absent gives the default."""
        self.assertEqual(self.cmd.ext_int("queueId"), 3)
        self.assertEqual(self.cmd.ext_int("neg"), -12)
        self.assertEqual(self.cmd.ext_int("big"), 2**63 - 1)
        self.assertEqual(self.cmd.ext_int("nope", -1), -1)

    def test_ext_int_malformed(self) -> None:
        """Non-decimal text raises HeaderError naming the field, default or not."""
        for name in ("bad", "empty"):
            err = self.assertRaises(HeaderError, self.cmd.ext_int, name, 0)
            self.assertIn(name, err.remark)

    def test_ext_bool_java_semantics(self) -> None:
        """Only case-insensitive "true" is True; "1" is False as Boolean.parseBoolean says."""
        self.assertTrue(self.cmd.ext_bool("flagT"))
        self.assertFalse(self.cmd.ext_bool("flag1"))
        self.assertFalse(self.cmd.ext_bool("empty"))
        self.assertTrue(self.cmd.ext_bool("nope", True))
