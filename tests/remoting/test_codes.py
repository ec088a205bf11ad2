"""Tests of rmq.remoting.codes: RocketMQ's names and values."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rmq.remoting.codes import (
    CURRENT_VERSION,
    LanguageCode,
    RequestCode,
    ResponseCode,
    SerializeType,
    Version,
)


class CodesTests(SynchronousTestCase):
    """The enums carry RocketMQ's names with RocketMQ's values."""

    def test_request_codes(self) -> None:
        """A sample of request codes from protocol §3.1 has the Java values."""
        expected = {
            "SEND_MESSAGE": 10,
            "PULL_MESSAGE": 11,
            "HEART_BEAT": 34,
            "END_TRANSACTION": 37,
            "CHECK_TRANSACTION_STATE": 39,
            "NOTIFY_CONSUMER_IDS_CHANGED": 40,
            "REGISTER_BROKER": 103,
            "GET_ROUTEINFO_BY_TOPIC": 105,
            "GET_KVLIST_BY_NAMESPACE": 219,
            "RESET_CONSUMER_CLIENT_OFFSET": 220,
            "GET_TOPICS_BY_CLUSTER": 224,
            "QUERY_TOPIC_CONSUME_BY_WHO": 300,
            "SEND_MESSAGE_V2": 310,
            "SEND_BATCH_MESSAGE": 320,
            "QUERY_DATA_VERSION": 322,
            "ADD_WRITE_PERM_OF_BROKER": 327,
        }
        self.assertEqual({name: RequestCode[name].value for name in expected}, expected)

    def test_codes_unique(self) -> None:
        """No two members of an enum share a value (an alias would hide a typo)."""
        for enum_cls in (RequestCode, ResponseCode, LanguageCode):
            values = [m.value for m in enum_cls.__members__.values()]
            self.assertEqual(len(values), len(set(values)), enum_cls.__name__)

    def test_response_codes(self) -> None:
        """Response codes from protocol §3.2 have the Java values."""
        self.assertEqual(ResponseCode.SUCCESS, 0)
        self.assertEqual(ResponseCode.SYSTEM_ERROR, 1)
        self.assertEqual(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, 3)
        self.assertEqual(ResponseCode.TOPIC_NOT_EXIST, 17)
        self.assertEqual(ResponseCode.PULL_NOT_FOUND, 19)
        self.assertEqual(ResponseCode.QUERY_NOT_FOUND, 22)
        self.assertEqual(ResponseCode.CONSUMER_NOT_ONLINE, 206)
        self.assertEqual(ResponseCode.FLOW_CONTROL, 215)

    def test_language_codes(self) -> None:
        """All thirteen language codes of protocol §3.3 are present, in order."""
        self.assertEqual(
            [m.name for m in LanguageCode],
            "JAVA CPP DOTNET PYTHON DELPHI ERLANG RUBY OTHER HTTP GO PHP OMS RUST".split(),
        )
        self.assertEqual([m.value for m in LanguageCode], list(range(13)))

    def test_serialize_type_and_version(self) -> None:
        """JSON is 0, ROCKETMQ is 1, and we send V4_9_7 (407)."""
        self.assertEqual((SerializeType.JSON, SerializeType.ROCKETMQ), (0, 1))
        self.assertEqual(CURRENT_VERSION, 407)
        self.assertEqual(Version.V4_9_4, 401)
