"""Tests of rmq.remoting.dispatch: routing, error responses, oneway handling."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.common.errors import RMQError
from rmq.remoting.codes import RequestCode, ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.dispatch import Dispatcher, FunctionProcessor
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from tests.remoting.helpers import RecordingProcessor


class _Conn:
    remote_address = "10.0.0.1:1234"


CONN: IRemotingConnection = _Conn()  # type: ignore[assignment]


class DispatcherTests(SynchronousTestCase):
    """The dispatcher routes by code and turns every outcome into the right response."""

    def test_function_processor_provides_interface(self) -> None:
        """FunctionProcessor provides IRequestProcessor."""
        self.assertTrue(verifyObject(IRequestProcessor, FunctionProcessor(lambda c, r: None)))

    def test_routes_by_code(self) -> None:
        """The processor registered for the code gets the connection and the request."""
        heartbeat = RecordingProcessor()
        send = RecordingProcessor()
        dispatcher = Dispatcher({RequestCode.HEART_BEAT: heartbeat, 310: send})
        req = new_request(RequestCode.SEND_MESSAGE_V2)
        dispatcher.dispatch(CONN, req)
        self.assertEqual(send.calls, [(CONN, req)])
        self.assertEqual(heartbeat.calls, [])

    def test_response_fixed_up(self) -> None:
        """The returned response gets the request's opaque, serialize type and flag 1."""
        req = RemotingCommand(code=34, opaque=42, serialize_type=SerializeType.ROCKETMQ, flag=0)
        dispatcher = Dispatcher({34: FunctionProcessor(lambda c, r: RemotingCommand(code=0))})
        resp = self.successResultOf(dispatcher.dispatch(CONN, req))
        assert resp is not None
        self.assertEqual((resp.opaque, resp.flag, resp.serialize_type), (42, 1, 1))

    def test_unknown_code(self) -> None:
        """An unknown code gets REQUEST_CODE_NOT_SUPPORTED naming the code, like Java."""
        req = RemotingCommand(code=9999, opaque=3)
        resp = self.successResultOf(Dispatcher({}).dispatch(CONN, req))
        assert resp is not None
        self.assertEqual(resp.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
        self.assertEqual(resp.remark, " request type 9999 not supported")
        self.assertEqual(resp.opaque, 3)

    def test_default_processor(self) -> None:
        """Codes without a processor go to the default one."""
        default = RecordingProcessor(RemotingCommand(code=0))
        dispatcher = Dispatcher({}, default=default)
        self.successResultOf(dispatcher.dispatch(CONN, RemotingCommand(code=77)))
        self.assertEqual(len(default.calls), 1)

    def test_rmq_error(self) -> None:
        """An RMQError becomes a response with its code and remark."""
        proc = RecordingProcessor(error=RMQError("no such topic", ResponseCode.TOPIC_NOT_EXIST))
        resp = self.successResultOf(Dispatcher({105: proc}).dispatch(CONN, new_request(105)))
        assert resp is not None
        self.assertEqual((resp.code, resp.remark), (17, "no such topic"))

    def test_unexpected_exception(self) -> None:
        """Any other exception is logged and becomes SYSTEM_ERROR with a remark."""
        proc = RecordingProcessor(error=ZeroDivisionError("boom"))
        resp = self.successResultOf(Dispatcher({105: proc}).dispatch(CONN, new_request(105)))
        assert resp is not None
        self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)
        self.assertIn("boom", resp.remark or "")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_deferred_results(self) -> None:
        """A Deferred result is awaited; its failure is converted like a raise."""
        later: Deferred[RemotingCommand | None] = Deferred()
        dispatcher = Dispatcher(
            {
                1: FunctionProcessor(lambda c, r: later),
                2: FunctionProcessor(lambda c, r: fail(RMQError("busy", ResponseCode.SYSTEM_BUSY))),
            }
        )
        d = dispatcher.dispatch(CONN, new_request(1))
        self.assertNoResult(d)
        req = new_request(1)
        later.callback(new_response(req, ResponseCode.SUCCESS, "ok"))
        resp = self.successResultOf(d)
        assert resp is not None
        self.assertEqual(resp.remark, "ok")
        resp2 = self.successResultOf(dispatcher.dispatch(CONN, new_request(2)))
        assert resp2 is not None
        self.assertEqual(resp2.code, ResponseCode.SYSTEM_BUSY)

    def test_oneway_never_answered(self) -> None:
        """A oneway request yields no response, whether the processor answers or fails."""
        ok = RecordingProcessor(RemotingCommand(code=0))
        bad = RecordingProcessor(error=RMQError("refused", 16))
        dispatcher = Dispatcher({1: ok, 2: bad})
        self.assertIsNone(
            self.successResultOf(dispatcher.dispatch(CONN, new_request(1, oneway=True)))
        )
        self.assertIsNone(
            self.successResultOf(dispatcher.dispatch(CONN, new_request(2, oneway=True)))
        )
        self.assertIsNone(
            self.successResultOf(dispatcher.dispatch(CONN, new_request(3, oneway=True)))
        )
        self.assertEqual((len(ok.calls), len(bad.calls)), (1, 1))

    def test_none_result(self) -> None:
        """A processor returning None sends nothing (NameServer-style silence)."""
        dispatcher = Dispatcher({1: RecordingProcessor(None)})
        self.assertIsNone(self.successResultOf(dispatcher.dispatch(CONN, new_request(1))))

    def test_bad_result_type(self) -> None:
        """A processor returning something else is a SYSTEM_ERROR, logged."""
        dispatcher = Dispatcher({1: RecordingProcessor("not a command")})
        resp = self.successResultOf(dispatcher.dispatch(CONN, new_request(1)))
        assert resp is not None
        self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)

    def test_handle_is_synchronous(self) -> None:
        """``handle`` calls respond synchronously for a synchronous processor."""
        got: list[RemotingCommand] = []
        dispatcher = Dispatcher({1: RecordingProcessor(RemotingCommand(code=0))})
        dispatcher.handle(CONN, new_request(1), got.append)
        self.assertEqual(len(got), 1)

    def test_register_checks_interface(self) -> None:
        """Registering an object that is not an IRequestProcessor fails at wiring time."""
        self.assertRaises(TypeError, Dispatcher, {1: object()})
