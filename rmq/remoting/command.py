"""``RemotingCommand``: one RocketMQ remoting frame as a value (per Java's RemotingCommand).

A command is a request (flag bit 0 clear) or a response (bit 0 set, same ``opaque`` as its
request); bit 1 marks a oneway request that is never answered. ``ext_fields`` is the
string-to-string custom header; the typed accessors ``ext_str``/``ext_int``/``ext_bool`` read it
the way Java's ``decodeCommandCustomHeader`` does, but raise ``HeaderError`` (code SYSTEM_ERROR,
remark naming the field) for a missing or malformed required field instead of carrying on with
a null.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TypeVar, overload

import attrs

from rmq.common.errors import HeaderError
from rmq.remoting.codes import (
    CURRENT_VERSION,
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    LanguageCode,
    ResponseCode,
    SerializeType,
)

T = TypeVar("T")

_opaque_counter = itertools.count(1)


def next_opaque() -> int:
    """A fresh request id (process-wide counter like Java's, kept in the positive int32 range)."""
    return next(_opaque_counter) & 0x7FFFFFFF


@attrs.define
class RemotingCommand:
    """One request or response (per Java's RemotingCommand).

    ``ext_fields_present`` records whether a JSON header carried an ``extFields`` key even when it
    was empty (Java writes ``"extFields":{}`` when the command has a custom header class whose
    fields are all null); it only affects how an empty ``ext_fields`` is written and takes no part
    in equality.
    """

    code: int
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] = attrs.Factory(dict)
    body: bytes = b""
    language: int = LanguageCode.JAVA
    version: int = CURRENT_VERSION
    serialize_type: int = SerializeType.JSON
    ext_fields_present: bool = attrs.field(default=False, eq=False, repr=False)

    @property
    def is_response(self) -> bool:
        """True when the RESPONSE bit (flag bit 0) is set."""
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        """True when the ONEWAY bit (flag bit 1) is set: no response may be sent."""
        return bool(self.flag & FLAG_ONEWAY)

    def _missing(self, name: str) -> HeaderError:
        return HeaderError(
            f"the custom field <{name}> is null",
            ResponseCode.SYSTEM_ERROR,
            self.opaque,
        )

    @overload
    def ext_str(self, name: str) -> str: ...

    @overload
    def ext_str(self, name: str, default: T) -> str | T: ...

    def ext_str(self, name: str, default: object = attrs.NOTHING) -> object:
        """The string value of header field ``name``; ``default`` if absent, else HeaderError."""
        try:
            return self.ext_fields[name]
        except KeyError:
            if default is attrs.NOTHING:
                raise self._missing(name) from None
            return default

    @overload
    def ext_int(self, name: str) -> int: ...

    @overload
    def ext_int(self, name: str, default: T) -> int | T: ...

    def ext_int(self, name: str, default: object = attrs.NOTHING) -> object:
        """Header field ``name`` parsed as a decimal integer (Java ``Integer/Long.parseLong``).

        Absent: ``default``, or HeaderError when no default was given. A value that is not a
        decimal integer raises HeaderError naming the field, whether or not a default was given.
        """
        value = self.ext_fields.get(name)
        if value is None:
            if default is attrs.NOTHING:
                raise self._missing(name)
            return default
        if value.isdigit() and value.isascii():  # the usual case, two C calls
            return int(value)
        if not _is_decimal(value):
            raise HeaderError(
                f"the custom field <{name}> is not an integer: {value!r}",
                ResponseCode.SYSTEM_ERROR,
                self.opaque,
            )
        return int(value)

    @overload
    def ext_bool(self, name: str) -> bool: ...

    @overload
    def ext_bool(self, name: str, default: T) -> bool | T: ...

    def ext_bool(self, name: str, default: object = attrs.NOTHING) -> object:
        """Header field ``name`` as Java's ``Boolean.parseBoolean`` reads it.

        Only a case-insensitive ``"true"`` is True; every other value (including cpp's ``"1"``) is
        False, exactly as a Java broker sees it. Absent: ``default``, or HeaderError.
        """
        try:
            value = self.ext_fields[name]
        except KeyError:
            if default is attrs.NOTHING:
                raise self._missing(name) from None
            return default
        return value.lower() == "true"


def _is_decimal(value: str) -> bool:
    """Whether ``value`` is what Java's ``Long.parseLong`` accepts: optional sign, ASCII digits."""
    digits = value[1:] if value[:1] in ("-", "+") else value
    return digits.isascii() and digits.isdigit()


def ext_value(value: object) -> str:
    """The wire text of one header field value: Java ``toString()`` (booleans "true"/"false")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))  # int() so IntEnum members give their number
    return str(value)


def to_ext_fields(fields: Mapping[str, object] | None) -> dict[str, str]:
    """Convert a mapping of header values to wire strings, dropping ``None`` values."""
    if not fields:
        return {}
    return {k: v if type(v) is str else ext_value(v) for k, v in fields.items() if v is not None}


def new_request(
    code: int,
    ext_fields: Mapping[str, object] | None = None,
    body: bytes = b"",
    *,
    oneway: bool = False,
) -> RemotingCommand:
    """A request with a fresh opaque (per RemotingCommand.createRequestCommand).

    ``ext_fields`` values are converted with Java's ``toString()`` rules (booleans
    ``"true"``/``"false"``); ``None`` values are dropped.
    """
    return RemotingCommand(
        code=int(code),
        opaque=next_opaque(),
        flag=FLAG_ONEWAY if oneway else 0,
        ext_fields=to_ext_fields(ext_fields),
        body=body,
        ext_fields_present=ext_fields is not None,
    )


def new_response(
    request: RemotingCommand,
    code: int = ResponseCode.SUCCESS,
    remark: str | None = None,
    ext_fields: Mapping[str, object] | None = None,
    body: bytes = b"",
) -> RemotingCommand:
    """A response to ``request``: same opaque and serialize type, RESPONSE flag set.

    Passing ``ext_fields`` (even empty) marks a response with a custom header, written as an
    ``extFields`` object like Java's ``createResponseCommand(SomeHeader.class)``.
    """
    return RemotingCommand(
        code=int(code),
        opaque=request.opaque,
        flag=FLAG_RESPONSE,
        remark=remark,
        ext_fields=to_ext_fields(ext_fields),
        body=body,
        serialize_type=request.serialize_type,
        ext_fields_present=ext_fields is not None,
    )
