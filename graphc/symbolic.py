"""Symbolic sizes: a dimension whose value is known only when the compiled code runs.

A dynamic dim is traced and compiled as a ``SymInt``: a polynomial over size symbols
(``s0``, ``s1``, ...) with integer coefficients, carrying the value it has in the
compiling call (its *hint*). Arithmetic that stays a polynomial (``+ - *``, exact
division) stays symbolic. Everything that needs the value (a comparison, ``//`` or
``%`` that does not divide exactly, ``int()``, ``range()``, numpy) is answered with the
hint and records a *guard*: a condition on the symbols under which that answer holds.
The compiled program is valid exactly where all its guards hold; the runtime checks them
on every call and compiles again where they fail. Nothing is assumed silently: code that
was not written for symbols either computes exact polynomials or leaves a guard behind.

Every symbol is at least 2 (sizes 0 and 1 change broadcasting, so they are compiled as
constants), so comparisons that this bound decides (``s0 != 1``, ``4*s0 > 0``) need no
guard.

A floor division by a positive int that does not divide exactly (a strided window's
output size, ``(s0 - 1) // 2 + 1``) names a *derived symbol* instead of a guard:
``d0 = (s0 - 1) // 2``, whose hint is its value in the compiling call. Downstream it is a
symbol like any other (shapes, strides, loop bounds, guards); the runtime computes it from
the input symbols before checking the guards. It is made only where its hint is at least
2, and the runtime refuses a call where it is below 2 as it does for an input symbol (see
``codegen.sizes``), so "every symbol is at least 2" holds for derived symbols too and the
bound's decisions stay true (it ignores how d0 relates to s0: what it decides holds for
every pair of values, the related ones among them). ``%`` by the same int is then
``s0 - 1 - 2*d0``, and a ceiling division ``-(-n // k)`` is ``d = (n + k - 1) // k``.

    env = ShapeEnv()
    n = env.symbol(8)         # s0, hint 8
    (4 * n + 4) // 4          # s0 + 1 (exact)
    n > 6                     # True, guard "s0 > 6"
    env.guards                # ['s0 > 6']
    (n - 1) // 3              # d0 (= (s0 - 1) // 3, hint 2), no guard
"""

from __future__ import annotations

import numbers
import operator
import os
import re
import sys
from contextlib import contextmanager, nullcontext

MIN_SIZE = 2  # the least value a symbol takes (0 and 1 stay constants)


class ShapeEnv:
    """The symbols of one compile, their hints, and the guards recorded on them."""

    def __init__(self):
        self.hints: dict[str, int] = {}
        self.guards: list[str] = []
        self._seen: set[str] = set()
        self.specialized: list[str] = []  # why a symbol was fixed to its value
        self.fixed: dict = {}  # symbol -> what a guard pins it to (an int, or a SymInt)
        # derived symbol -> (numerator, divisor): its value is numerator // divisor, of the
        # symbols named before it (hints holds both kinds, in the order they were made)
        self.derived: dict[str, tuple[SymInt, int]] = {}
        self._quotients: dict[tuple, str] = {}  # (numerator's terms, divisor) -> its name
        self.deriving = True  # False once the program's size slots are laid out
        self.frozen = False
        self._describing = False

    def symbol(self, hint: int) -> SymInt:
        if hint < MIN_SIZE:
            raise ValueError(f"a symbolic size needs a hint of at least {MIN_SIZE}, got {hint}")
        name = f"s{len(self.hints) - len(self.derived)}"
        self.hints[name] = int(hint)
        return SymInt({(name,): 1}, self)

    def quotient(self, numerator: SymInt, divisor: int):
        """``numerator // divisor`` (a positive int that does not divide it exactly) as a
        derived symbol, without a guard; None where it cannot be one: its hint is below
        ``MIN_SIZE``, or no new symbol may be made now (a frozen env, after the size slots
        are laid out, or while describing)."""
        key = (tuple(sorted(numerator.terms.items())), divisor)
        name = self._quotients.get(key)
        if name is None:
            hint = numerator.hint // divisor
            if hint < MIN_SIZE or not self.deriving or self.frozen or self._describing:
                return None
            name = f"d{len(self.derived)}"
            self.hints[name] = hint
            self.derived[name] = (numerator, divisor)
            self._quotients[key] = name
        return SymInt._make({(name,): 1}, self)

    def definition(self, name: str) -> str:
        """The text computing a derived symbol from the symbols before it."""
        numerator, divisor = self.derived[name]
        return f"({numerator}) // {divisor}"

    def roots(self, text: str) -> list[str]:
        """The input symbols (not derived) that the symbols named in ``text`` (a guard,
        a size) are computed from, in order of first mention."""
        out: dict[str, None] = {}
        for name in re.findall(r"\b[sd]\d+\b", text):
            if name in self.derived:
                out.update(dict.fromkeys(self.roots(str(self.derived[name][0]))))
            elif name in self.hints:
                out[name] = None
        return list(out)

    @contextmanager
    def describing(self):
        """Answer decisions with the hint without guarding them: for reports about a
        compiled program (explain's estimates), never for code generation."""
        self._describing, was = True, self._describing
        try:
            yield
        finally:
            self._describing = was

    def guard(self, condition: str) -> None:
        if self._describing:
            return
        if self.frozen:
            raise RuntimeError(f"a symbolic size was asked for a decision ({condition}) after "
                               "its program was compiled")
        if condition not in self._seen:
            self._seen.add(condition)
            self.guards.append(condition)

    def free(self) -> list[str]:
        """The input symbols no guard has pinned (to a number, or to the other symbols):
        the sizes really left dynamic (a derived symbol follows from them)."""
        return [n for n in self.hints if n not in self.fixed and n not in self.derived]

    def checker(self):
        """A function of the symbols' values (in order s0, s1, ...) that is True where every
        guard holds."""
        names = ", ".join(self.hints) or "_"
        body = " and ".join(f"({g})" for g in self.guards) or "True"
        return eval(f"lambda {names}: {body}", {})  # text built here from polynomials

    def evaluator(self, value):
        """A function of the symbols' values giving ``value`` (a SymInt, an int, or a tuple
        or list of them) with the symbols replaced."""
        names = ", ".join(self.hints) or "_"
        return eval(f"lambda {names}: {_source(value)}", {})


def _source(value) -> str:
    if isinstance(value, SymInt):
        return f"({value})"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_source(v) for v in value)
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner},)" if value else "()"  # (a 0-d tensor's shape and strides)
    if isinstance(value, int):
        return repr(int(value))
    raise TypeError(f"cannot evaluate {type(value).__name__} symbolically")


def _poly(value) -> dict:
    if isinstance(value, SymInt):
        return value.terms
    return {(): int(value)} if value else {}


def _accumulate(out: dict, m: tuple, c: int) -> None:
    """``out[m] += c``, keeping no zero coefficients."""
    v = out.get(m, 0) + c
    if v:
        out[m] = v
    else:
        out.pop(m, None)


def _add(a: dict, b: dict, sign: int = 1) -> dict:
    out = dict(a)
    for m, c in b.items():
        _accumulate(out, m, sign * c)
    return out


def _mul(a: dict, b: dict) -> dict:
    out: dict = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            _accumulate(out, tuple(sorted(ma + mb)), ca * cb)
    return out


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


class SymInt:
    """A size that is a polynomial of size symbols; see the module docstring."""

    __slots__ = ("terms", "env")

    def __init__(self, terms: dict, env: ShapeEnv):
        self.terms = terms  # {monomial (sorted symbol names): coefficient}, () = constant
        self.env = env

    @staticmethod
    def _make(terms: dict, env: ShapeEnv):
        if env.fixed and any(s in env.fixed for m in terms for s in m):
            terms = _substitute(terms, env.fixed)
        if not terms:
            return 0
        if len(terms) == 1 and () in terms:
            return terms[()]
        return SymInt(terms, env)

    def simplified(self):
        """This size with the symbols guards have pinned replaced by their values (an int
        when nothing symbolic is left)."""
        return SymInt._make(self.terms, self.env)

    # ---- the value in the compiling call ----------------------------------------------
    @property
    def hint(self) -> int:
        hints = self.env.hints
        total = 0
        for m, c in self.terms.items():
            for s in m:
                c *= hints[s]
            total += c
        return total

    def _least(self):
        """The least value with every symbol in [MIN_SIZE, inf), where it is at all symbols
        = MIN_SIZE: written in t = s - MIN_SIZE >= 0, every non-constant coefficient is
        >= 0 (``s0*s1 - s1 = 2 + 2*t0 + t1 + t0*t1``). Else None (not decided here)."""
        shifted: dict = {}
        for m, c in self.terms.items():
            term = {(): c}
            for name in m:
                term = _mul(term, {(): MIN_SIZE, (name,): 1})
            shifted = _add(shifted, term)
        if any(c < 0 for m, c in shifted.items() if m):
            return None
        return shifted.get((), 0)


    def _specialize(self, why: str) -> int:
        value = self.hint
        if f"{self} == {value}" not in self.env._seen and not self.env._describing:
            self.env.specialized.append(f"{self} fixed to {value} by {why} at {_caller()}")
        self.env.guard(f"{self} == {value}")
        self._pin(value)
        return value

    def _pin(self, value) -> None:
        """After a guard ``self == value``: a bare symbol is that value (an int, or another
        symbol's polynomial) from now on, and so is the symbol of ``c*s + k == value``.
        Fewer symbols, fewer guards later."""
        env = self.env
        if isinstance(value, int) and len(self.terms) <= 2 and () in self.terms:
            (m, c), = [(m, c) for m, c in self.terms.items() if m]  # c*s + k
            k = self.terms[()]
            if len(m) == 1 and (value - k) % c == 0:
                env.fixed.setdefault(m[0], (value - k) // c)
            return
        for a, b in ((self, value), (value, self)):
            name = bare_symbol(a)
            if name is not None and name not in env.fixed:
                if isinstance(b, SymInt):
                    b = b.simplified()
                if isinstance(b, int) or name not in b.terms and all(
                        name not in m for m in b.terms):
                    env.fixed[name] = b
                    return

    # ---- arithmetic that stays a polynomial -------------------------------------------
    def __add__(self, other):
        if isinstance(other, float):
            return self._specialize("arithmetic with a float") + other
        if not isinstance(other, (int, SymInt)):
            return NotImplemented
        return SymInt._make(_add(self.terms, _poly(other)), self.env)

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, float):
            return self._specialize("arithmetic with a float") - other
        if not isinstance(other, (int, SymInt)):
            return NotImplemented
        return SymInt._make(_add(self.terms, _poly(other), -1), self.env)

    def __rsub__(self, other):
        if isinstance(other, float):
            return other - self._specialize("arithmetic with a float")
        if not isinstance(other, int):
            return NotImplemented
        return SymInt._make(_add(_poly(other), self.terms, -1), self.env)

    def __mul__(self, other):
        if isinstance(other, float):
            return self._specialize("arithmetic with a float") * other
        if not isinstance(other, (int, SymInt)):
            return NotImplemented
        return SymInt._make(_mul(self.terms, _poly(other)), self.env)

    __rmul__ = __mul__

    def __neg__(self):
        return SymInt._make({m: -c for m, c in self.terms.items()}, self.env)

    def __pos__(self):
        return self

    def __pow__(self, k):
        if not isinstance(k, int):
            return NotImplemented
        if k < 0:  # a fraction: the value, guarded
            return self._specialize("a negative power") ** k
        out = 1
        for _ in range(k):
            out = out * self
        return out

    def __floordiv__(self, other):
        exact = _divide(self.terms, other)
        if exact is not None:
            return SymInt._make(exact, self.env)
        if not isinstance(other, (int, SymInt)):
            return NotImplemented
        derived = self._quotient(other)
        if derived is not None:
            return derived
        value = self.hint // _hint(other)
        self.env.guard(f"({self}) // ({other}) == {value}")
        return value

    def __rfloordiv__(self, other):
        if not isinstance(other, int):
            return NotImplemented
        if other == 0:
            return 0
        value = other // self.hint
        self.env.guard(f"{other} // ({self}) == {value}")
        return value

    def __mod__(self, other):
        if _divide(self.terms, other) is not None:
            return 0
        if not isinstance(other, (int, SymInt)):
            return NotImplemented
        derived = self._quotient(other)
        if derived is not None:
            return self - other * derived
        value = self.hint % _hint(other)
        self.env.guard(f"({self}) % ({other}) == {value}")
        return value

    def __rmod__(self, other):
        if not isinstance(other, int):
            return NotImplemented
        value = other % self.hint
        self.env.guard(f"{other} % ({self}) == {value}")
        return value

    def _quotient(self, divisor):
        """``self // divisor`` as a derived symbol (a non-zero int divisor), or None. A
        negative quotient is named by its ceiling: floor(p / q) = -((q - 1 - p) // q), so
        ``-(-n // 2)`` is ``(n + 1) // 2``."""
        if type(divisor) is not int or divisor == 0:
            return None
        p, q = (self, divisor) if divisor > 0 else (-self, -divisor)
        if not isinstance(p, SymInt):
            return None
        if p.hint >= 0:
            return p.env.quotient(p, q)
        ceiling = q - 1 - p
        if not isinstance(ceiling, SymInt):
            return None
        derived = p.env.quotient(ceiling, q)
        return None if derived is None else -derived

    def __divmod__(self, other):
        return self // other, self % other

    def __truediv__(self, other):
        return self._specialize("a true division") / other

    def __rtruediv__(self, other):
        return other / self._specialize("a true division")

    # ---- decisions: answered with the hint, guarded --------------------------------------
    def _compare(self, op: str, other) -> bool:
        if not isinstance(other, (int, SymInt)):
            return NotImplemented
        diff = (self - other)
        if isinstance(diff, SymInt):
            diff = diff.simplified()
        decided = _decide(diff, op)
        if decided is not None:  # the same whatever the symbols are
            return decided
        value = _OPS[op](diff.hint, 0)
        diff.env.guard(f"{self} {op} {other}" if value else f"not ({self} {op} {other})")
        if op in ("==", "!=") and value == (op == "=="):  # self == other holds
            if isinstance(other, int):
                diff.env.specialized.append(f"{self} fixed to {other} by a comparison at "
                                            f"{_caller()}")
            self._pin(other)
        return value

    def __lt__(self, other):
        return self._compare("<", other)

    def __le__(self, other):
        return self._compare("<=", other)

    def __gt__(self, other):
        return self._compare(">", other)

    def __ge__(self, other):
        return self._compare(">=", other)

    def __eq__(self, other):
        if isinstance(other, SymInt) and other.env is not self.env:
            return False  # another compile's size (a cache keyed by shapes): not this one
        if isinstance(other, SymInt) and other.terms == self.terms:
            return True
        return self._compare("==", other)

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __bool__(self) -> bool:
        return self._compare("!=", 0)

    def __hash__(self) -> int:
        return hash((id(self.env), tuple(sorted(self.terms.items()))))

    def __abs__(self):
        return self if self >= 0 else -self

    # ---- the value itself: fixes the symbol ---------------------------------------------
    def __index__(self) -> int:
        return self._specialize("a use as an index or a count")

    def __int__(self) -> int:
        return self._specialize("int()")

    def __float__(self) -> float:
        return float(self._specialize("float()"))

    def __trunc__(self):
        return self

    __floor__ = __ceil__ = __trunc__

    def __round__(self, ndigits=None):
        return self

    # ---- text ---------------------------------------------------------------------------
    def __str__(self) -> str:
        parts = []
        for m, c in sorted(self.terms.items(), key=lambda mc: (-len(mc[0]), mc[0])):
            if not m:
                parts.append(str(c))
                continue
            name = "*".join(m)
            parts.append(name if c == 1 else f"-{name}" if c == -1 else f"{c}*{name}")
        return " + ".join(parts).replace("+ -", "- ")

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_bound: list[dict] = []  # symbol values while a symbolic graph runs in Python (sizes_bound)


@contextmanager
def sizes_bound(values: dict):
    """Run a symbolic graph's nodes in Python (a compiled program's numpy fallbacks) for
    one call: ``concrete`` replaces each SymInt by its value in ``values``."""
    _bound.append(values)
    try:
        yield
    finally:
        _bound.pop()


def concrete(value):
    """``value`` (nested tuples, lists, dicts) with each SymInt replaced by its value under
    the innermost ``sizes_bound``; unchanged outside one."""
    if not _bound:
        return value
    if type(value) is SymInt:
        return eval(str(value), {}, _bound[-1])  # the text of a polynomial of the symbols
    if isinstance(value, (tuple, list)):
        return type(value)(concrete(v) for v in value)
    if isinstance(value, dict):
        return {k: concrete(v) for k, v in value.items()}
    return value


def describing(env):
    """``env.describing()``, or nothing for a program without symbolic sizes (None)."""
    return env.describing() if env is not None else nullcontext()


def _caller() -> str:
    """file:line of the code that asked (the first frame outside this file): the user's
    line, or the compiler's where a pass or the scheduler needed a number."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename == __file__:
        f = f.f_back
    if f is None:
        return "?"
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno} ({f.f_code.co_name})"


def exact_div(a, b):
    """``a / b`` as a polynomial where one divides the other term by term (no guard), else
    None. ``exact_div(6*s0*s1, 3*s1) == 2*s0``."""
    if isinstance(a, int):
        if isinstance(b, int):
            return a // b if b and a % b == 0 else None
        return 0 if a == 0 else None
    terms = _divide(a.terms, b)
    return None if terms is None else SymInt._make(terms, a.env)


def _divide(terms: dict, divisor):
    """``terms / divisor`` where a positive single-term divisor divides every term exactly
    (``128*s0*s1 / s0*s1 = 128``), or a divisor positive for every size divides the
    polynomial (``(8*d0*d1 + 8*d1) / (8*d0 + 8) = d1``); else None."""
    if isinstance(divisor, int):
        if divisor <= 0:
            return None
        dm, dc = (), divisor
    elif isinstance(divisor, SymInt) and len(divisor.terms) == 1:
        (dm, dc), = divisor.terms.items()
        if dc <= 0:
            return None
    elif isinstance(divisor, SymInt):
        least = divisor._least()
        return _long_divide(terms, divisor.terms) if least is not None and least > 0 else None
    else:
        return None
    out = {}
    for m, c in terms.items():
        rest = list(m)
        for name in dm:
            if name not in rest:
                return None
            rest.remove(name)
        if c % dc:
            return None
        out[tuple(rest)] = c // dc
    return out


def _long_divide(terms: dict, divisor: dict):
    """The polynomial ``q`` with integer coefficients and ``terms == q * divisor``, else
    None. Long division by leading terms in graded lexicographic order: where ``divisor``
    divides exactly, each remainder's leading term is the quotient's next term times the
    divisor's leading term, so the division never stops early."""
    names = sorted({n for m in list(terms) + list(divisor) for n in m})

    def order(m):  # graded lex: total degree, then the exponents in name order
        return (len(m), tuple(m.count(n) for n in names))

    lead = max(divisor, key=order)
    rest, quotient = dict(terms), {}
    while rest:
        m = max(rest, key=order)
        c = rest[m]
        left = list(m)
        for name in lead:
            if name not in left:
                return None
            left.remove(name)
        if c % divisor[lead]:
            return None
        term = {tuple(left): c // divisor[lead]}
        _accumulate(quotient, tuple(left), c // divisor[lead])
        rest = _add(rest, _mul(term, divisor), -1)
    return quotient


def bare_symbol(value) -> str | None:
    """The symbol's name if ``value`` is exactly one symbol."""
    if isinstance(value, SymInt) and len(value.terms) == 1:
        (m, c), = value.terms.items()
        if len(m) == 1 and c == 1:
            return m[0]
    return None


def _substitute(terms: dict, fixed: dict) -> dict:
    out: dict = {}
    for m, c in terms.items():
        term = {(): c}
        for name in m:
            term = _mul(term, _poly(fixed[name]) if name in fixed else {(name,): 1})
        out = _add(out, term)
    if any(s in fixed for m in out for s in m):  # a replacement that names a fixed symbol
        return _substitute(out, fixed)
    return out


numbers.Integral.register(SymInt)  # an int scalar to the dtype rules (x * x.shape[0])


def _hint(value) -> int:
    return value.hint if isinstance(value, SymInt) else value


def is_symbolic(value) -> bool:
    """True for a SymInt, or a tuple, list or dict holding one."""
    if isinstance(value, SymInt):
        return True
    if isinstance(value, (tuple, list)):
        return any(is_symbolic(v) for v in value)
    if isinstance(value, dict):
        return any(is_symbolic(v) for v in value.values())
    return False


def known(a, op: str, b) -> bool:
    """``a op b`` for every value of the symbols, decided without a guard: False where
    it fails or depends on the sizes. For code that only wants a choice when it is
    certain (reuse a buffer if it surely fits) and has a safe default otherwise."""
    if not isinstance(a, SymInt) and not isinstance(b, SymInt):
        return _OPS[op](a, b)
    diff = a - b
    return bool(_decide(diff.simplified() if isinstance(diff, SymInt) else diff, op))


def _decide(diff, op: str):
    """``diff op 0`` where it holds or fails for every value of the symbols (True or
    False), else None."""
    if isinstance(diff, int):
        return _OPS[op](diff, 0)
    low, high = diff._least(), (-diff)._least()  # diff >= low, -diff >= high
    if low is not None and low > 0 or high is not None and high > 0:  # never 0
        sign = 1 if low is not None and low > 0 else -1
        return _OPS[op](sign, 0)
    if low is not None and low >= 0 and op in (">=", "<"):  # diff >= 0
        return op == ">="
    if high is not None and high >= 0 and op in ("<=", ">"):  # diff <= 0
        return op == "<="
    return None
