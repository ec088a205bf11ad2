"""Sans-IO codec of RocketMQ remoting frames: framing plus both header serializations.

Pure functions, no Twisted (protocol §1.2, §1.5, §1.6; per Java's RemotingCommand and
RocketMQSerializable):

- ``encode(cmd)`` returns the whole frame, 4-byte total-length word included.
- ``decode(frame)`` takes a frame WITHOUT that length word (what the framer hands over).

Lenient reader, strict writer. JSON headers written like a Java 4.9.x peer (fastjson: keys in
alphabetical order, no whitespace, ``"serializeTypeCurrentRPC":"JSON"``, string ext values) so a
Java frame decodes and re-encodes byte-for-byte. Read leniently: any key order, unknown keys,
trailing whitespace (cpp's newline), ``remark`` ``""`` or absent (both become ``None``; an empty
remark is never written), typed ``extFields`` values (numbers and booleans become their text,
``null`` drops the key), ``language`` as a name or an ordinal, numeric fields as decimal text.
ROCKETMQ binary headers keep the decoded ext entry order, so they re-encode byte-for-byte too.

Errors: ``FrameError`` for inconsistent lengths, ``HeaderError`` (``UndecodableHeaderError``,
carrying ``opaque`` and ``flag`` when they could be read) for a header that cannot be decoded or
a command that cannot be encoded.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

from rmq.common.errors import FrameError, HeaderError
from rmq.remoting.codes import LanguageCode, ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand, ext_value

#: Maximum header length: the low 24 bits of the header-length word.
MAX_HEADER_LENGTH = 0xFFFFFF

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

_FRAME_PREFIX = struct.Struct(">iI")  # total length (bytes after this word), type<<24 | hdrLen
_HEADER_WORD = struct.Struct(">I")
# ROCKETMQ fixed part: code int16, language byte, version int16, opaque int32, flag int32,
# remark length int32.
_BIN_FIXED = struct.Struct(">hBhiii")
_INT32 = struct.Struct(">i")
_INT16 = struct.Struct(">h")

_LANGUAGE_BY_NAME = {m.name: m for m in LanguageCode}
_LANGUAGE_NAME = {int(m): '"' + m.name + '"' for m in LanguageCode}

# Characters fastjson escapes in a double-quoted string (IOUtils.specicalFlags_doubleQuotes plus
# the U+007F..U+009F and U+2028/U+2029 cases of SerializeWriter), plus lone surrogates, which we
# escape rather than write invalid UTF-8.
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_NEEDS_ESCAPE_REST = re.compile("[\x00\x03-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_OPAQUE_IN_TEXT = re.compile(rb'"opaque"\s*:\s*"?(-?\d{1,10})')

_json_decoder = json.JSONDecoder()
_value_types = frozenset
_ONLY_STR = frozenset((str,))
_scan_once = _json_decoder.scan_once  # type: ignore[attr-defined]


class UndecodableHeaderError(HeaderError):
    """A header that could not be decoded.

    ``opaque`` and ``flag`` are set when they could be read before the failure, so the protocol
    can still answer a request with an error response (or fail the matching pending request).
    """

    def __init__(
        self,
        remark: str,
        opaque: int | None = None,
        flag: int | None = None,
        serialize_type: int = SerializeType.JSON,
    ) -> None:
        super().__init__(remark, ResponseCode.SYSTEM_ERROR, opaque)
        self.flag = flag
        self.serialize_type = serialize_type


# --------------------------------------------------------------------------------------------
# decode


def decode(frame: bytes | bytearray | memoryview) -> RemotingCommand:
    """Decode one frame given WITHOUT its 4-byte total-length word.

    Raises FrameError when the lengths are inconsistent, UndecodableHeaderError (a HeaderError)
    when the header cannot be decoded.
    """
    n = len(frame)
    if n < 4:
        raise FrameError(f"frame of {n} bytes is shorter than its 4-byte header-length word")
    (word,) = _HEADER_WORD.unpack_from(frame, 0)
    header_length = word & 0xFFFFFF
    serialize_type = word >> 24
    end = 4 + header_length
    if end > n:
        raise FrameError(
            f"header length {header_length} exceeds the {n - 4} bytes left in the frame"
        )
    header = bytes(frame[4:end])
    body = bytes(frame[end:])
    if serialize_type == SerializeType.JSON:
        cmd = _decode_json_header(header)
    elif serialize_type == SerializeType.ROCKETMQ:
        cmd = _decode_rocketmq_header(header)
    else:
        raise UndecodableHeaderError(f"unknown header serialize type {serialize_type}")
    cmd.body = body
    return cmd


def _int32_field(obj: dict[str, Any], key: str, default: int = 0) -> int:
    value = obj.get(key, default)
    if value is None:
        return default
    if type(value) is not int:
        if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
            value = int(value)
        else:
            raise ValueError(f"header field {key} is not an integer: {value!r}")
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"header field {key} is out of the int32 range: {value}")
    return value


def _language(value: Any) -> int:
    if value is None:
        return LanguageCode.JAVA
    if isinstance(value, str):
        return _LANGUAGE_BY_NAME.get(value, LanguageCode.OTHER)
    if type(value) is int and 0 <= value <= 255:
        # fastjson maps an integer to the enum ordinal, which equals the code here.
        return value
    raise ValueError(f"header field language is neither a name nor a code: {value!r}")


def _ext_text(value: Any) -> str:
    """A typed JSON ext value (ali-ons, cpp) as the text a Java peer would have sent."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return ext_value(value)


def _decode_json_header(header: bytes) -> RemotingCommand:
    try:
        text = header.decode("utf-8")
        try:
            # The C scanner without JSONDecoder.decode's two whitespace regex passes.
            obj, end = _scan_once(text, 0)
        except StopIteration:
            obj = end = None
        if end is None or (end != len(text) and not text[end:].isspace()):
            obj = _json_decoder.decode(text)  # leading whitespace, or raises with a reason
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError
        match = _OPAQUE_IN_TEXT.search(header)
        seen = int(match.group(1)) if match else None
        if seen is not None and not _INT32_MIN <= seen <= _INT32_MAX:
            seen = None
        raise UndecodableHeaderError(f"undecodable JSON header: {e}", seen) from e
    if type(obj) is not dict:
        raise UndecodableHeaderError("JSON header is not an object")
    get = obj.get
    opaque: int | None = None
    flag: int | None = None
    try:
        # Fast path: every field an in-range int, as all known peers send them.
        opaque = get("opaque", 0)
        if type(opaque) is not int or not _INT32_MIN <= opaque <= _INT32_MAX:
            opaque = None
            opaque = _int32_field(obj, "opaque")
        flag = get("flag", 0)
        if type(flag) is not int or not _INT32_MIN <= flag <= _INT32_MAX:
            flag = None
            flag = _int32_field(obj, "flag")
        code = get("code", 0)
        if type(code) is not int or not _INT32_MIN <= code <= _INT32_MAX:
            code = _int32_field(obj, "code")
        version = get("version", 0)
        if type(version) is not int or not _INT32_MIN <= version <= _INT32_MAX:
            version = _int32_field(obj, "version")
        language_value = get("language")
        language: int | None = (
            _LANGUAGE_BY_NAME.get(language_value) if type(language_value) is str else None
        )
        if language is None:
            language = _language(language_value)
        remark = get("remark")
        if remark is not None and type(remark) is not str:
            remark = _ext_text(remark)
        raw_ext = get("extFields")
        if raw_ext is None:
            ext: dict[str, str] = {}
        elif type(raw_ext) is dict:
            ext = raw_ext
            # Typed values (cpp sends queueId, flag, ... as JSON numbers): convert only those,
            # in place, so the key order stays; null drops the key.
            if _value_types(map(type, raw_ext.values())) != _ONLY_STR:
                for k, v in list(raw_ext.items()):
                    if type(v) is str:
                        continue
                    if type(v) is int:
                        raw_ext[k] = str(v)
                    elif v is None:
                        del raw_ext[k]
                    else:
                        raw_ext[k] = _ext_text(v)
        else:
            raise ValueError(f"extFields is not an object: {raw_ext!r}")
    except ValueError as e:
        raise UndecodableHeaderError(str(e), opaque, flag) from e
    return RemotingCommand(
        code,
        opaque,
        flag,
        remark or None,
        ext,
        b"",
        language,
        version,
        SerializeType.JSON,
        raw_ext is not None,
    )


def _decode_rocketmq_header(header: bytes) -> RemotingCommand:
    n = len(header)
    st = SerializeType.ROCKETMQ
    if n < 21:
        opaque = _INT32.unpack_from(header, 5)[0] if n >= 9 else None
        flag = _INT32.unpack_from(header, 9)[0] if n >= 13 else None
        raise UndecodableHeaderError(
            f"ROCKETMQ header of {n} bytes is shorter than 21", opaque, flag, st
        )
    code, language, version, opaque, flag, remark_length = _BIN_FIXED.unpack_from(header, 0)
    try:
        pos = 17
        if remark_length < 0 or pos + remark_length + 4 > n:
            raise ValueError(f"remark length {remark_length} overruns the header")
        remark = header[pos : pos + remark_length].decode("utf-8") if remark_length else None
        pos += remark_length
        (ext_length,) = _INT32.unpack_from(header, pos)
        pos += 4
        end = pos + ext_length
        if ext_length < 0 or end > n:
            raise ValueError(f"extFields length {ext_length} overruns the header")
        ext: dict[str, str] = {}
        # Pure-ASCII headers (the usual case) are decoded once and sliced by byte offsets.
        text = header.decode("ascii") if header.isascii() else None
        unpack16 = _INT16.unpack_from
        unpack32 = _INT32.unpack_from
        while pos < end:
            if pos + 2 > end:
                raise ValueError("truncated extFields key length")
            (key_length,) = unpack16(header, pos)
            pos += 2
            key_end = pos + key_length
            if key_length < 0 or key_end + 4 > end:
                raise ValueError(f"extFields key length {key_length} overruns the area")
            (value_length,) = unpack32(header, key_end)
            value_start = key_end + 4
            value_end = value_start + value_length
            if value_length < 0 or value_end > end:
                raise ValueError(f"extFields value length {value_length} overruns the area")
            if text is not None:
                ext[text[pos:key_end]] = text[value_start:value_end]
            else:
                ext[header[pos:key_end].decode("utf-8")] = header[value_start:value_end].decode(
                    "utf-8"
                )
            pos = value_end
    except ValueError as e:  # includes UnicodeDecodeError
        raise UndecodableHeaderError(f"undecodable ROCKETMQ header: {e}", opaque, flag, st) from e
    return RemotingCommand(code, opaque, flag, remark, ext, b"", language, version, st, True)


# --------------------------------------------------------------------------------------------
# encode


def _escape_table() -> dict[int, str]:
    table = {i: f"\\u{i:04X}" for i in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
    table.update({i: f"\\u{i:04X}" for i in range(0xD800, 0xE000)})
    for ch, escaped in (("\b", "b"), ("\t", "t"), ("\n", "n"), ("\f", "f"), ("\r", "r")):
        table[ord(ch)] = "\\" + escaped
    table[ord('"')] = '\\"'
    table[ord("\\")] = "\\\\"
    return table


_ESCAPES = _escape_table()


def _escape_rest(match: re.Match[str]) -> str:
    return _ESCAPES[ord(match.group())]


def json_string(s: str) -> str:
    """``s`` as a fastjson double-quoted string literal (UTF-8 kept, control chars escaped)."""
    if _NEEDS_ESCAPE.search(s) is None:
        return '"' + s + '"'
    return '"' + _escape_body(s) + '"'


def _str(value: object) -> str:
    return value if type(value) is str else ext_value(value)


def _escape_body(s: str) -> str:
    """``s`` with fastjson's escapes applied (no surrounding quotes)."""
    # The common escapes by C-speed replaces: backslash first, then the quote and the 0x01/0x02
    # separators of RocketMQ property strings; anything rarer goes through one regex pass.
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    s = s.replace("\x01", "\\u0001").replace("\x02", "\\u0002")
    if _NEEDS_ESCAPE_REST.search(s) is not None:
        s = _NEEDS_ESCAPE_REST.sub(_escape_rest, s)
    return s


# Private-use characters that JSON escaping leaves alone: they stand for '":"' and '","' while
# all keys and values are escaped in one pass (only when no key or value contains them).
_KEY_END = "\ue000"
_ITEM_END = "\ue001"


_KEY_VALUE = '":"'.join


def _ext_json(ext: dict[str, str]) -> str:
    """The ``extFields`` object text, escaping all keys and values in one pass."""
    if not ext:
        return "{}"
    try:
        # Fast path, C calls only: printable ASCII without backslashes needs no escaping, and
        # the quote count shows that no key or value holds a quote.
        body = '","'.join(map(_KEY_VALUE, ext.items()))
    except TypeError:  # a non-string value
        pass
    else:
        if (
            body.isascii()
            and body.isprintable()
            and "\\" not in body
            and body.count('"') == 4 * len(ext) - 2
        ):
            return '{"' + body + '"}'
    try:
        raw = _ITEM_END.join([k + _KEY_END + v for k, v in ext.items()])
    except TypeError:  # a non-string value
        raw = _ITEM_END.join([k + _KEY_END + _str(v) for k, v in ext.items()])
    if raw.count(_KEY_END) == len(ext) and raw.count(_ITEM_END) == len(ext) - 1:
        if _NEEDS_ESCAPE.search(raw) is not None:
            raw = _escape_body(raw)
        return '{"' + raw.replace(_KEY_END, '":"').replace(_ITEM_END, '","') + '"}'
    # A key or value contains a placeholder character: escape each string on its own.
    parts = [json_string(k) + ":" + json_string(_str(v)) for k, v in ext.items()]
    return "{" + ",".join(parts) + "}"


def encode_json_header(cmd: RemotingCommand) -> bytes:
    """The JSON header text as a Java 4.9.x peer writes it (sorted keys, string ext values)."""
    ext = cmd.ext_fields
    ext_part = ',"extFields":' + _ext_json(ext) if ext or cmd.ext_fields_present else ""
    language = cmd.language
    remark = cmd.remark
    # An empty remark is omitted like a null one: cpp and Java differ on "" (protocol §14.7).
    remark_part = ',"remark":' + json_string(remark) if remark else ""
    code, flag, opaque, version = cmd.code, cmd.flag, cmd.opaque, cmd.version
    # int() only for enum members and other int-likes (plain ints format as themselves).
    text = (
        f'{{"code":{code if type(code) is int else int(code)}{ext_part},'
        f'"flag":{flag if type(flag) is int else int(flag)},'
        f'"language":{_LANGUAGE_NAME.get(language) or int(language)},'
        f'"opaque":{opaque if type(opaque) is int else int(opaque)}{remark_part},'
        f'"serializeTypeCurrentRPC":"JSON",'
        f'"version":{version if type(version) is int else int(version)}}}'
    )
    return text.encode("utf-8")


def encode_rocketmq_header(cmd: RemotingCommand) -> bytes:
    """The ROCKETMQ binary header (per RocketMQSerializable.rocketMQProtocolEncode)."""
    remark = cmd.remark.encode("utf-8") if cmd.remark else b""
    entries = []
    for key, value in cmd.ext_fields.items():
        k = key.encode("utf-8")
        v = _str(value).encode("utf-8")
        entries.append(_INT16.pack(len(k)))
        entries.append(k)
        entries.append(_INT32.pack(len(v)))
        entries.append(v)
    ext = b"".join(entries)
    return b"".join(
        (
            _BIN_FIXED.pack(cmd.code, cmd.language, cmd.version, cmd.opaque, cmd.flag, len(remark)),
            remark,
            _INT32.pack(len(ext)),
            ext,
        )
    )


def encode_head(cmd: RemotingCommand) -> bytes:
    """The length words and header of ``cmd``'s frame; ``cmd.body`` follows them on the wire.

    Lets a transport write a large body (a pull answer) without copying it into the frame.
    The header is written in ``cmd.serialize_type``. Raises HeaderError when a value cannot be
    represented (an int out of its field's range, unencodable text, an oversized header).
    """
    try:
        if cmd.serialize_type == SerializeType.JSON:
            header = encode_json_header(cmd)
        elif cmd.serialize_type == SerializeType.ROCKETMQ:
            header = encode_rocketmq_header(cmd)
        else:
            raise ValueError(f"unknown serialize type {cmd.serialize_type}")
    except (struct.error, ValueError, OverflowError) as e:  # UnicodeEncodeError is a ValueError
        raise HeaderError(
            f"cannot encode command: {e}", ResponseCode.SYSTEM_ERROR, cmd.opaque
        ) from e
    header_length = len(header)
    if header_length > MAX_HEADER_LENGTH:
        raise HeaderError(
            f"header of {header_length} bytes exceeds {MAX_HEADER_LENGTH}",
            ResponseCode.SYSTEM_ERROR,
            cmd.opaque,
        )
    total = 4 + header_length + len(cmd.body)
    if total > _INT32_MAX:
        raise HeaderError(
            f"frame of {total} bytes is too long", ResponseCode.SYSTEM_ERROR, cmd.opaque
        )
    return _FRAME_PREFIX.pack(total, (int(cmd.serialize_type) << 24) | header_length) + header


def encode(cmd: RemotingCommand) -> bytes:
    """The whole frame of ``cmd``, 4-byte total-length word included (see ``encode_head``)."""
    head = encode_head(cmd)
    body = cmd.body
    return head + body if body else head
