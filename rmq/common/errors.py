"""The rmq exception tree (names follow RocketMQ's remoting.exception and client.exception).

Every error carries the RocketMQ response code a server answers with (``.code``) and a human remark
(``.remark``). Dispatch turns an ``RMQError`` raised by a processor into a response with that code;
the client turns a non-success response back into ``MQBrokerError``.
"""

from __future__ import annotations

# Response codes used here are plain ints so rmq.common stays below rmq.remoting; the IntEnum with
# RocketMQ's names is rmq.remoting.codes.ResponseCode.
SYSTEM_ERROR = 1
SYSTEM_BUSY = 2
REQUEST_CODE_NOT_SUPPORTED = 3


class RMQError(Exception):
    """Base of every rmq error: a RocketMQ response ``code`` and a ``remark``."""

    code: int = SYSTEM_ERROR

    def __init__(self, remark: str = "", code: int | None = None) -> None:
        super().__init__(remark)
        self.remark = remark
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"CODE: {self.code} DESC: {self.remark}"


class RemotingError(RMQError):
    """Transport-level failure (connection, timeout, send)."""


class RemotingConnectError(RemotingError):
    """Could not connect to a peer address."""


class RemotingTimeoutError(RemotingError):
    """A request got no response in time."""


class RemotingSendRequestError(RemotingError):
    """A request could not be written, or its connection was lost before the answer."""


class RemotingTooMuchRequestError(RemotingError):
    """Too many requests in flight (RocketMQ's semaphore limits)."""


class FrameError(RMQError):
    """A frame with inconsistent or oversized lengths; the connection is closed."""


class HeaderError(RMQError):
    """A header that cannot be decoded, or a required field missing or malformed.

    ``opaque`` is set when it could be read, so an error response can still be sent.
    """

    def __init__(self, remark: str = "", code: int | None = None, opaque: int | None = None):
        super().__init__(remark, code)
        self.opaque = opaque


class MQBrokerError(RMQError):
    """A broker or NameServer answered with a non-success response code."""

    def __init__(self, code: int, remark: str = "", addr: str | None = None) -> None:
        super().__init__(remark, code)
        self.addr = addr

    def __str__(self) -> str:
        where = f" BROKER: {self.addr}" if self.addr else ""
        return f"CODE: {self.code} DESC: {self.remark}{where}"


class MQClientError(RMQError):
    """Client misuse or bad client configuration (also raised when no route can be found)."""
