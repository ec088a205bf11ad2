"""RocketMQ's SQL92 message selector: parser and evaluator (Java ``rocketmq-filter`` 4.9.7).

:func:`compile_selector` turns an expression such as ``a > 5 AND b IN ('x', 'y')`` into a
:class:`Selector` whose :meth:`Selector.matches` evaluates it against a message's properties
(``TAGS`` is one of them). The expression is parsed once into a tree of Python closures;
compiled selectors are cached by text, like Java's ``SelectorParser`` cache.

The grammar and the semantics are those of Java's ``SelectorParser.jj`` and the
``org.apache.rocketmq.filter.expression`` classes, quirks included:

* operators: ``=``, ``<>``, ``>``, ``>=``, ``<``, ``<=``, ``[NOT] BETWEEN x AND y``,
  ``[NOT] IN ('a', ...)`` (string lists only), ``IS [NOT] NULL``, ``AND``, ``OR``, ``NOT``,
  unary ``+``/``-``, parentheses; literals ``'it''s'``, ``5``/``5L`` (Integer or Long),
  ``5.0``/``.5``/``5E3`` (Double), ``TRUE``, ``FALSE``, ``NULL``; keywords are case-insensitive;
  ``--`` line and ``/* */`` block comments. 4.9.7 has no ``CONTAINS``/``STARTSWITH``/``ENDSWITH``.
* ``NOT`` binds tighter than comparisons: ``NOT a > 5`` is an error, write ``NOT (a > 5)``.
* Tokens after a complete expression are ignored (the Java parser has no end-of-input rule).
* Three-valued logic: a missing property makes a comparison NULL (unknown); ``AND``/``OR``/``NOT``
  follow SQL's truth tables; a message matches only when the result is TRUE.
* Property values are strings: compared with a number they are parsed as the number's Java type
  (``Integer.valueOf``: ``'5.5' > 5`` is an evaluation error, which does not match); ``>``/``<``
  between two strings compares them as doubles; ``'x' > 1`` written with constants is refused.
* ``a = b`` with ``a`` missing is NULL but with only ``b`` missing it is FALSE (Java's asymmetry).
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Callable, Mapping

import attrs

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
DOUBLE_MIN_VALUE = 5e-324  # Java Double.MIN_VALUE (the smallest positive double)

#: What an expression evaluates to: None (NULL), bool, str, int (Java Integer), JavaLong, float.
Value = object
Evaluator = Callable[[Mapping[str, str]], Value]


class SelectorParseError(ValueError):
    """The expression is not a valid selector (Java ``MQFilterException``)."""


class EvaluationError(Exception):
    """Evaluating the expression failed for this message (Java's RuntimeException): no match."""


class JavaLong(int):
    """An integer literal outside Java's ``int`` range: a ``Long`` (conversions differ)."""

    __slots__ = ()


# --- lexer (JavaCC token rules, longest match, keywords before ID) ----------------------------

_KEYWORDS = frozenset({"NOT", "AND", "OR", "BETWEEN", "IN", "TRUE", "FALSE", "NULL", "IS"})
_SKIP = re.compile(r"(?:[ \t\n\r\f]+|--[^\n\r]*(?:\r\n|\n|\r)|/\*[^*]*\*+(?:[^*/][^*]*\*+)*/)+")
_TOKEN = re.compile(
    r"""
    (?P<FLOAT>[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
  | (?P<DECIMAL>0|[1-9][0-9]*[lL]?)
  | (?P<STRING>'(?:''|[^'])*')
  | (?P<ID>[a-zA-Z_$][a-zA-Z0-9_$]*)
  | (?P<OP><>|>=|<=|[=<>(),+-])
    """,
    re.VERBOSE,
)


@attrs.define
class _Token:
    kind: str  # FLOAT, DECIMAL, STRING, ID, a keyword, an operator, or EOF
    text: str
    pos: int


class _Lexer:
    """Tokens read on demand, as JavaCC does (so text after the expression is never read)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.ahead: list[_Token] = []

    def _lex(self) -> _Token:
        text, pos = self.text, self.pos
        m = _SKIP.match(text, pos)
        if m:
            pos = m.end()
        if pos >= len(text):
            self.pos = pos
            return _Token("EOF", "", pos)
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SelectorParseError(
                f"Invalid MessageSelector. Lexical error at column {pos + 1}: {text[pos]!r}"
            )
        self.pos = m.end()
        kind = m.lastgroup or "OP"
        value = m.group()
        if kind == "ID" and value.upper() in _KEYWORDS:
            kind = value.upper()
        elif kind == "OP":
            kind = value
        return _Token(kind, value, pos)

    def peek(self, k: int = 0) -> _Token:
        while len(self.ahead) <= k:
            self.ahead.append(self._lex())
        return self.ahead[k]

    def next(self) -> _Token:
        token = self.peek()
        self.ahead.pop(0)
        return token


# --- Java comparison semantics -------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?[0-9]+")
_DOUBLE = re.compile(
    r"[+-]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?)"
)


def _parse_integer(text: str, low: int, high: int) -> int:
    """``Integer.valueOf`` / ``Long.valueOf``: strict digits with an optional sign."""
    if not _NUMBER.fullmatch(text):
        raise EvaluationError(f"For input string: {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise EvaluationError(f"For input string: {text!r} (out of range)")
    return value


def _parse_double(text: str) -> float:
    """``Double.valueOf``: trims ASCII control/space, accepts NaN, Infinity and a d/f suffix."""
    stripped = text.strip("".join(chr(c) for c in range(33)))
    if not _DOUBLE.fullmatch(stripped):
        raise EvaluationError(f"For input string: {text!r}")
    if stripped[-1] in "fFdD" and not stripped.endswith("Infinity"):
        stripped = stripped[:-1]
    return float(stripped.replace("Infinity", "inf"))


def _double_bits(x: float) -> int:
    if math.isnan(x):
        return 0x7FF8000000000000
    (bits,) = struct.unpack(">q", struct.pack(">d", x))
    return int(bits)


def _double_compare(a: float, b: float) -> int:
    """Java ``Double.compare``: -0.0 < 0.0, NaN above everything and equal to itself."""
    if a < b:
        return -1
    if a > b:
        return 1
    x, y = _double_bits(a), _double_bits(b)
    return 0 if x == y else (-1 if x < y else 1)


def _sign(a: int, b: int) -> int:
    return (a > b) - (a < b)


def _compare(lv: Value, rv: Value) -> int:
    """``ComparisonExpression.__compare`` with string conversion on (both values non-null)."""
    lt, rt = type(lv), type(rv)
    if lt is rt:
        if lt is float:
            return _double_compare(lv, rv)  # type: ignore[arg-type]
        if lt is str or lt is bool or lt is int or lt is JavaLong:
            return int((lv > rv) - (lv < rv))  # type: ignore[operator]
        return -1
    if lt is bool:
        if rt is str:  # Java casts the Boolean to String: ClassCastException
            raise EvaluationError("Boolean cannot be compared with a String")
        return -1
    if lt is int or lt is JavaLong:
        if rt is int or rt is JavaLong:
            return _sign(lv, rv)  # type: ignore[arg-type]
        if rt is float:
            return _double_compare(float(lv), rv)  # type: ignore[arg-type]
        if rt is str:
            if lt is int:
                return _sign(lv, _parse_integer(rv, INT_MIN, INT_MAX))  # type: ignore[arg-type]
            return _sign(lv, _parse_integer(rv, LONG_MIN, LONG_MAX))  # type: ignore[arg-type]
        return -1
    if lt is float:
        if rt is int or rt is JavaLong:
            return _double_compare(lv, float(rv))  # type: ignore[arg-type]
        if rt is str:
            return _double_compare(lv, _parse_double(rv))  # type: ignore[arg-type]
        return -1
    if lt is str:
        if rt is bool:
            as_bool = lv.lower() == "true"  # type: ignore[attr-defined]
            return int(as_bool > rv) - int(as_bool < rv)  # type: ignore[operator]
        if rt is int:
            return _sign(_parse_integer(lv, INT_MIN, INT_MAX), rv)  # type: ignore[arg-type]
        if rt is JavaLong:
            return _sign(_parse_integer(lv, LONG_MIN, LONG_MAX), rv)  # type: ignore[arg-type]
        if rt is float:
            return _double_compare(_parse_double(lv), rv)  # type: ignore[arg-type]
    return -1


# --- expression nodes (parse-time facts + the compiled evaluator) ----------------------------

CONSTANT, BOOL_CONSTANT, PROPERTY, BOOLEAN, VALUE = "const", "boolconst", "prop", "bool", "value"


@attrs.define
class _Node:
    kind: str
    ev: Evaluator
    value: Value = None  # constants
    name: str = ""  # properties
    text: str = ""

    @property
    def is_boolean(self) -> bool:
        return self.kind in (BOOL_CONSTANT, BOOLEAN)

    @property
    def is_constant(self) -> bool:
        return self.kind in (CONSTANT, BOOL_CONSTANT)


def _constant(value: Value, kind: str = CONSTANT) -> _Node:
    if value is None:
        text = "NULL"
    elif type(value) is bool:
        text = "TRUE" if value else "FALSE"
    elif type(value) is str:
        text = "'" + value.replace("'", "''") + "'"
    else:
        text = str(value)
    return _Node(kind, lambda _p: value, value=value, text=text)


def _as_boolean(node: _Node) -> _Node:
    """``SelectorParser.asBooleanExpression``: a property becomes a boolean cast."""
    if node.is_boolean:
        return node
    if node.kind == PROPERTY:
        get = node.ev

        def cast(p: Mapping[str, str]) -> Value:
            v = get(p)
            if v is None:
                return None
            return v if type(v) is bool else False

        return _Node(BOOLEAN, cast, text=node.text)
    raise SelectorParseError(
        f"Invalid MessageSelector. Expression will not result in a boolean value: {node.text}"
    )


def _check_less_than_operand(node: _Node) -> None:
    if node.is_constant:
        if type(node.value) in (int, JavaLong, float):
            return
        raise SelectorParseError(
            f"Invalid MessageSelector. Value '{node.text}' cannot be compared."
        )
    if node.is_boolean:
        raise SelectorParseError(
            f"Invalid MessageSelector. Value '{node.text}' cannot be compared."
        )


def _ordering(left: _Node, right: _Node, symbol: str, test: Callable[[int], bool]) -> _Node:
    _check_less_than_operand(left)
    _check_less_than_operand(right)
    lf, rf = left.ev, right.ev

    def ev(p: Mapping[str, str]) -> Value:
        lv = lf(p)
        if lv is None:
            return None
        rv = rf(p)
        if rv is None:
            return None
        if type(lv) is str and type(rv) is str:
            return test(_double_compare(_parse_double(lv), _parse_double(rv)))
        return test(_compare(lv, rv))

    # The common case ``prop > number`` without the generic dispatch.
    if left.kind == PROPERTY and right.kind == CONSTANT:
        name, const = left.name, right.value
        if type(const) is int:
            low, high = INT_MIN, INT_MAX
        elif type(const) is JavaLong:
            low, high = LONG_MIN, LONG_MAX
        else:
            low = high = 0
        if high:

            def ev_int(p: Mapping[str, str]) -> Value:
                lv = p.get(name)
                if lv is None:
                    return None
                return test(_sign(_parse_integer(lv, low, high), const))  # type: ignore[arg-type]

            return _Node(BOOLEAN, ev_int, text=f"{left.text} {symbol} {right.text}")
    return _Node(BOOLEAN, ev, text=f"{left.text} {symbol} {right.text}")


def _equal_raw(left: _Node, right: _Node) -> _Node:
    """``doCreateEqual`` (also IS NULL)."""
    lf, rf = left.ev, right.ev

    def ev(p: Mapping[str, str]) -> Value:
        lv = lf(p)
        rv = rf(p)
        if lv is None or rv is None:
            if lv is None and rv is None:
                return True
            return None if lv is None else False
        if type(lv) is type(rv) and type(lv) is not float:
            return lv == rv
        return _compare(lv, rv) == 0

    return _Node(BOOLEAN, ev, text=f"{left.text} = {right.text}")


def _equal(left: _Node, right: _Node) -> _Node:
    for node in (left, right):
        if node.is_constant and node.value is None:
            raise SelectorParseError(f"Invalid MessageSelector. '{node.text}' cannot be compared.")
    if (
        left.is_constant
        and right.is_constant
        and left.kind == BOOL_CONSTANT
        and right.kind != BOOL_CONSTANT
    ):
        raise SelectorParseError(
            f"Invalid MessageSelector. '{left.text}' cannot be compared with '{right.text}'"
        )
    return _equal_raw(left, right)


def _not(node: _Node) -> _Node:
    f = node.ev

    def ev(p: Mapping[str, str]) -> Value:
        v = f(p)
        if v is None:
            return None
        return not v

    return _Node(BOOLEAN, ev, text=f"NOT {node.text}")


def _and(left: _Node, right: _Node) -> _Node:
    lf, rf = left.ev, right.ev

    def ev(p: Mapping[str, str]) -> Value:
        lv = lf(p)
        if lv is False:
            return False
        rv = rf(p)
        if rv is False:
            return False
        if lv is None or rv is None:
            return None
        return True

    return _Node(BOOLEAN, ev, text=f"({left.text} AND {right.text})")


def _or(left: _Node, right: _Node) -> _Node:
    lf, rf = left.ev, right.ev

    def ev(p: Mapping[str, str]) -> Value:
        lv = lf(p)
        if lv is True:
            return True
        rv = rf(p)
        if rv is True:
            return True
        if lv is None or rv is None:
            return None
        return False

    return _Node(BOOLEAN, ev, text=f"({left.text} OR {right.text})")


def _negate(node: _Node) -> _Node:
    f = node.ev

    def neg(v: Value) -> Value:
        t = type(v)
        if t is int:
            return v if v == INT_MIN else -v  # type: ignore[operator]
        if t is JavaLong:
            return v if v == LONG_MIN else JavaLong(-v)  # type: ignore[operator]
        if t is float:
            return -v  # type: ignore[operator]
        return None

    if node.is_constant:  # Java keeps a UnaryExpression (not a constant) for the parse checks
        value = neg(node.value)
        return _Node(VALUE, lambda _p: value, text=f"-{node.text}")
    return _Node(VALUE, lambda p: neg(f(p)), text=f"-{node.text}")


def _in(left: _Node, values: list[str], negated: bool) -> _Node:
    if left.kind != PROPERTY:
        raise SelectorParseError(
            f"Invalid MessageSelector. Expected a property for In expression, got: {left.text}"
        )
    name = left.name
    members = frozenset(values)

    def ev(p: Mapping[str, str]) -> Value:
        v = p.get(name)
        if v is None:
            return None
        return (v in members) ^ negated

    op = "NOT IN" if negated else "IN"
    return _Node(BOOLEAN, ev, text=f"{name} {op} {sorted(members)}")


def _between(value: _Node, low: _Node, high: _Node) -> _Node:
    if low.is_constant and high.is_constant:
        lv, hv = low.value, high.value
        if lv is None or hv is None:
            raise SelectorParseError(
                "Invalid MessageSelector. Illegal values of between, values can not be null!"
            )
        try:
            order = _compare(hv, lv)
        except EvaluationError as e:
            raise SelectorParseError(f"Invalid MessageSelector. {e}") from e
        if order < 0:
            raise SelectorParseError(
                f"Invalid MessageSelector. Illegal values of between, left value({lv}) must "
                f"less than or equal to right value({hv})"
            )
    return _and(
        _ordering(value, low, ">=", lambda c: c >= 0),
        _ordering(value, high, "<=", lambda c: c <= 0),
    )


# --- parser (recursive descent over SelectorParser.jj's productions) --------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.lex = _Lexer(text)

    def _expect(self, kind: str) -> _Token:
        token = self.lex.next()
        if token.kind != kind:
            raise SelectorParseError(
                f"Invalid MessageSelector. Encountered {token.text or '<EOF>'!r} at column "
                f"{token.pos + 1}, expected {kind}"
            )
        return token

    def selector(self) -> _Node:
        return _as_boolean(self.or_expr())

    def or_expr(self) -> _Node:
        left = self.and_expr()
        while self.lex.peek().kind == "OR":
            self.lex.next()
            left = _or(_as_boolean(left), _as_boolean(self.and_expr()))
        return left

    def and_expr(self) -> _Node:
        left = self.equality_expr()
        while self.lex.peek().kind == "AND":
            self.lex.next()
            left = _and(_as_boolean(left), _as_boolean(self.equality_expr()))
        return left

    def equality_expr(self) -> _Node:
        left = self.comparison_expr()
        while True:
            kind = self.lex.peek().kind
            if kind == "=":
                self.lex.next()
                left = _equal(left, self.comparison_expr())
            elif kind == "<>":
                self.lex.next()
                left = _not(_equal(left, self.comparison_expr()))
            elif kind == "IS" and self.lex.peek(1).kind == "NULL":
                self.lex.next()
                self.lex.next()
                left = _equal_raw(left, _constant(None, BOOL_CONSTANT))
            elif kind == "IS":
                self.lex.next()
                self._expect("NOT")
                self._expect("NULL")
                left = _not(_equal_raw(left, _constant(None, BOOL_CONSTANT)))
            else:
                return left

    def comparison_expr(self) -> _Node:
        left = self.unary_expr()
        tests: dict[str, Callable[[int], bool]] = {
            ">": lambda c: c > 0,
            ">=": lambda c: c >= 0,
            "<": lambda c: c < 0,
            "<=": lambda c: c <= 0,
        }
        while True:
            kind = self.lex.peek().kind
            if kind in tests:
                self.lex.next()
                left = _ordering(left, self.unary_expr(), kind, tests[kind])
            elif kind == "BETWEEN":
                self.lex.next()
                low = self.unary_expr()
                self._expect("AND")
                left = _between(left, low, self.unary_expr())
            elif kind == "NOT" and self.lex.peek(1).kind == "BETWEEN":
                self.lex.next()
                self.lex.next()
                low = self.unary_expr()
                self._expect("AND")
                high = self.unary_expr()
                left = _or(
                    _ordering(left, low, "<", tests["<"]),
                    _ordering(left, high, ">", tests[">"]),
                )
            elif kind == "IN":
                self.lex.next()
                left = _in(left, self._string_list(), False)
            elif kind == "NOT" and self.lex.peek(1).kind == "IN":
                self.lex.next()
                self.lex.next()
                left = _in(left, self._string_list(), True)
            else:
                return left

    def _string_list(self) -> list[str]:
        self._expect("(")
        values = [self._string()]
        while self.lex.peek().kind == ",":
            self.lex.next()
            values.append(self._string())
        self._expect(")")
        return values

    def _string(self) -> str:
        return self._expect("STRING").text[1:-1].replace("''", "'")

    def unary_expr(self) -> _Node:
        kind = self.lex.peek().kind
        if kind == "+":
            self.lex.next()
            return self.unary_expr()
        if kind == "-":
            self.lex.next()
            return _negate(self.unary_expr())
        if kind == "NOT":
            self.lex.next()
            return _not(_as_boolean(self.unary_expr()))
        return self.primary_expr()

    def primary_expr(self) -> _Node:
        token = self.lex.next()
        kind = token.kind
        if kind == "STRING":
            return _constant(token.text[1:-1].replace("''", "'"))
        if kind == "DECIMAL":
            text = token.text.rstrip("lL")
            value = int(text)
            if value > LONG_MAX:
                raise SelectorParseError(f"Invalid MessageSelector. For input string: {text!r}")
            return _constant(value if value <= INT_MAX else JavaLong(value))
        if kind == "FLOAT":
            number = float(token.text)
            if number > 1.7976931348623157e308:
                raise SelectorParseError(
                    f"Invalid MessageSelector. {token.text} is greater than 1.7976931348623157E308"
                )
            if number < DOUBLE_MIN_VALUE:
                raise SelectorParseError(
                    f"Invalid MessageSelector. {token.text} is less than 4.9E-324"
                )
            return _constant(number)
        if kind == "TRUE":
            return _constant(True, BOOL_CONSTANT)
        if kind == "FALSE":
            return _constant(False, BOOL_CONSTANT)
        if kind == "NULL":
            return _constant(None, BOOL_CONSTANT)
        if kind == "ID":
            name = token.text
            return _Node(PROPERTY, lambda p: p.get(name), name=name, text=name)
        if kind == "(":
            inner = self.or_expr()
            self._expect(")")
            return inner
        raise SelectorParseError(
            f"Invalid MessageSelector. Encountered {token.text or '<EOF>'!r} at column "
            f"{token.pos + 1}"
        )


@attrs.frozen
class Selector:
    """A compiled SQL92 expression (Java ``BooleanExpression``)."""

    expression: str
    _evaluate: Evaluator = attrs.field(repr=False)

    def evaluate(self, properties: Mapping[str, str]) -> Value:
        """TRUE, FALSE or None (unknown); raises EvaluationError (Java's RuntimeException)."""
        try:
            return self._evaluate(properties)
        except RecursionError as e:  # an expression nested deeper than the stack allows
            raise EvaluationError("expression nested too deeply to evaluate") from e

    def matches(self, properties: Mapping[str, str]) -> bool:
        """True only when the expression is TRUE for these properties (errors do not match)."""
        try:
            return self._evaluate(properties) is True
        except (EvaluationError, RecursionError):
            return False


@functools.lru_cache(maxsize=1024)
def compile_selector(expression: str) -> Selector:
    """Parse ``expression`` once; SelectorParseError (Java: MQFilterException) when invalid."""
    if expression is None or not expression.strip():
        raise SelectorParseError("Invalid MessageSelector. Expression can't be empty")
    try:
        node = _Parser(expression).selector()
    except RecursionError as e:
        raise SelectorParseError("Invalid MessageSelector. Expression nested too deeply") from e
    return Selector(expression, node.ev)
