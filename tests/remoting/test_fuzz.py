"""Property tests of the codec and framing (hypothesis), plus a regression corpus.

The corpus (``tests/remoting/corpus/*.hex``, one frame WITHOUT its length word per file) holds
hostile inputs: deep nesting, huge numbers, negative lengths, bad UTF-8, lone surrogates. Each
must decode or fail with FrameError/HeaderError only, and whatever decodes must round-trip.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.errors import FrameError, HeaderError
from rmq.remoting.codec import decode, encode
from rmq.remoting.codes import SerializeType
from rmq.remoting.command import RemotingCommand
from rmq.remoting.dispatch import Dispatcher
from rmq.remoting.protocol import RemotingProtocol
from tests.support.vectors import frame_names, load_frame

CORPUS = Path(__file__).parent / "corpus"

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_tricky = st.sampled_from(
    ["a", '"', "\\", "\x00", "\x01", "\x02", "\x7f", "\ue000", "\ue001", "\u2028", "é"]
)
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40) | st.text(
    _tricky, max_size=12
)
_int32 = st.integers(-(2**31), 2**31 - 1)
_int16 = st.integers(-(2**15), 2**15 - 1)


@st.composite
def commands(draw: st.DrawFn) -> RemotingCommand:
    """Any command both serializations can carry (ROCKETMQ narrows code/version to int16)."""
    serialize_type = draw(st.sampled_from([SerializeType.JSON, SerializeType.ROCKETMQ]))
    small = serialize_type == SerializeType.ROCKETMQ
    return RemotingCommand(
        code=draw(_int16 if small else _int32),
        opaque=draw(_int32),
        flag=draw(_int32),
        remark=draw(st.none() | _text.filter(bool)),
        ext_fields=draw(st.dictionaries(_text, _text, max_size=8)),
        body=draw(st.binary(max_size=64)),
        language=draw(st.integers(0, 255)),
        version=draw(_int16 if small else _int32),
        serialize_type=serialize_type,
    )


def _decode_or_expected_error(data: bytes) -> RemotingCommand | None:
    try:
        return decode(data)
    except (FrameError, HeaderError):
        return None


class CodecPropertyTests(SynchronousTestCase):
    """Generated commands round-trip; random input never raises anything unexpected."""

    @FUZZ
    @given(commands())
    def test_round_trip(self, cmd: RemotingCommand) -> None:
        """decode(encode(cmd)) == cmd, and re-encoding the result gives the same bytes."""
        data = encode(cmd)
        again = decode(data[4:])
        self.assertEqual(again, cmd)
        self.assertEqual(encode(again), data)

    @FUZZ
    @given(st.binary(max_size=200), st.sampled_from([0, 1, 2, 255]))
    def test_random_bytes(self, header: bytes, serialize_type: int) -> None:
        """Random headers of any serialize type decode or raise FrameError/HeaderError only."""
        word = ((serialize_type << 24) | len(header)).to_bytes(4, "big")
        self.assertIsInstance(
            _decode_or_expected_error(word + header), (RemotingCommand, type(None))
        )
        _decode_or_expected_error(header)

    @FUZZ
    @given(st.data())
    def test_mutated_vectors(self, data: st.DataObject) -> None:
        """Captured frames with bytes changed or cut decode or fail with the codec's errors."""
        names = frame_names()
        if not names:
            return
        frame = bytearray(load_frame(data.draw(st.sampled_from(names)))[4:])
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(frame) - 1))
            frame[pos] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(frame)))
        cmd = _decode_or_expected_error(bytes(frame[:cut]))
        if cmd is not None:
            _round_trips_by_value(self, cmd)

    def test_corpus(self) -> None:
        """Every corpus input decodes or fails with FrameError/HeaderError only."""
        files = sorted(CORPUS.glob("*.hex"))
        self.assertGreater(len(files), 10)
        decoded = 0
        for path in files:
            data = bytes.fromhex(path.read_text("ascii").strip())
            cmd = _decode_or_expected_error(data)
            if cmd is not None:
                decoded += 1
                _round_trips_by_value(self, cmd)
        # Some corpus entries are valid-but-odd headers that must be accepted.
        self.assertGreater(decoded, 3)


def _round_trips_by_value(test: SynchronousTestCase, cmd: RemotingCommand) -> None:
    try:
        data = encode(cmd)
    except HeaderError:
        return  # e.g. a decoded int too large for the other serialization's field
    test.assertEqual(decode(data[4:]), cmd)


class ProtocolFuzzTests(SynchronousTestCase):
    """Random byte streams never raise out of dataReceived."""

    @FUZZ
    @given(st.lists(st.binary(max_size=64), max_size=8))
    def test_random_stream(self, chunks: list[bytes]) -> None:
        """Any stream in any chunking is framed, answered or closed, without exceptions."""
        transport = StringTransport()
        proto = RemotingProtocol(Dispatcher(), Clock(), max_frame_size=4096)
        proto.makeConnection(transport)
        for chunk in chunks:
            proto.dataReceived(chunk)
        proto.connectionLost(Failure(ConnectionDone()))
