"""RocketMQ-style ``key=value`` configuration: parsing and loading into frozen attrs classes.

A config class is an ``attrs`` class whose fields carry the RocketMQ key name in their metadata::

    @attrs.frozen
    class NamesrvConfig:
        listen_port: int = attrs.field(default=9876, metadata={"key": "listenPort"})

``load_config(NamesrvConfig, "etc/namesrv.conf", {"listenPort": "9877"})`` reads the file with
java.util.Properties syntax, applies the overrides (command line beats file beats defaults),
converts each value to the field's type and returns the instance. Unknown keys are logged by
name; a value that does not convert raises ``twisted.python.usage.UsageError`` naming the key.

Supported field types: ``str``, ``int``, ``float``, ``bool`` (``true``/``false``, any case) and
their ``| None`` forms. A field may carry ``metadata={"key": ..., "parse": fn}`` for any other
conversion (``fn(text)`` raises ``ValueError`` or ``KeyError`` on a bad value) and
``"check": fn`` to validate the converted value (raises ``ValueError`` with the reason).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
from twisted.logger import Logger
from twisted.python.usage import UsageError

__all__ = [
    "parse_properties",
    "read_properties_file",
    "format_properties",
    "load_config",
    "apply_properties",
    "config_to_properties",
    "config_keys",
]

_log = Logger(namespace="rmq.common.config")

C = TypeVar("C")

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_WHITESPACE = " \t\f"


def _logical_lines(text: str) -> list[str]:
    """Join continuation lines (odd number of trailing backslashes) as java.util.Properties does."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    result: list[str] = []
    current: str | None = None
    for raw in lines:
        line = raw.lstrip(_WHITESPACE) if current is not None else raw
        if current is None:
            stripped = line.lstrip(_WHITESPACE)
            if not stripped or stripped[0] in "#!":
                continue
            line = stripped
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            current = (current or "") + line[:-1]
            continue
        result.append((current or "") + line)
        current = None
    if current is not None:
        result.append(current)
    return result


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 == len(s):
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == "u" and i + 6 <= len(s):
            try:
                out.append(chr(int(s[i + 2 : i + 6], 16)))
                i += 6
                continue
            except ValueError:
                pass
        out.append(_ESCAPES.get(n, n))
        i += 2
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Parse java.util.Properties text (``key=value``, ``key: value``, ``key value``, comments).

    Blank lines and lines starting with ``#`` or ``!`` are skipped; a trailing backslash continues
    the line; ``\\t``, ``\\n``, ``\\uXXXX`` and other backslash escapes are decoded. Later keys win.
    """
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        i = 0
        key_end = len(line)
        while i < len(line):
            c = line[i]
            if c == "\\":
                i += 2
                continue
            if c in "=:" or c in _WHITESPACE:
                key_end = i
                break
            i += 1
        key = line[:key_end]
        j = key_end
        while j < len(line) and line[j] in _WHITESPACE:
            j += 1
        if j < len(line) and line[j] in "=:":
            j += 1
            while j < len(line) and line[j] in _WHITESPACE:
                j += 1
        result[_unescape(key)] = _unescape(line[j:])
    return result


def format_properties(props: Mapping[str, str]) -> str:
    """``key=value`` lines, each ending in a newline (as Java's MixAll.properties2String)."""
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ValueError("expected true or false")


def _base_type(tp: Any) -> Any:
    """``int | None`` → ``int``; a plain type stays as is."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _parser_for(field: attrs.Attribute[Any]) -> Callable[[str], Any]:
    custom = field.metadata.get("parse")
    if custom is not None:
        return typing.cast(Callable[[str], Any], custom)
    tp = _base_type(field.type)
    if tp is bool:
        return _parse_bool
    if tp is int:
        return lambda text: int(text.strip())
    if tp is float:
        return lambda text: float(text.strip())
    if tp is str:
        return lambda text: text
    raise TypeError(f"config field {field.name} has unsupported type {field.type!r}")


def _key_fields(cls: type[Any]) -> dict[str, attrs.Attribute[Any]]:
    attrs.resolve_types(cls)
    return {f.metadata["key"]: f for f in attrs.fields(cls) if "key" in f.metadata}


def config_keys(cls: type[Any]) -> list[str]:
    """The RocketMQ key names a config class understands, in field order."""
    return list(_key_fields(cls))


def _convert(
    cls: type[Any], props: Mapping[str, str], source: str
) -> tuple[dict[str, Any], list[str]]:
    fields = _key_fields(cls)
    kwargs: dict[str, Any] = {}
    unknown: list[str] = []
    for key, text in props.items():
        field = fields.get(key)
        if field is None:
            unknown.append(key)
            continue
        try:
            value = _parser_for(field)(text)
            check = field.metadata.get("check")
            if check is not None:
                check(value)
        except (ValueError, KeyError) as e:  # KeyError: a lookup-table parser
            raise UsageError(f"bad value {text!r} for config key {key} ({source}): {e}") from e
        kwargs[field.name] = value
    return kwargs, unknown


def read_properties_file(path: str) -> dict[str, str]:
    """The ``key=value`` pairs of the UTF-8 Properties file at ``path``.

    Raises ``UsageError`` naming the file when it cannot be read or is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return parse_properties(f.read())
    except OSError as e:
        raise UsageError(f"cannot read config file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise UsageError(f"config file {path} is not UTF-8 text: {e}") from e


def load_config(
    cls: type[C], path: str | None = None, overrides: Mapping[str, str] | None = None
) -> C:
    """Build a config object from defaults, then the file at ``path``, then ``overrides``.

    Raises ``UsageError`` naming the key for a bad value, and when the file cannot be read.
    """
    props = read_properties_file(path) if path is not None else {}
    source = path or "defaults"
    if overrides:
        props.update(overrides)
        source = f"{source} + overrides"
    kwargs, unknown = _convert(cls, props, source)
    for key in unknown:
        _log.warn("Unknown config key {key} in {source} ignored", key=key, source=source)
    try:
        return cls(**kwargs)
    except ValueError as e:  # an attrs validator refused a combination of values
        raise UsageError(f"bad configuration ({source}): {e}") from e


def apply_properties(config: C, props: Mapping[str, str]) -> tuple[C, list[str]]:
    """A copy of ``config`` with ``props`` applied, and the list of keys it did not know.

    Raises ``UsageError`` naming the key for a value that does not convert.
    """
    kwargs, unknown = _convert(type(config), props, "update")
    return attrs.evolve(config, **kwargs), unknown  # type: ignore[misc]


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def config_to_properties(config: Any) -> dict[str, str]:
    """Every keyed field of ``config`` as ``{rocketmqKey: text}`` (booleans ``true``/``false``)."""
    fields = _key_fields(type(config))
    return {key: _to_text(getattr(config, f.name)) for key, f in fields.items()}
