"""graphc.symbolic: polynomial sizes, exact arithmetic, guards for every decision."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphc.symbolic import MIN_SIZE, ShapeEnv, SymInt, exact_div, is_symbolic, known


def env_with(*hints):
    env = ShapeEnv()
    return env, [env.symbol(h) for h in hints]


def test_polynomial_arithmetic_is_exact_and_needs_no_guard():
    env, (a, b) = env_with(8, 3)
    assert str(4 * a + 4) == "4*s0 + 4"
    assert (4 * a + 4) // 4 == a + 1 and (4 * a + 4) % 4 == 0
    assert str(a * b - b) == "s0*s1 - s1" and (a * b - b).hint == 21
    assert (128 * a * b) // (a * b) == 128 and (a - a) == 0 and type(a - a) is int
    assert a ** 2 == a * a and (-a).__neg__() == a and 3 - a == -(a - 3)
    assert env.guards == []
    assert a ** -1 == 1 / 8 and env.guards == ["s0 == 8"]  # a fraction needs the value
    assert 0.5 * b - 1.0 == 0.5 and 2.0 + b == 5.0 and env.guards == ["s0 == 8", "s1 == 3"]


def test_comparisons_the_bounds_decide_leave_no_guard():
    env, (a, b) = env_with(8, 3)
    assert a != 1 and a > 0 and a >= 2 and not a < 2 and max(a, 1) is a
    assert b < a * b and 8 * a < 32 * a and a * b - b > 0 and a != 32 * a
    assert bool(a) and abs(a) is a
    assert env.guards == []


def test_decisions_use_the_hint_and_record_a_guard():
    env, (a, b) = env_with(8, 3)
    assert a > 6 and not (a < b) and b // 2 == 1 and b % 2 == 1
    assert env.guards == ["s0 > 6", "not (s0 < s1)", "(s1) // (2) == 1", "(s1) % (2) == 1"]
    check = env.checker()
    assert check(8, 3) and check(11, 2) is False and check(6, 3) is False
    assert check(11, 3) and check(11, 4) is False


def test_a_floor_division_names_a_derived_symbol():
    env, (a, b) = env_with(64, 9)
    half = (a - 1) // 2  # a stride-2 window's output size, less one
    assert str(half) == "d0" and half.hint == 31 and env.derived == {"d0": (a - 1, 2)}
    assert env.definition("d0") == "(s0 - 1) // 2" and list(env.hints) == ["s0", "s1", "d0"]
    assert (a - 1) // 2 is not half and str((a - 1) // 2) == "d0"  # one symbol per quotient
    assert str(-(-(a - 3) // 2)) == "d1" and env.definition("d1") == "(s0 - 2) // 2"  # ceil
    assert str((a - 1) // -2) == "-d2" and env.definition("d2") == "(s0) // 2"  # -32
    assert str((a - 1) % 2) == "-2*d0 + s0 - 1"
    assert str((half + 1) // 2) == "d3" and env.definition("d3") == "(d0 + 1) // 2"
    assert env.guards == [] and env.free() == ["s0", "s1"]
    assert env.symbol(5) == env.symbol(5) - 0 and "s2" in env.hints  # input symbols count on
    assert env.roots("d3 + s1 > 2") == ["s0", "s1"]
    values = dict(s0=64, s1=9, d0=31, d1=31, d2=32, d3=16)
    for name in env.derived:  # the definitions give the hints
        assert eval(env.definition(name), {}, values) == values[name] == env.hints[name]


def test_a_quotient_below_two_is_a_guard_not_a_symbol():
    env, (a, b) = env_with(5, 2)
    assert a // 3 == 1 and a % 3 == 2 and -(-b // 3) == 1
    assert env.derived == {}
    assert env.guards == ["(s0) // (3) == 1", "(s0) % (3) == 2", "(-s1) // (3) == -1"]


def test_a_derived_symbol_in_decisions_and_pins():
    env, (a,) = env_with(40)
    d = a // 3
    assert d % 2 == 1  # s0//3 - 2*(s0//3//2): a guard on the derived symbols
    assert a % 3 == 1 and env.guards[-1] == "-3*d0 + s0 == 1"  # a congruence, not a pin
    assert d + 1 != 1 and d > 1 and d >= 2  # every symbol is at least 2
    assert len(env.guards) == 2
    check = env.checker()
    assert check(40, 13, 6) and check(46, 15, 7) and not check(41, 13, 6)
    assert int(d) == 13 and env.fixed["d0"] == 13 and d * 2 == 26  # pinned from then on
    assert env.free() == ["s0"]


def test_no_new_derived_symbol_after_the_size_slots_or_the_compile():
    env, (a,) = env_with(40)
    assert str(a // 3) == "d0"
    env.deriving = False  # the program's size slots are laid out
    assert str(a // 3) == "d0" and a // 7 == 5 and env.guards == ["(s0) // (7) == 5"]
    with env.describing():
        assert a // 9 == 4
    assert "d1" not in env.hints and env.guards == ["(s0) // (7) == 5"]
    env.frozen = True
    with pytest.raises(RuntimeError, match="after its program was compiled"):
        a // 11


def test_exact_division_by_a_polynomial():
    env, (a, b) = env_with(5, 7)
    d = (a - 1) // 2
    assert (8 * d * b + 8 * b) // (8 * d + 8) == b and (a * a - 1) // (a + 1) == a - 1
    assert exact_div(a * a, a + 1) is None and exact_div(a + 1, 2 * a + 2) is None
    assert exact_div(a * b, a - b) is None  # a divisor that may be 0 is never divided
    assert env.guards == []


def test_a_value_used_as_a_number_is_fixed_with_where_it_happened():
    env, (a, b) = env_with(8, 3)
    assert list(range(a)) == list(range(8))
    assert np.zeros((a, 2)).shape == (8, 2)
    assert env.guards == ["s0 == 8"]
    assert env.specialized[0].startswith("s0 fixed to 8 by a use as an index or a count at "
                                         "test_symbolic.py:")
    assert 3 * a + b == 24 + b  # a fixed symbol is its value from then on
    assert env.free() == ["s1"]


def test_an_equality_between_symbols_unifies_them():
    env, (a, b) = env_with(16, 16)
    assert a == b and env.guards == ["s0 == s1"]
    assert b - a == 0 and type(b - a) is int and str(a * b) in ("s0*s0", "s1*s1")
    assert env.free() in (["s0"], ["s1"])


def test_the_guards_are_checked_and_evaluated_as_written():
    env, (a,) = env_with(40)
    assert a * 4 >= 100
    ev = env.evaluator((a * 4, [a + 1, 7]))
    assert ev(5) == (20, [6, 7])
    assert env.checker()(25) and not env.checker()(24)


def test_a_frozen_env_refuses_new_decisions():
    env, (a,) = env_with(8)
    env.frozen = True
    assert a + 1 == a + 1 and str(a * 2) == "2*s0"  # structure: no decision
    with pytest.raises(RuntimeError, match="after its program was compiled"):
        bool(a > 4)
    with pytest.raises(RuntimeError, match="after its program was compiled"):
        int(a)


def test_known_answers_only_what_holds_for_every_size():
    env, (a, b) = env_with(8, 3)
    assert known(a * b, ">=", b) and known(4 * a, ">", a) and known(a, "!=", 1)
    assert not known(a, ">", b) and not known(a, "==", b) and not known(a, "<", 9)
    assert known(3, "<", 4) and not known(4, "<", 3)
    assert env.guards == []


def test_helpers_and_refusals():
    env, (a,) = env_with(5)
    assert is_symbolic((1, [2, a])) and is_symbolic({"size": (a,)}) and not is_symbolic((1, 2))
    assert (a == "x") is False and a != None  # noqa: E711 (not a size: not equal)
    with pytest.raises(ValueError, match="at least 2"):
        env.symbol(1)
    assert isinstance(SymInt._make({(): 3}, env), int)
    assert hash(a + 1) == hash(1 + a) and f"{a:>4}" == "  s0"


poly_terms = st.dictionaries(
    st.lists(st.sampled_from(["s0", "s1"]), max_size=2).map(lambda m: tuple(sorted(m))),
    st.integers(-20, 20), max_size=4)


@settings(max_examples=300, deadline=None)
@given(poly_terms, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
       st.lists(st.tuples(st.integers(2, 40), st.integers(2, 40)), min_size=1, max_size=6))
def test_a_decision_without_a_guard_holds_for_every_size(terms, op, points):
    """What the bounds decide (no guard) is what evaluation gives at every point >= 2."""
    env, _ = env_with(5, 7)
    value = SymInt._make({m: c for m, c in terms.items() if c}, env)
    if known(value, op, 0):
        for x, y in points:
            assert eval(f"({value}) {op} 0", {}, {"s0": x, "s1": y}), (str(value), op, x, y)
    answer = value._compare(op, 0) if isinstance(value, SymInt) else None
    if answer is not None:  # the answer is the hint's, and the guards hold exactly there
        assert answer == eval(f"({value}) {op} 0", {}, {"s0": 5, "s1": 7})
        check = env.checker()
        for x, y in points:
            if check(x, y):
                assert eval(f"({value}) {op} 0", {}, {"s0": x, "s1": y}) == answer


@settings(max_examples=200, deadline=None)
@given(poly_terms, poly_terms, st.integers(2, 30), st.integers(2, 30))
def test_arithmetic_matches_the_numbers(t1, t2, x, y):
    env, _ = env_with(x, y)
    p = SymInt._make({m: c for m, c in t1.items() if c}, env)
    q = SymInt._make({m: c for m, c in t2.items() if c}, env)
    at = {"s0": x, "s1": y}
    for expr, want in ((p + q, "({p}) + ({q})"), (p - q, "({p}) - ({q})"),
                       (p * q, "({p}) * ({q})"), (p * 3 - 1, "({p}) * 3 - 1")):
        assert eval(str(expr), {}, at) == eval(want.format(p=p, q=q), {}, at)


def derived_env(x, y, k1, c1, k2):
    """s0, s1 and the derived d0 = (s0 + c1) // k1, d1 = (d0 + s1) // k2 (where their values
    are at least 2, else None), with the values they take at the input sizes (x, y)."""
    env, (a, b) = env_with(x, y)
    d0 = (a + c1) // k1
    d1 = (d0 + b) // k2 if isinstance(d0, SymInt) else None
    if bare(d0) != "d0" or bare(d1) != "d1":
        return None
    return env, (a, b, d0, d1)


def bare(v):
    return str(v) if isinstance(v, SymInt) and len(v.terms) == 1 and v.terms.get((str(v),)) == 1 \
        else None


def values_at(env, x, y):
    """Every symbol's value at input sizes (x, y), as the runtime computes them; None where
    the runtime refuses the call (a symbol below MIN_SIZE)."""
    values = {"s0": x, "s1": y}
    for name in env.derived:
        values[name] = eval(env.definition(name), {}, values)
    return values if min(values.values()) >= MIN_SIZE else None


derived_terms = st.dictionaries(
    st.lists(st.sampled_from(["s0", "s1", "d0", "d1"]), max_size=2).map(lambda m: tuple(sorted(m))),
    st.integers(-20, 20), max_size=4)


@settings(max_examples=400, deadline=None)
@given(st.integers(2, 60), st.integers(2, 60), st.integers(2, 4), st.integers(-3, 3),
       st.integers(2, 3), derived_terms, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
def test_decisions_on_derived_symbols_hold_wherever_the_runtime_accepts(x, y, k1, c1, k2, terms,
                                                                        op):
    """A decision taken without a guard on a polynomial of input and derived symbols holds at
    every pair of sizes the runtime accepts (each symbol, derived too, at least 2); one
    taken with the hint holds exactly where its guards hold."""
    made = derived_env(x, y, k1, c1, k2)
    if made is None:  # a quotient below 2 compiles as a guard: tested above
        return
    env, _ = made
    value = SymInt._make({m: c for m, c in terms.items() if c}, env)
    points = [(i, j) for i in range(2, 70, 3) for j in range(2, 70, 5)]
    accepted = [v for v in (values_at(env, i, j) for i, j in points) if v is not None]
    assert accepted
    if known(value, op, 0):
        for v in accepted:
            assert eval(f"({value}) {op} 0", {}, v), (str(value), op, v)
    answer = value._compare(op, 0) if isinstance(value, SymInt) else None
    if answer is not None:
        assert answer == eval(f"({value}) {op} 0", {}, values_at(env, x, y))
        check = env.checker()
        for v in accepted:
            if check(*v.values()):
                assert eval(f"({value}) {op} 0", {}, v) == answer, (str(value), op, v)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 60), st.integers(2, 60), st.integers(-5, 5), st.integers(1, 5),
       st.integers(-5, 5))
def test_floor_and_ceil_division_match_the_numbers(x, y, c, k, sign):
    """``p // k`` and ``-(-p // k)`` (k may be negative), derived or guarded, give Python's
    integer answers at every size the guards and the runtime accept."""
    env, (a, b) = env_with(x, y)
    p = a * (sign or 1) + 2 * b + c
    k = k if sign >= 0 else -k
    got = [p // k, -(-p // k), p % k]
    check = env.checker()
    for i in range(2, 40, 3):
        for j in range(2, 40, 4):
            v = values_at(env, i, j)
            if v is None or not check(*v.values()):
                continue
            q = eval(str(p), {}, v)
            want = [q // k, -(-q // k), q % k]
            assert [eval(str(g), {}, v) for g in got] == want, (str(p), k, v)


@settings(max_examples=200, deadline=None)
@given(derived_terms, derived_terms, st.integers(2, 30), st.integers(2, 30))
def test_exact_polynomial_division_is_exact(t1, t2, x, y):
    made = derived_env(max(x, 6), y, 2, 0, 2)
    env, _ = made
    p = SymInt._make({m: c for m, c in t1.items() if c}, env)
    q = SymInt._make({m: c for m, c in t2.items() if c}, env)
    if not isinstance(q, SymInt) or q._least() is None or q._least() <= 0:
        return
    assert exact_div(p * q, q) == p if isinstance(p * q, SymInt) else True
    quotient = exact_div(p, q)
    if quotient is not None:
        for i, j in ((6, 3), (17, 40), (9, 2)):
            v = values_at(env, i, j)
            if v is not None:
                assert eval(f"({quotient}) * ({q})", {}, v) == eval(str(p), {}, v)
    assert env.guards == []
