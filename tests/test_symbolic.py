"""graphc.symbolic: polynomial sizes, exact arithmetic, guards for every decision."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphc.symbolic import ShapeEnv, SymInt, is_symbolic, known


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
    assert a > 6 and not (a < b) and a // 3 == 2 and a % 3 == 2
    assert env.guards == ["s0 > 6", "not (s0 < s1)", "(s0) // (3) == 2", "(s0) % (3) == 2"]
    check = env.checker()
    assert check(8, 3) and check(11, 3) is False and check(7, 5) is False


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
