"""Request dispatch: a table ``code -> IRequestProcessor`` (per Java's processorTable).

Unknown code -> REQUEST_CODE_NOT_SUPPORTED with Java's remark ``" request type N not
supported"``; an ``RMQError`` -> a response with its code and remark; any other exception ->
``log.failure`` and SYSTEM_ERROR. Dispatch never raises: the connection survives a bad request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rmq.common.errors import RMQError
from rmq.remoting.codes import FLAG_ONEWAY, FLAG_RESPONSE, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor

ProcessorResult = RemotingCommand | None | Deferred[RemotingCommand | None]


@implementer(IRequestProcessor)
class FunctionProcessor:
    """Adapts a plain callable ``(connection, request) -> response | None | Deferred`` ."""

    def __init__(
        self, fn: Callable[[IRemotingConnection, RemotingCommand], ProcessorResult]
    ) -> None:
        self.fn = fn

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> ProcessorResult:
        """Call the wrapped function."""
        return self.fn(connection, request)

    def __repr__(self) -> str:
        return f"FunctionProcessor({self.fn!r})"


def unsupported_response(request: RemotingCommand) -> RemotingCommand:
    """The REQUEST_CODE_NOT_SUPPORTED answer, with a Java broker's exact remark."""
    return new_response(
        request,
        ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
        f" request type {request.code} not supported",
    )


class Dispatcher:
    """Routes each incoming request to the processor registered for its code.

    ``default`` handles codes without their own processor; without one, such requests are
    answered REQUEST_CODE_NOT_SUPPORTED.
    """

    log = Logger()

    def __init__(
        self,
        processors: Mapping[int, IRequestProcessor] | None = None,
        default: IRequestProcessor | None = None,
    ) -> None:
        self._processors: dict[int, IRequestProcessor] = {}
        for code, processor in (processors or {}).items():
            self.register(code, processor)
        self.default = None if default is None else IRequestProcessor(default)

    def register(self, code: int, processor: IRequestProcessor) -> None:
        """Route requests with ``code`` to ``processor`` (replacing any previous one)."""
        self._processors[int(code)] = IRequestProcessor(processor)

    def processor_for(self, code: int) -> IRequestProcessor | None:
        """The processor that handles ``code`` (the default one included), or None."""
        return self._processors.get(code, self.default)

    def handle(
        self,
        connection: IRemotingConnection,
        request: RemotingCommand,
        respond: Callable[[RemotingCommand], None],
    ) -> None:
        """Process ``request`` and call ``respond`` with its response, unless there is none.

        ``respond`` is called synchronously when the processor answers synchronously (the hot
        path: no Deferred is created). It is never called for oneway requests.
        """
        result = self.process(connection, request)
        if isinstance(result, Deferred):
            result.addCallback(_respond_if_any, respond)
            result.addErrback(self._log_respond_failure, request)
        elif result is not None:
            respond(result)

    def dispatch(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> Deferred[RemotingCommand | None]:
        """Process ``request``; fires with the response to send, or None (never fails)."""
        result = self.process(connection, request)
        return result if isinstance(result, Deferred) else succeed(result)

    def process(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | None | Deferred[RemotingCommand | None]:
        """Run the processor; the response to send (or None), directly or as a Deferred.

        Never raises and the Deferred never fails: errors become error responses. The response
        has the request's opaque and serialize type and the RESPONSE flag; None for oneway.
        """
        processor = self._processors.get(request.code, self.default)
        if processor is None:
            self.log.warn(
                "Request code {code} not supported, from {peer}",
                code=request.code,
                peer=connection.remote_address,
            )
            return self._finish(unsupported_response(request), request)
        try:
            result = processor.process_request(connection, request)
        except Exception as e:
            return self._finish(self._error_response(request, Failure(e)), request)
        if isinstance(result, Deferred):
            return result.addCallbacks(
                self._finish,
                lambda failure: self._finish(self._error_response(request, failure), request),
                callbackArgs=(request,),
            )
        return self._finish(result, request)

    def _finish(self, response: Any, request: RemotingCommand) -> RemotingCommand | None:
        if response is None or request.is_oneway:
            return None
        if not isinstance(response, RemotingCommand):
            self.log.error(
                "Processor for code {code} returned {result!r}, not a RemotingCommand",
                code=request.code,
                result=response,
            )
            response = new_response(
                request, ResponseCode.SYSTEM_ERROR, f"bad processor result for {request.code}"
            )
        assert isinstance(response, RemotingCommand)
        response.opaque = request.opaque
        response.flag = (response.flag | FLAG_RESPONSE) & ~FLAG_ONEWAY
        response.serialize_type = request.serialize_type
        return response

    def _error_response(self, request: RemotingCommand, failure: Failure) -> RemotingCommand:
        error = failure.value
        if isinstance(error, RMQError):
            if request.is_oneway:
                self.log.warn(
                    "Oneway request code {code} refused: {error}", code=request.code, error=error
                )
            return new_response(request, error.code, error.remark or None)
        self.log.failure(
            "Processing request code {code} (opaque {opaque}) failed",
            failure,
            code=request.code,
            opaque=request.opaque,
        )
        return new_response(request, ResponseCode.SYSTEM_ERROR, f"{type(error).__name__}: {error}")

    def _log_respond_failure(self, failure: Failure, request: RemotingCommand) -> None:
        self.log.failure(
            "Sending the response to request code {code} failed", failure, code=request.code
        )


def _respond_if_any(
    response: RemotingCommand | None, respond: Callable[[RemotingCommand], None]
) -> None:
    if response is not None:
        respond(response)
