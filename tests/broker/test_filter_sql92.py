"""The SQL92 selector: grammar, Java comparison rules, three-valued logic (rmq.broker.selector)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.selector import (
    EvaluationError,
    SelectorParseError,
    compile_selector,
)

T, F, N = True, False, None


def ev(expression: str, **props: str) -> object:
    """Evaluate ``expression`` against ``props``; 'ERR' for an evaluation error."""
    try:
        return compile_selector(expression).evaluate(props)
    except EvaluationError:
        return "ERR"


class ComparisonTests(SynchronousTestCase):
    def test_numeric_comparisons_parse_the_property_as_the_literal_type(self) -> None:
        """A property compared with an Integer literal is parsed with Integer.valueOf."""
        self.assertIs(ev("a > 5", a="6"), T)
        self.assertIs(ev("a > 5", a="5"), F)
        self.assertIs(ev("a >= 5", a="5"), T)
        self.assertIs(ev("a < 5", a="-7"), T)
        self.assertIs(ev("a <= 5", a="+5"), T)
        self.assertEqual(ev("a > 5", a="5.5"), "ERR")
        self.assertEqual(ev("a > 5", a=" 6"), "ERR")
        self.assertEqual(ev("a > 5", a="3000000000"), "ERR")
        self.assertEqual(ev("a > 5L", a="3000000000"), "ERR")  # 5L fits an int: Integer
        self.assertIs(ev("a > 3000000000", a="3000000001"), T)

    def test_double_literals(self) -> None:
        """Double literals accept decimals, exponents, NaN and Infinity on the property side."""
        self.assertIs(ev("a > 5.0", a="5.5"), T)
        self.assertIs(ev("a < 1E3", a="999.9"), T)
        self.assertIs(ev("a > .5", a="0.6"), T)
        self.assertIs(ev("a > 5.0", a="Infinity"), T)
        self.assertIs(ev("a > 5.0", a="NaN"), T)  # Double.compare puts NaN above everything
        self.assertIs(ev("a = 2.5", a="2.5d"), T)
        self.assertEqual(ev("a > 5.0", a="x"), "ERR")

    def test_string_ordering_compares_as_doubles(self) -> None:
        """``>`` between two string properties converts both to double."""
        self.assertIs(ev("a > b", a="10", b="9"), T)
        self.assertEqual(ev("a > b", a="x", b="9"), "ERR")

    def test_equality(self) -> None:
        """Strings compare exactly; numbers across types; booleans from strings."""
        self.assertIs(ev("a = 'x'", a="x"), T)
        self.assertIs(ev("a = 'x'", a="X"), F)
        self.assertIs(ev("a <> 'x'", a="y"), T)
        self.assertIs(ev("a = 5", a="5"), T)
        self.assertIs(ev("a = 5.0", a="5"), T)
        self.assertIs(ev("a = TRUE", a="true"), T)
        self.assertIs(ev("a = TRUE", a="yes"), F)
        self.assertEqual(ev("TRUE = a", a="true"), "ERR")  # Java casts Boolean to String
        self.assertIs(ev("'it''s' = a", a="it's"), T)
        self.assertIs(ev("5 = 5L"), T)
        self.assertIs(ev("1 = 1.0"), T)

    def test_between_and_in(self) -> None:
        """BETWEEN is inclusive; IN compares strings only."""
        self.assertIs(ev("a BETWEEN 1 AND 3", a="1"), T)
        self.assertIs(ev("a BETWEEN 1 AND 3", a="3"), T)
        self.assertIs(ev("a BETWEEN 1 AND 3", a="4"), F)
        self.assertIs(ev("a NOT BETWEEN 1 AND 3", a="4"), T)
        self.assertIs(ev("a NOT BETWEEN 1 AND 3", a="2"), F)
        self.assertIs(ev("a IN ('x', 'y')", a="y"), T)
        self.assertIs(ev("a IN ('x', 'y')", a="z"), F)
        self.assertIs(ev("a NOT IN ('x', 'y')", a="z"), T)
        self.assertIs(ev("a IN ('1', '2', '3', '4', '5', '6')", a="6"), T)

    def test_tags_are_a_property(self) -> None:
        """TAGS is filtered like any other property."""
        self.assertIs(ev("TAGS = 'TagA' AND n > 2", TAGS="TagA", n="3"), T)
        self.assertIs(ev("TAGS IN ('TagB')", TAGS="TagA"), F)


class NullSemanticsTests(SynchronousTestCase):
    def test_missing_property_is_unknown(self) -> None:
        """Comparisons with a missing property are NULL and do not match."""
        for expression in ("a > 5", "a = 'x'", "a BETWEEN 1 AND 2", "a IN ('x')", "a"):
            self.assertIsNone(ev(expression), expression)
            self.assertFalse(compile_selector(expression).matches({}), expression)
        self.assertIsNone(ev("a NOT IN ('x')"))
        self.assertIsNone(ev("NOT (a > 5)"))

    def test_is_null(self) -> None:
        """IS NULL / IS NOT NULL are never unknown."""
        self.assertIs(ev("a IS NULL"), T)
        self.assertIs(ev("a IS NULL", a="1"), F)
        self.assertIs(ev("a IS NOT NULL", a=""), T)
        self.assertIs(ev("a is not null"), F)

    def test_asymmetric_equality(self) -> None:
        """``a = b``: NULL when a is missing, FALSE when only b is (Java's doCreateEqual)."""
        self.assertIsNone(ev("a = b", b="1"))
        self.assertIs(ev("a = b", a="1"), F)
        self.assertIs(ev("a = b"), T)

    def test_truth_tables(self) -> None:
        """AND, OR and NOT follow SQL's three-valued truth tables."""
        atoms = {T: "x = 'y'", F: "x = 'z'", N: "missing = 'y'"}
        props = {"x": "y"}
        for left, lt in atoms.items():
            self.assertEqual(
                compile_selector(f"NOT ({lt})").evaluate(props), None if left is None else not left
            )
            for right, rt in atoms.items():
                if left is F or right is F:
                    want_and: object = F
                elif left is N or right is N:
                    want_and = N
                else:
                    want_and = T
                if left is T or right is T:
                    want_or: object = T
                elif left is N or right is N:
                    want_or = N
                else:
                    want_or = F
                self.assertIs(compile_selector(f"({lt}) AND ({rt})").evaluate(props), want_and)
                self.assertIs(compile_selector(f"({lt}) OR ({rt})").evaluate(props), want_or)

    def test_short_circuit_hides_errors(self) -> None:
        """A decided AND/OR does not evaluate its right side (so no error), like Java."""
        self.assertIs(ev("x = 'n' AND a > 5", x="y", a="bad"), F)
        self.assertIs(ev("x = 'y' OR a > 5", x="y", a="bad"), T)
        self.assertEqual(ev("x = 'y' AND a > 5", x="y", a="bad"), "ERR")
        self.assertFalse(compile_selector("x = 'y' AND a > 5").matches({"x": "y", "a": "bad"}))


class GrammarTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        """Keywords in any case, comments, unary signs, nesting and literals compile."""
        for expression in (
            "a > 5",
            "a between 1 and 2 or b is null",
            "NOT (a > 5)",
            "((a > 1) AND (b < 2)) OR c IN ('x')",
            "a > -5",
            "a > +5",
            "a > 5 -- comment\n",
            "/* c */ a > 5",
            "$x_1 = 'v'",
            "a",
            "TRUE",
            "a > 5 trailing words are ignored",
            "a BETWEEN -1 AND -5",
        ):
            compile_selector(expression)

    def test_refused(self) -> None:
        """Java's parse-time errors are SelectorParseError."""
        for expression in (
            "",
            "   ",
            "5",
            "'x'",
            "NOT a > 5",
            "a > 'x'",
            "a > TRUE",
            "(a > 1) > 2",
            "a = NULL",
            "NULL = a",
            "TRUE = 5",
            "a BETWEEN 3 AND 1",
            "a BETWEEN 'a' AND 'b'",
            "a IN (1, 2)",
            "'x' IN ('x')",
            "a > 0.0",
            "a > 99999999999999999999",
            "a ! 5",
            "a >",
            "(a > 5",
            "-a",
        ):
            with self.assertRaises(SelectorParseError, msg=expression):
                compile_selector(expression)

    def test_unary_minus(self) -> None:
        """``-`` negates numbers; a negated property is NULL."""
        self.assertIs(ev("a > -5", a="-4"), T)
        self.assertIs(ev("a = -2147483648", a="-2147483648"), T)
        self.assertIs(ev("a = -b", a="1", b="1"), F)
        self.assertIsNone(ev("-b = a", a="1", b="1"))

    def test_contains_is_not_an_operator_in_4_9_7(self) -> None:
        """``a CONTAINS 'x'`` parses as ``a`` (trailing tokens ignored) and never matches."""
        selector = compile_selector("a CONTAINS 'x'")
        self.assertFalse(selector.matches({"a": "xyz"}))

    def test_compiled_once(self) -> None:
        """The same text returns the same compiled selector (cache)."""
        self.assertIs(compile_selector("a > 5"), compile_selector("a > 5"))


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=60))
    def test_any_text_compiles_or_is_refused(self, text: str) -> None:
        """Arbitrary text (a client's expression) never raises anything but SelectorParseError."""
        try:
            selector = compile_selector(text)
        except SelectorParseError:
            return
        selector.matches({"a": "1", "TAGS": "x"})

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.integers(min_value=0, max_value=2**31 - 1),
    )
    def test_integer_comparisons_agree_with_python(self, value: int, literal: int) -> None:
        """``a <op> N`` on an integer property agrees with integer arithmetic."""
        props = {"a": str(value)}
        self.assertIs(compile_selector(f"a > {literal}").matches(props), value > literal)
        self.assertIs(compile_selector(f"a <= {literal}").matches(props), value <= literal)
        self.assertIs(compile_selector(f"a = {literal}").matches(props), value == literal)
        self.assertIs(compile_selector(f"a <> -{literal}").matches(props), value != -literal)

    def test_deep_nesting_is_refused_not_crashing(self) -> None:
        """Pathologically nested input is refused, or evaluates without escaping errors."""
        with self.assertRaises(SelectorParseError):
            compile_selector("(" * 5000 + "a > 1" + ")" * 5000)
        for depth in (100, 500, 900):
            try:
                selector = compile_selector("NOT " * depth + "(a > 1)")
            except SelectorParseError:
                continue
            self.assertIn(selector.matches({"a": "2"}), (True, False))
