"""Read and write the fastjson dialect of RocketMQ's JSON bodies (protocol §2).

Java's fastjson 1.2.x writes a few things standard JSON forbids: map keys that are not strings are
written unquoted (``{0:"127.0.0.1:10911"}``) and a ``MessageQueue`` key is written as a whole JSON
object (``{{"brokerName":"a","queueId":0,"topic":"T"}:5}``). Config files are written "pretty" with
tab indentation. This module reads all of that and writes both the compact and the pretty form.

Reading (``loads``): standard JSON goes through the C parser; anything else falls back to a small
lenient recursive-descent parser. Numeric keys become ``str`` keys (``{0:"a"}`` → ``{"0": "a"}``),
object keys become :class:`ObjectKey` values (hashable, ordered ``(name, value)`` pairs).

Writing (``dumps``/``dumps_pretty``): ``dict`` keys that are ``int`` are written unquoted (fastjson
style) unless ``standard=True``; :class:`ObjectKey` keys are written as JSON objects. Key order is
the dict's order: callers that mirror a Java bean build their dicts in alphabetical key order, as
fastjson writes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from json.decoder import JSONDecodeError
from typing import Any

__all__ = ["ObjectKey", "JsonError", "loads", "loads_object", "dumps", "dumps_pretty"]

_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_encode_str_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class JsonError(ValueError):
    """The text is not JSON, not even in fastjson's lenient dialect."""


class ObjectKey(tuple[tuple[str, Any], ...]):
    """A JSON object used as a map key (fastjson writes ``Map<MessageQueue, …>`` this way).

    It is a tuple of ``(name, value)`` pairs in the order read, so it is hashable and compares by
    content. ``ObjectKey.of(brokerName="a", queueId=0, topic="T")`` builds one for writing.
    """

    __slots__ = ()

    @classmethod
    def of(cls, **fields: Any) -> ObjectKey:
        """Build a key from keyword fields, in the order given."""
        return cls(tuple(fields.items()))

    def as_dict(self) -> dict[str, Any]:
        """The key's fields as a plain dict."""
        return dict(self)


# ---------------------------------------------------------------------------------------------
# Reading


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON in fastjson's dialect; raise :class:`JsonError` when it is not JSON at all.

    Accepts standard JSON, unquoted numeric keys (returned as ``str`` keys), JSON objects as keys
    (returned as :class:`ObjectKey`), leading and trailing whitespace (cpp appends a newline).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonError(f"JSON body is not UTF-8: {e}") from e
    else:
        text = data
    try:
        return json.loads(text)
    except JSONDecodeError:
        pass
    except RecursionError as e:
        raise JsonError("JSON nested too deeply") from e
    try:
        return _LenientParser(text).parse()
    except RecursionError as e:
        raise JsonError("JSON nested too deeply") from e


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_BAREWORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


class _LenientParser:
    """Recursive-descent parser for the fastjson dialect (any JSON value may be an object key)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> JsonError:
        return JsonError(f"{what} at offset {self.pos}")

    def skip_ws(self) -> None:
        m = _WS.match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()

    def parse(self) -> Any:
        self.skip_ws()
        value = self.value()
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.fail("extra data after JSON value")
        return value

    def value(self) -> Any:
        text = self.text
        if self.pos >= len(text):
            raise self.fail("unexpected end of JSON")
        c = text[self.pos]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.array()
        if c == '"':
            try:
                s, self.pos = _scanstring(text, self.pos + 1, True)
            except JSONDecodeError as e:
                raise JsonError(str(e)) from e
            return s
        if c == "'":
            return self.single_quoted()
        m = _NUMBER.match(text, self.pos)
        if m is not None:
            self.pos = m.end()
            if m.group(1) or m.group(2):
                return float(m.group(0))
            return int(m.group(0))
        m = _BAREWORD.match(text, self.pos)
        if m is not None:
            word = m.group(0)
            self.pos = m.end()
            if word == "true":
                return True
            if word == "false":
                return False
            if word == "null":
                return None
            return word
        raise self.fail(f"unexpected character {c!r}")

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise self.fail("unterminated string")
        s = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return s

    def key(self) -> Any:
        key = self.value()
        if isinstance(key, dict):
            return ObjectKey(tuple(key.items()))
        if isinstance(key, list):
            raise self.fail("array as object key")
        if isinstance(key, bool) or key is None:
            return json.dumps(key)
        if isinstance(key, (int, float)):
            return str(key)
        return key

    def obj(self) -> dict[Any, Any]:
        self.pos += 1
        result: dict[Any, Any] = {}
        self.skip_ws()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return result
        while True:
            self.skip_ws()
            k = self.key()
            self.skip_ws()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':'")
            self.pos += 1
            self.skip_ws()
            result[k] = self.value()
            self.skip_ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                self.skip_ws()
                if self.text.startswith("}", self.pos):  # fastjson tolerates a trailing comma
                    self.pos += 1
                    return result
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return result
            raise self.fail("expected ',' or '}'")

    def array(self) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        self.skip_ws()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return result
        while True:
            self.skip_ws()
            result.append(self.value())
            self.skip_ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                self.skip_ws()
                if self.text.startswith("]", self.pos):
                    self.pos += 1
                    return result
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return result
            raise self.fail("expected ',' or ']'")


# ---------------------------------------------------------------------------------------------
# Writing


def loads_object(data: bytes | bytearray | memoryview | str, what: str) -> dict[Any, Any]:
    """:func:`loads` for a body or file that must hold one JSON object.

    Raises :class:`JsonError` when it is not JSON and ``ValueError("<what> is not a JSON
    object")`` when it is JSON of another kind.
    """
    obj = loads(data)
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    return obj


def dumps(obj: Any, *, standard: bool = False) -> bytes:
    """Compact JSON the way fastjson writes it, as UTF-8 bytes.

    ``int`` map keys are written unquoted unless ``standard`` is true. With ``standard`` every key
    is quoted and non-ASCII text is escaped (fastjson's ``BrowserCompatible`` mode, which the Java
    NameServer uses for route data sent to clients ≥ V4_9_4).
    """
    parts: list[str] = []
    _write(obj, parts, standard)
    return "".join(parts).encode("utf-8")


def _scalar(obj: Any, standard: bool) -> str | None:
    if isinstance(obj, str):
        return _encode_str_ascii(obj) if standard else _encode_str(obj)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            return "null"  # fastjson writes NaN and infinities as null
        return float.__repr__(obj)
    return None


def _key(key: Any, standard: bool) -> str:
    if isinstance(key, str):
        return _encode_str_ascii(key) if standard else _encode_str(key)
    if isinstance(key, ObjectKey):
        parts: list[str] = []
        _write(key.as_dict(), parts, standard)
        return "".join(parts)
    if isinstance(key, bool):
        text = "true" if key else "false"
    elif isinstance(key, int):
        text = int.__repr__(key)
    else:
        raise TypeError(f"unsupported JSON key type {type(key).__name__}")
    return '"' + text + '"' if standard else text


def _write(obj: Any, out: list[str], standard: bool) -> None:
    s = _scalar(obj, standard)
    if s is not None:
        out.append(s)
        return
    if isinstance(obj, Mapping):
        out.append("{")
        first = True
        for k, v in obj.items():
            if not first:
                out.append(",")
            first = False
            out.append(_key(k, standard))
            out.append(":")
            _write(v, out, standard)
        out.append("}")
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        out.append("[")
        first = True
        for v in obj:
            if not first:
                out.append(",")
            first = False
            _write(v, out, standard)
        out.append("]")
        return
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def dumps_pretty(obj: Any) -> bytes:
    """JSON in fastjson's ``PrettyFormat``, as RocketMQ writes ``config/*.json``.

    Tab indentation; a newline and indent before every string key and list item; maps with
    non-string keys keep their entries on one line (``{0:3,1:4\\n\\t\\t}``), exactly as 4.9.7 writes
    ``consumerOffset.json``; empty maps and lists are ``{}`` and ``[]``; no trailing newline.
    """
    parts: list[str] = []
    _write_pretty(obj, parts, 0)
    return "".join(parts).encode("utf-8")


def _write_pretty(obj: Any, out: list[str], indent: int) -> None:
    s = _scalar(obj, False)
    if s is not None:
        out.append(s)
        return
    if isinstance(obj, Mapping):
        out.append("{")
        if not obj:
            out.append("}")
            return
        inner = "\n" + "\t" * (indent + 1)
        first = True
        for k, v in obj.items():
            if not first:
                out.append(",")
            first = False
            if isinstance(k, str):
                out.append(inner)
            out.append(_key(k, False))
            out.append(":")
            _write_pretty(v, out, indent + 1)
        out.append("\n" + "\t" * indent + "}")
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        items: Iterable[Any] = obj
        out.append("[")
        if not obj:
            out.append("]")
            return
        inner = "\n" + "\t" * (indent + 1)
        first = True
        for v in items:
            if not first:
                out.append(",")
            first = False
            out.append(inner)
            _write_pretty(v, out, indent + 1)
        out.append("\n" + "\t" * indent + "]")
        return
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
