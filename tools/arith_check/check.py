#!/usr/bin/env python3
"""Exact arithmetic check for math reasoning steps (prototype, standard library only).

A step that states `expr = number` (or `expr = expr`) where both sides are fully numeric and the
two sides are not equal (after lenient rounding rules) is flagged as wrong.  The goal is high
precision: anything ambiguous (variables, units inside expressions, functions we do not know,
subscripts, inequalities, questions, hypotheticals, ...) is skipped, never flagged.

Numbers are evaluated exactly with fractions.Fraction by a small recursive-descent parser over
our own tokens; nothing is ever passed to eval().

Usage:
    python3 tools/arith_check/check.py                 # all four sets: tables, 10 false alarms
                                                       # each, and the combination with the PRM
                                                       # (model_preds.jsonl beside this file)
    python3 tools/arith_check/check.py --sets prm_test bbm --examples 20
    python3 tools/arith_check/check.py --step 'So 3 * 4 = 13.'   # check one step, explain
    python3 tools/arith_check/check.py --selftest
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from fractions import Fraction

DATA = os.environ.get("ACTPRM_DATA", "/work/shared/data")

# ----------------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------------
# kinds: NUM, OP (+ - * / ^), LP, RP, EQ, APPROX, REL, PCT, FACT, FUNC (sqrt), WORD, CMD, PUNCT,
#        BAD (a token that must never touch an operand), TILDE, SEP (hard separator: a LaTeX
#        line break, the \[ \] \( \) delimiters, '$' when the text uses it as a math delimiter)


class Tok:
    __slots__ = ("kind", "text", "val", "dec", "sp", "spa", "frac", "attached")

    def __init__(self, kind, text, val=None, dec=0, sp=False, frac=False):
        self.kind = kind
        self.text = text
        self.val = val        # Fraction for NUM
        self.dec = dec        # number of decimals written, for NUM
        self.sp = sp          # whitespace before this token
        self.spa = False      # whitespace after this token (filled in later)
        self.frac = frac      # LP that opens a \frac (for mixed-number ambiguity)
        self.attached = False

    def __repr__(self):
        return f"{self.kind}:{self.text}"


class Skip(Exception):
    """The expression is not something we can evaluate exactly and unambiguously."""


# LaTeX commands
OP_CMDS = {"times": "*", "cdot": "*", "ast": "*", "div": "/"}
APPROX_CMDS = {"approx", "simeq", "thickapprox", "doteq"}
REL_CMDS = {"neq", "ne", "le", "leq", "ge", "geq", "lt", "gt", "equiv", "sim", "cong", "propto",
            "Rightarrow", "rightarrow", "implies", "to", "Leftrightarrow", "iff", "mapsto",
            "leqslant", "geqslant", "ll", "gg", "not", "in", "notin", "subset", "mid", "nmid",
            "pmod", "bmod", "mod", "pm", "mp"}
SPACE_CMDS = {",", ";", ":", " ", "quad", "qquad", "!", "displaystyle", "textstyle", "left",
              "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl",
              "biggr", "limits", "nolimits", "(", ")", "[", "]", "$", "enspace", "thinspace",
              "negthinspace", "hspace", "vspace", "phantom"}
TEXT_CMDS = {"text", "textbf", "textit", "mathrm", "mbox", "textrm", "mathbf", "operatorname",
             "textnormal", "emph", "mathit", "textsf", "texttt"}
TRANSPARENT_CMDS = {"boxed"}
FRAC_CMDS = {"frac", "dfrac", "tfrac", "cfrac"}

WORD_RE = re.compile(r"[A-Za-z]+")
# thousands separators: 1,000 or 12,345,678 (a comma followed by exactly three digits)
NUM_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?![\d])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+")


def _read_group(s, i):
    """s[i] == '{': return (content, index after the matching '}')."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1:j], j + 1
        j += 1
    raise Skip("unbalanced braces")


def _read_arg(s, i):
    """A LaTeX macro argument: {group} or a single non-space character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise Skip("missing argument")
    if s[i] == "{":
        return _read_group(s, i)
    if s[i] == "\\":
        m = re.match(r"\\[A-Za-z]+", s[i:])
        if m:
            return m.group(0), i + len(m.group(0))
    return s[i], i + 1


DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")


def uses_latex_dollars(s: str) -> bool:
    """'$' is a LaTeX math delimiter (not currency) when some '$' (other than '\\$') is not
    followed by a digit: a closing '$' is followed by space, punctuation or the end, while a
    currency sign always precedes its amount."""
    for m in re.finditer(r"(?<!\\)\$", s):
        nxt = s[m.end():m.end() + 1]
        if not nxt.isdigit():
            return True
    return False


def tokenize(s: str, latex_dollars: bool | None = None) -> list[Tok]:
    toks: list[Tok] = []
    if latex_dollars is None:
        latex_dollars = uses_latex_dollars(s)
    s = DEGREE_RE.sub(" ", s)
    s = s.replace("{,}", ",").replace("\\!", "")   # LaTeX thousands: 1{,}000, 1,\!000
    _tokenize(s, toks, 0, latex_dollars)
    # whitespace after
    for a, b in zip(toks, toks[1:]):
        a.spa = b.sp
    if toks:
        toks[-1].spa = True
    return toks


def _tokenize(s: str, toks: list[Tok], depth: int = 0, ld: bool = False):
    if depth > 30:
        raise Skip("too deep")
    i = 0
    n = len(s)
    sp = True
    while i < n:
        c = s[i]
        if c.isspace():
            sp = True
            i += 1
            continue
        # --- LaTeX commands
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", s[i:])
            if not m:
                i += 1
                continue
            name = m.group(1)
            j = i + len(m.group(0))
            if name in ("(", ")", "[", "]"):  # \( \) \[ \]: math delimiters
                toks.append(Tok("SEP", name, sp=sp)); sp = True; i = j; continue
            if name == "binom":
                a, j = _read_arg(s, j)
                b, j = _read_arg(s, j)
                toks.append(Tok("FUNC", "binom", sp=sp))
                for arg in (a, b):
                    toks.append(Tok("LP", "(", sp=False))
                    _tokenize(arg, toks, depth + 1, ld)
                    toks.append(Tok("RP", ")", sp=False))
                sp = False
                i = j
                continue
            if name in SPACE_CMDS:
                i = j
                if not name.startswith(("left", "right", "big", "Big")):
                    sp = True
                if name in ("hspace", "vspace", "phantom") and j < n and s[j] == "{":
                    _, i = _read_group(s, j)
                continue
            if name == "$":
                i = j
                sp = True
                continue
            if name == "%":
                toks.append(Tok("PCT", "%", sp=sp)); sp = False; i = j; continue
            if name == "\\":
                toks.append(Tok("SEP", "\\\\", sp=sp)); sp = True; i = j; continue
            if name in ("{", "}", "|", "#", "_", "&"):
                toks.append(Tok("BAD", name, sp=sp)); sp = False; i = j; continue
            if name in OP_CMDS:
                toks.append(Tok("OP", OP_CMDS[name], sp=sp)); sp = False; i = j; continue
            if name in APPROX_CMDS:
                toks.append(Tok("APPROX", "~", sp=sp)); sp = False; i = j; continue
            if name in REL_CMDS:
                toks.append(Tok("REL", name, sp=sp)); sp = False; i = j; continue
            if name == "circ":  # degrees: a unit that is the same on both sides; drop it
                i = j
                continue
            if name in TEXT_CMDS:
                if j < n and s[j] == "{":
                    content, j = _read_group(s, j)
                    # words inside \text{} are words; numbers inside are odd: make them BAD
                    if content.strip():
                        for w in re.findall(r"\S+", content):
                            toks.append(Tok("WORD" if w.isalpha() else "BAD", w, sp=True))
                    sp = True
                i = j
                continue
            if name in TRANSPARENT_CMDS:
                if j < n and s[j] == "{":
                    content, j = _read_group(s, j)
                    toks.append(Tok("LP", "(", sp=sp))
                    _tokenize(content, toks, depth + 1, ld)
                    toks.append(Tok("RP", ")", sp=False))
                    sp = False
                i = j
                continue
            if name in FRAC_CMDS:
                a, j = _read_arg(s, j)
                b, j = _read_arg(s, j)
                toks.append(Tok("LP", "(", sp=sp, frac=True))
                toks.append(Tok("LP", "(", sp=False))
                _tokenize(a, toks, depth + 1, ld)
                toks.append(Tok("RP", ")", sp=False))
                toks.append(Tok("OP", "/", sp=False))
                toks.append(Tok("LP", "(", sp=False))
                _tokenize(b, toks, depth + 1, ld)
                toks.append(Tok("RP", ")", sp=False))
                toks.append(Tok("RP", ")", sp=False))
                sp = False
                i = j
                continue
            if name == "sqrt":
                if j < n and s[j] == "[":
                    toks.append(Tok("CMD", "sqrt[]", sp=sp)); sp = False; i = j; continue
                a, j = _read_arg(s, j)
                toks.append(Tok("FUNC", "sqrt", sp=sp))
                toks.append(Tok("LP", "(", sp=False))
                _tokenize(a, toks, depth + 1, ld)
                toks.append(Tok("RP", ")", sp=False))
                sp = False
                i = j
                continue
            if name in ("ldots", "cdots", "dots", "dotsb", "dotsc", "vdots"):
                toks.append(Tok("BAD", "...", sp=sp)); sp = False; i = j; continue
            # unknown command: \pi, \sin, \log, \overline, \angle, \binom, ...
            toks.append(Tok("CMD", name, sp=sp))
            sp = False
            i = j
            continue
        # --- numbers
        if c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit()
                           and not (toks and toks[-1].kind == "NUM" and not sp)):
            m = NUM_RE.match(s, i)
            txt = m.group(0)
            clean = txt.replace(",", "")
            dec = len(clean.split(".")[1]) if "." in clean else 0
            toks.append(Tok("NUM", txt, val=Fraction(clean), dec=dec, sp=sp))
            sp = False
            i = m.end()
            # a number glued to a letter (5x, 3rd, 10cm, 2pm): mark attached
            if i < n and (s[i].isalpha()):
                toks[-1].attached = True
            continue
        # --- words
        if c.isalpha():
            m = WORD_RE.match(s, i)
            if m is None:  # non-ASCII letter (Greek etc.)
                toks.append(Tok("BAD", c, sp=sp)); sp = False; i += 1; continue
            w = m.group(0)
            t = Tok("WORD", w, sp=sp)
            if toks and not sp and toks[-1].kind in ("NUM", "RP"):
                t.attached = True
            if w == "sqrt" and s[m.end():m.end() + 1] == "(":
                t = Tok("FUNC", "sqrt", sp=sp)
            toks.append(t)
            sp = False
            i = m.end()
            continue
        # --- operators and punctuation
        two = s[i:i + 2]
        if two in ("**",):
            toks.append(Tok("OP", "^", sp=sp)); sp = False; i += 2; continue
        if two in ("==",):
            toks.append(Tok("EQ", "=", sp=sp)); sp = False; i += 2; continue
        if two == "!=" and not sp and toks and toks[-1].kind in ("NUM", "RP"):
            # LaTeX "5!=120" is a factorial followed by '='
            toks.append(Tok("FACT", "!", sp=False))
            toks.append(Tok("EQ", "=", sp=False)); sp = False; i += 2; continue
        if two in ("=>", "<=", ">=", "!=", "->", "=<", "<>"):
            toks.append(Tok("REL", two, sp=sp)); sp = False; i += 2; continue
        if s[i:i + 3] == "...":
            toks.append(Tok("BAD", "...", sp=sp)); sp = False; i += 3; continue
        if c in "+-*/^":
            toks.append(Tok("OP", c, sp=sp)); sp = False; i += 1; continue
        if c in "×∙·⋅":
            toks.append(Tok("OP", "*", sp=sp)); sp = False; i += 1; continue
        if c == "÷":
            toks.append(Tok("OP", "/", sp=sp)); sp = False; i += 1; continue
        if c == "−":
            toks.append(Tok("OP", "-", sp=sp)); sp = False; i += 1; continue
        if c == "=":
            toks.append(Tok("EQ", "=", sp=sp)); sp = False; i += 1; continue
        if c == "≈":
            toks.append(Tok("APPROX", "~", sp=sp)); sp = False; i += 1; continue
        if c in "<>≠≤≥≡→⇒":
            toks.append(Tok("REL", c, sp=sp)); sp = False; i += 1; continue
        if c == "(" or c == "{":
            toks.append(Tok("LP", "(", sp=sp)); sp = False; i += 1; continue
        if c == ")" or c == "}":
            toks.append(Tok("RP", ")", sp=sp)); sp = False; i += 1; continue
        if c == "%":
            toks.append(Tok("PCT", "%", sp=sp)); sp = False; i += 1; continue
        if c == "$":
            if ld:
                toks.append(Tok("SEP", "$", sp=True))
            sp = True; i += 1; continue
        if c == "!":
            toks.append(Tok("FACT", "!", sp=sp)); sp = False; i += 1; continue
        if c == "&":
            sp = True; i += 1; continue
        if c in ".,;:?\"'`_|[]#~°\u2019\u201c\u201d@–—":
            if c == "°":
                i += 1
                continue
            kind = "PUNCT" if c in ".,;:\"" else "BAD"
            if c == "~":  # LaTeX non-breaking space (or "approximately" in plain text)
                kind = "TILDE"
            toks.append(Tok(kind, c, sp=sp)); sp = False; i += 1; continue
        toks.append(Tok("BAD", c, sp=sp))
        sp = False
        i += 1


# ----------------------------------------------------------------------------------------------
# Evaluation: recursive descent over a token list, exact Fractions, several interpretations
# ----------------------------------------------------------------------------------------------
MAX_BITS = 4000


def _pow(a: Fraction, b: Fraction) -> Fraction:
    if b.denominator != 1:
        # rational exponent: only when the root is exact (e.g. 8^(1/3), 4^(1/2))
        q = b.denominator
        if a < 0 or q > 12:
            raise Skip("non-integer exponent")
        r = _exact_root(a, q)
        return _pow(r, Fraction(b.numerator))
    e = b.numerator
    if a == 0 and e < 0:
        raise Skip("0 to a negative power")
    if abs(e) > 10000:
        raise Skip("huge exponent")
    bits = max(a.numerator.bit_length(), a.denominator.bit_length())
    if bits * abs(e) > MAX_BITS * 4:
        raise Skip("huge power")
    return a ** e


def _iroot(n: int, k: int):
    if n < 0:
        return None
    r = round(n ** (1.0 / k)) if n < 2 ** 1000 else None
    if r is None:
        return None
    for c in (r - 1, r, r + 1):
        if c >= 0 and c ** k == n:
            return c
    return None


def _exact_root(a: Fraction, k: int) -> Fraction:
    p = _iroot(a.numerator, k)
    q = _iroot(a.denominator, k)
    if p is None or q is None:
        raise Skip("irrational root")
    return Fraction(p, q)


SQRT_DIGITS = 40


def _approx_sqrt(a: Fraction) -> Fraction:
    """sqrt(a) to about 40 significant decimals (the result is marked inexact)."""
    if max(a.numerator.bit_length(), a.denominator.bit_length()) > MAX_BITS:
        raise Skip("too big")
    scale = 10 ** SQRT_DIGITS
    return Fraction(math.isqrt(a.numerator * a.denominator * scale * scale),
                    a.denominator * scale)


def _tight_fraction_at(toks, i):
    """toks[i:i+3] is NUM '/' NUM written without spaces (2/3), after another '/'."""
    if i + 2 >= len(toks):
        return False
    a, op, b = toks[i], toks[i + 1], toks[i + 2]
    return (a.kind == "NUM" and op.kind == "OP" and op.text == "/" and b.kind == "NUM"
            and not op.sp and not b.sp and b.val != 0)


class Parser:
    """expr := term (('+'|'-') term)*
       term := unary (('*'|'/') unary | implicit)*
       unary := ('-'|'+') unary | power
       power := postfix ('^' unary)?
       postfix := primary ('!' | '%')*
       primary := NUM | '(' expr ')' | sqrt '(' expr ')'
       `pct` chooses how '%' is read: 'div' (x/100) or 'unit' (ignored)."""

    def __init__(self, toks, pct="div", mixed="add", tight=False):
        self.t = toks
        self.i = 0
        self.tight = tight      # "24 / 2/3": divide by the tight fraction 2/3
        self.pct = pct
        self.mixed = mixed      # 3\frac{1}{2}: 'add' (mixed number 3.5) or 'mul' (3 * 1/2)
        self.inexact = False    # an irrational square root was approximated

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def parse(self):
        if not self.t:
            raise Skip("empty")
        v = self.expr()
        if self.i != len(self.t):
            raise Skip(f"trailing {self.t[self.i]!r}")
        return v

    def expr(self):
        v = self.term()
        while True:
            t = self.peek()
            if t is not None and t.kind == "OP" and t.text in "+-":
                self.i += 1
                w = self.term()
                v = v + w if t.text == "+" else v - w
            else:
                return v

    def term(self):
        v = self.unary()
        while True:
            t = self.peek()
            if t is not None and t.kind == "OP" and t.text in "*/":
                self.i += 1
                if t.text == "/" and self.tight and _tight_fraction_at(self.t, self.i):
                    w = self.t[self.i].val / self.t[self.i + 2].val
                    self.i += 3
                else:
                    w = self.unary()
                if t.text == "*":
                    v = v * w
                else:
                    if w == 0:
                        raise Skip("division by zero")
                    v = v / w
            elif t is not None and self.i > 0 and (
                    ((t.kind == "LP" or t.kind == "FUNC")
                     and self.t[self.i - 1].kind in ("NUM", "RP", "FACT"))
                    or (t.kind == "NUM" and self.t[self.i - 1].kind == "FACT")):
                # implicit multiplication 2(3+4), (2)(3), 2\sqrt{3}, 3!7!, 2!(5-2)!
                w = self.unary()
                v = v * w
            else:
                return v
            self._check(v)

    def unary(self):
        t = self.peek()
        if t is not None and t.kind == "OP" and t.text in "+-":
            self.i += 1
            v = self.unary()
            return -v if t.text == "-" else v
        return self.power()

    def power(self):
        v = self.postfix()
        t = self.peek()
        if t is not None and t.kind == "OP" and t.text == "^":
            self.i += 1
            nxt = self.peek()
            if nxt is not None and nxt.kind == "OP" and nxt.text == "+":
                raise Skip("'^+' (a one-sided limit?)")
            e = self.unary()
            v = _pow(v, e)
            self._check(v)
        return v

    def postfix(self):
        v = self.primary()
        while True:
            t = self.peek()
            if t is not None and t.kind == "FACT":
                self.i += 1
                if v.denominator != 1 or v < 0 or v > 500:
                    raise Skip("factorial")
                v = Fraction(math.factorial(int(v)))
            elif t is not None and t.kind == "PCT":
                self.i += 1
                if self.pct == "div":
                    v = v / 100
            else:
                return v

    def primary(self):
        t = self.peek()
        if t is None:
            raise Skip("unexpected end")
        if t.kind == "NUM":
            self.i += 1
            nxt = self.peek()
            if nxt is not None and nxt.kind == "LP" and nxt.frac:
                f = self.primary()
                return t.val + f if self.mixed == "add" else t.val * f
            return t.val
        if t.kind == "LP":
            self.i += 1
            v = self.expr()
            t2 = self.peek()
            if t2 is None or t2.kind != "RP":
                raise Skip("unbalanced")
            self.i += 1
            return v
        if t.kind == "FUNC" and t.text == "binom":
            self.i += 1
            if self.peek() is None or self.peek().kind != "LP":
                raise Skip("binom without arguments")
            a = self.primary()
            if self.peek() is None or self.peek().kind != "LP":
                raise Skip("binom without arguments")
            b = self.primary()
            if a.denominator != 1 or b.denominator != 1 or a < 0 or a > 2000:
                raise Skip("binom of non-integers")
            return Fraction(math.comb(int(a), int(b))) if b >= 0 else Fraction(0)
        if t.kind == "FUNC" and t.text == "sqrt":
            self.i += 1
            if self.peek() is None or self.peek().kind != "LP":
                raise Skip("sqrt without parens")
            v = self.primary()
            if v < 0:
                raise Skip("sqrt of negative")
            try:
                return _exact_root(v, 2)
            except Skip:
                self.inexact = True
                return _approx_sqrt(v)
        raise Skip(f"unexpected {t!r}")

    @staticmethod
    def _check(v):
        if max(v.numerator.bit_length(), v.denominator.bit_length()) > MAX_BITS * 4:
            raise Skip("too big")


def evaluate(toks):
    """Return (set of values, inexact) of the token list under the readings we allow:
    '%' as /100 or as a unit, a number before \frac as a mixed number or a product, "a / b/c"
    as (a/b)/c or a/(b/c), a final
    '!' followed by a space as factorial or punctuation."""
    pcts = ["div", "unit"] if any(t.kind == "PCT" for t in toks) else ["div"]
    mixeds = ["add", "mul"] if any(t.frac for t in toks) else ["add"]
    tights = [False, True] if any(t.kind == "OP" and t.text == "/" and
                                  _tight_fraction_at(toks, k + 1)
                                  for k, t in enumerate(toks)) else [False]
    vals = set()
    inexact = False
    err = None
    for r in pcts:
        for m in mixeds:
            for tight in tights:
                try:
                    p = Parser(toks, r, m, tight)
                    vals.add(p.parse())
                    inexact |= p.inexact
                except Skip as e:
                    err = e
    if toks and toks[-1].kind == "FACT" and toks[-1].spa:
        try:
            v2, i2 = evaluate(toks[:-1])
            vals |= v2
            inexact |= i2
        except Skip:
            pass
    if not vals:
        raise err or Skip("no reading")
    return vals, inexact


def literal_info(toks):
    """If the operand is a bare number (optionally signed / with %), return [(value, quantum)]:
    the readings of the literal and the size of its last written digit (for rounding)."""
    ks = [t.kind for t in toks]
    sign = 1
    body = toks
    if ks and ks[0] == "OP" and toks[0].text in "+-":
        sign = -1 if toks[0].text == "-" else 1
        body = toks[1:]
    # drop wrapping parentheses
    while len(body) >= 2 and body[0].kind == "LP" and body[-1].kind == "RP":
        body = body[1:-1]
    if len(body) == 1 and body[0].kind == "NUM":
        v = body[0].val * sign
        return [(v, Fraction(1, 10 ** body[0].dec))]
    if len(body) == 2 and body[0].kind == "NUM" and body[1].kind == "PCT":
        v = body[0].val * sign
        q = Fraction(1, 10 ** body[0].dec)
        return [(v / 100, q / 100), (v, q)]
    return []


def _round_set(x: Fraction, q: Fraction):
    """Values a writer could mean by `x` rounded to a multiple of q: rounding to nearest (half
    up or half even), truncation towards zero; for whole-number literals (q >= 1) also floor and
    ceiling (counting problems round up or down)."""
    y = x / q
    fl = y.numerator // y.denominator          # floor
    out = {fl if y >= 0 else fl + 1}           # truncation towards zero
    frac = y - fl
    if frac > Fraction(1, 2):
        out.add(fl + 1)
    elif frac < Fraction(1, 2):
        out.add(fl)
    else:
        out |= {fl, fl + 1}
    if q >= 1:
        out |= {fl, fl + 1}
    return {Fraction(k) * q for k in out}


def values_agree(L, R, lit_l, lit_r, approx, inexact=False):
    for a in L:
        for b in R:
            if a == b:
                return True
            if inexact and abs(a - b) <= Fraction(1, 10 ** 25) * max(1, abs(a), abs(b)):
                return True
            m = max(abs(a), abs(b))
            if abs(a - b) <= Fraction(1, 10 ** 6) * m:
                return True
            if approx and abs(a - b) <= Fraction(1, 100) * m:
                return True
    # rounding: a bare literal on one side with d decimals is fine if the other side rounds
    # (or truncates) to it.  For integer literals this allows e.g. 10/3 = 3 (rounded).
    for lits, other in ((lit_r, L), (lit_l, R)):
        for v, q in lits:
            for x in other:
                if x == v:
                    return True
                # only a value that is not already a whole number of quanta may be rounded
                if (x / q).denominator != 1 and v in _round_set(x, q):
                    return True
                if approx:
                    # approximately: within 1% + one unit of the last written digit
                    if abs(x - v) <= Fraction(1, 100) * abs(x) + q:
                        return True
    return False


# ----------------------------------------------------------------------------------------------
# Finding equalities in a step
# ----------------------------------------------------------------------------------------------
MATH = {"NUM", "OP", "LP", "RP", "PCT", "FACT", "FUNC"}

# words that make the number next to them part of a larger expression
OPERATOR_WORDS = {
    "times", "of", "plus", "minus", "divided", "multiplied", "by", "over", "squared", "cubed",
    "power", "powers", "percent", "half", "twice", "thrice", "double", "triple", "quarter",
    "third", "fourth", "fifth", "sqrt", "root", "roots", "log", "ln", "sin", "cos", "tan", "mod",
    "modulo", "factorial", "choose", "into", "than", "more", "less", "fewer", "x", "X",
    "th", "st", "nd", "rd", "pi", "e", "i", "hundred", "thousand", "million", "billion",
    "trillion", "dozen", "dozens", "hundreds", "thousands", "millions", "score", "raised",
    "cent", "percentage", "k", "K", "m", "bn",
}
LEFT_ONLY_OPERATOR_WORDS = {"per", "each", "every", "and", "or", "from", "between", "with",
                            "base", "sum", "product", "difference", "quotient"}
# a word after the right operand that is followed by another number is fine only if it is a
# connective ("= 12 and 5 + 2 = 7"), not an operator written as a word ("= 4 nabla 3")
CONNECTIVES = {"and", "so", "then", "which", "but", "while", "thus", "hence", "therefore",
               "since", "because", "giving", "gives", "give", "or", "that", "this", "we", "for",
               "is", "are", "was", "also", "now", "in", "at", "on"}
# words right before an equality that make it a hypothesis / question / negated claim
HYPO_WORDS = {
    "if", "suppose", "assume", "assuming", "whether", "does", "do", "did", "check", "checking",
    "not", "isn", "doesn", "unless", "wrong", "incorrect", "false", "try", "trying", "test",
    "testing", "would", "could", "might", "should", "claim", "claims", "say", "says",
    "said", "want", "need", "needs", "solve", "set", "setting", "when", "whenever", "until",
    "guess", "maybe", "perhaps", "let", "lets", "no",
}
# words anywhere in the same sentence that make a false equality a non-claim (a rejected
# candidate, a hypothesis, a correction)
NEG_SENTENCE_WORDS = {
    "not", "isn", "doesn", "don", "aren", "wasn", "cannot", "never", "wrong", "incorrect",
    "mistake", "mistakes", "error", "false", "contradiction", "impossible", "oops", "typo",
    "wait", "actually", "instead", "correction", "supposed", "meant", "check", "checking",
    "verify", "whether", "suppose", "assume", "assuming", "unless", "no", "nope",
    "neither", "nor", "fails", "fail", "untrue", "hmm", "becomes",
}
# words anywhere in the step that announce a rejected candidate / contradiction
REJECT_STEP_RE = re.compile(
    r"\b(incorrect|contradiction|contradicts|impossible|cannot|can't|untrue|extraneous|invalid|"
    r"doesn't work|does not work|not a solution|no solution|not equal|isn't equal|"
    r"is not true|isn't true|not possible|false)\b|≠|\\neq?\b", re.I)
NEG_RELS = {"neq", "ne", "≠", "!=", "<>", "not"}
APPROX_STEP_RE = re.compile(
    r"\b(approx\w*|about|around|roughly|nearly|almost|estimat\w*|round\w*|nearest|close to|"
    r"decimal|decimals|truncat\w*|calculator)\b|≈|\\approx|~", re.I)


OF_OK = {"total", "sum", "product", "value", "result", "answer", "cost", "price", "area",
         "volume", "perimeter", "amount", "profit", "revenue", "earnings", "income", "savings",
         "distance", "length", "speed"}


def _boundary_ok(toks, idx, side, right_ends=frozenset()) -> str | None:
    """Return None if the token toks[idx] next to an operand run is a safe boundary, else a
    reason.  idx may be out of range (start / end of the text)."""
    if idx < 0 or idx >= len(toks):
        return None
    t = toks[idx]
    k = t.kind
    if k == "SEP":
        return None
    if k in ("EQ", "APPROX"):
        return None  # chain a = b = c
    if k == "PUNCT":
        if t.text in ".,:;":
            # sentence punctuation must be followed by whitespace: "3:4", "1.2.3", "f(1,2)"
            # are not boundaries
            return None if t.spa else f"'{t.text}' glued to operand"
        return None  # quotes
    if k == "WORD":
        w = t.text
        lw = w.lower()
        if t.attached or (side == "left" and not t.spa) or (side == "right" and not t.sp):
            return f"word '{w}' glued to operand"
        if len(w) == 1 and w not in ("I",):
            return f"single letter '{w}' (variable?)"
        if side == "left" and lw == "of" and idx > 0 and toks[idx - 1].kind == "WORD" \
                and toks[idx - 1].text.lower() in OF_OK:
            return None  # "a total of 24*1 = 24"
        if side == "left" and lw in CONNECTIVES and (
                idx in right_ends or (idx - 1 in right_ends and toks[idx - 1].kind == "WORD")):
            return None  # "2 * 3 = 6 and 4 * 5 = 20", "2 * 3 = 6 apples and 4 + 5 = 9 pears"
        if lw in OPERATOR_WORDS or (side == "left" and lw in LEFT_ONLY_OPERATOR_WORDS):
            return f"operator word '{w}'"
        if side == "left" and lw in HYPO_WORDS:
            return f"hypothetical '{w}'"
        # a word sitting between two numbers may be an operator written out ("1 nabla 2",
        # "add 5 to 3", "3 and 4 + 5")
        if side == "left" and idx > 0 and toks[idx - 1].kind in ("NUM", "RP", "PCT"):
            return f"word '{w}' between numbers"
        if side == "right" and idx + 1 < len(toks) and toks[idx + 1].kind in ("NUM", "LP") \
                and lw not in CONNECTIVES:
            return f"word '{w}' between numbers"
        return None
    if k == "TILDE":
        return "tilde"
    return f"{k} '{t.text}' next to operand"


def find_equalities(toks):
    """Yield (left_tokens, right_tokens, rel_token, reason_or_None) for each '=' / approx."""
    out = []
    right_ends = set()
    for p, t in enumerate(toks):
        if t.kind in ("EQ", "APPROX"):
            b = p + 1
            while b < len(toks) and toks[b].kind in MATH:
                b += 1
            if b > p + 1:
                right_ends.add(b)
    for p, t in enumerate(toks):
        if t.kind not in ("EQ", "APPROX"):
            continue
        b = p + 1
        while b < len(toks) and toks[b].kind in MATH:
            b += 1
        # left run; "85 * 9 minutes = 765 minutes": the same unit word right before '=' and
        # right after the right operand is dropped
        end = p
        if p >= 2 and toks[p - 1].kind == "WORD" and len(toks[p - 1].text) > 1 and \
                b < len(toks) and toks[b].kind == "WORD" and \
                toks[b].text.lower() == toks[p - 1].text.lower() and toks[p - 1].sp and \
                toks[p - 2].kind == "NUM" and toks[b].sp:
            end = p - 1
        a = end
        while a > 0 and toks[a - 1].kind in MATH:
            a -= 1
        left = toks[a:end]
        right = toks[p + 1:b]
        lb = toks[a - 1] if a > 0 else None
        rb = toks[b] if b < len(toks) else None
        reason = None
        # trim unmatched '(' at the very start of the left run / ')' at the end of the right run
        left, r1 = _trim(left, "left")
        right, r2 = _trim(right, "right")
        reason = r1 or r2
        if not left or not right:
            reason = reason or "empty operand"
        if reason is None:
            reason = _boundary_ok(toks, a - 1, "left", right_ends) or \
                _boundary_ok(toks, b, "right")
        if reason is None:
            if left[0].kind == "OP" and left[0].text != "-":
                reason = "left operand starts with an operator"
            elif left[-1].kind == "OP" or right[-1].kind == "OP":
                reason = "operand ends with an operator"
            elif right[0].kind == "OP" and right[0].text != "-":
                reason = "right operand starts with an operator"
            elif left[0].kind == "OP" and lb is not None and lb.kind == "WORD" and not lb.spa:
                reason = "minus glued to word"
        if reason is None and literal_info(left) and literal_info(right) and \
                (a == 0 or toks[a - 1].kind not in ("EQ", "APPROX")) and \
                (b >= len(toks) or toks[b].kind not in ("EQ", "APPROX")):
            # a standalone "10 = -10" is a statement about an equation (a contradiction,
            # a substituted check), not a computation; still counted when it holds
            reason = "standalone literal = literal" if \
                not (set(v for v, _ in literal_info(left)) & set(v for v, _ in literal_info(right))) \
                else None
        out.append((left, right, t, reason, a, b))
    return out


def _trim(run, side):
    depth = 0
    if side == "left":
        # unmatched '(' are those never closed; allow trimming only a prefix of them
        opens = []
        for idx, t in enumerate(run):
            if t.kind == "LP":
                opens.append(idx)
            elif t.kind == "RP":
                if not opens:
                    return run, "unbalanced ')' in left operand"
                opens.pop()
        if not opens:
            return run, None
        if opens != list(range(len(opens))):
            return run, "left operand is inside a larger expression"
        return run[len(opens):], None
    else:
        closes = []
        for idx, t in enumerate(run):
            if t.kind == "LP":
                depth += 1
            elif t.kind == "RP":
                if depth == 0:
                    closes.append(idx)
                else:
                    depth -= 1
        if depth:
            return run, "unbalanced '(' in right operand"
        if not closes:
            return run, None
        if closes != list(range(len(run) - len(closes), len(run))):
            return run, "right operand is inside a larger expression"
        return run[:len(run) - len(closes)], None


def _text(toks):
    out = []
    for t in toks:
        out.append((" " if t.sp and out else "") + t.text)
    return "".join(out)


GSM_CALC_RE = re.compile(r"<<([^<>]*)>>")
STEP_PREFIX_RE = re.compile(r"^\s*Step\s*\d+\s*:\s*", re.I)


def segments(step: str):
    """Split a step into independently checked pieces of text."""
    step = STEP_PREFIX_RE.sub("", step)
    segs = [m.group(1) for m in GSM_CALC_RE.finditer(step)]
    step = GSM_CALC_RE.sub(" ", step)
    segs.insert(0, step)
    return segs


def _plain_x_as_times(toks):
    """In plain text (GSM8K style) '5 x 3' means 5*3; only when both neighbours are numeric and
    the 'x' is spaced like an operator."""
    for i, t in enumerate(toks):
        if t.kind == "WORD" and t.text in ("x", "X") and 0 < i < len(toks) - 1:
            a, b = toks[i - 1], toks[i + 1]
            if a.kind in ("NUM", "RP", "PCT") and b.kind in ("NUM", "LP") and t.sp == t.spa:
                if a.attached:
                    a.attached = False
                toks[i] = Tok("OP", "*", sp=t.sp)
                toks[i].spa = t.spa


def _sentence_words(toks, a, b):
    """Lower-cased words of the sentence around toks[a:b] (sentences end at '.', '?', '!' or
    ';' followed by whitespace, or at a hard separator)."""
    def is_end(t):
        return t.kind == "SEP" and t.text == "\\\\" or \
            (t.text in (".", "?", "!", ";") and t.kind in ("PUNCT", "BAD", "FACT") and t.spa)
    i = a - 1
    while i >= 0 and not is_end(toks[i]):
        i -= 1
    j = b
    while j < len(toks) and not is_end(toks[j]):
        j += 1
    words = {t.text.lower() for t in toks[i + 1:j] if t.kind == "WORD"}
    rels = any(t.kind == "REL" and t.text in NEG_RELS for t in toks[i + 1:j])
    question = j < len(toks) and toks[j].text == "?"
    return words, rels or question


def _running_total(L, right):
    """'5 + 3 = 8 * 2 = 16' written as a running total: the right operand starts with the left
    value and continues with an operator."""
    if len(right) >= 3 and right[0].kind == "NUM" and right[1].kind == "OP" and \
            right[0].val in L:
        return True
    return False


def check_step(step: str):
    """Return dict(checked=[...], flags=[...], skipped=[...]) of equality verdicts."""
    res = {"checked": [], "flags": [], "skipped": []}
    approx_step = bool(APPROX_STEP_RE.search(step))
    for seg in segments(step):
        try:
            toks = tokenize(seg)
        except Skip as e:
            res["skipped"].append(("tokenize", str(e)))
            continue
        _plain_x_as_times(toks)
        for left, right, rel, reason, a, b in find_equalities(toks):
            desc = f"{_text(left)} {'=' if rel.kind == 'EQ' else '≈'} {_text(right)}"
            if reason:
                res["skipped"].append((desc, reason))
                continue
            try:
                L, iL = evaluate(left)
                R, iR = evaluate(right)
            except Skip as e:
                res["skipped"].append((desc, str(e)))
                continue
            approx = rel.kind == "APPROX" or approx_step
            ok = values_agree(L, R, literal_info(left), literal_info(right), approx, iL or iR)
            info = {"eq": desc, "left": sorted(L), "right": sorted(R), "ok": ok}
            if not ok:
                words, rels = _sentence_words(toks, a, b)
                why = None
                if words & NEG_SENTENCE_WORDS or rels or REJECT_STEP_RE.search(step):
                    why = "false equality in a sentence with negation/hypothesis words"
                elif any(t.kind == "PCT" for t in left) != any(t.kind == "PCT" for t in right):
                    why = "percent on one side only ('20% = 30 students' correspondence)"
                elif _running_total(L, right):
                    why = "running-total chain ('5 + 3 = 8 * 2 = 16')"
                if why:
                    res["skipped"].append((desc, why))
                    continue
                res["flags"].append(info)
            res["checked"].append(info)
    return res


def fmt_vals(vs):
    out = []
    for v in vs:
        if v.denominator == 1:
            out.append(str(v.numerator))
        elif v.denominator > 10 ** 12:   # an approximated square root
            out.append(f"~{float(v):.10g}")
        else:
            out.append(f"{v.numerator}/{v.denominator} (~{float(v):.6g})")
    return " | ".join(out)


# ----------------------------------------------------------------------------------------------
# Data sets
# ----------------------------------------------------------------------------------------------
def load(name):
    """Yield (id, steps, label, meta) with label = 0-based first wrong step or -1; meta holds
    whether the final answer is known to be wrong (for label-noise accounting)."""
    if name in ("prm_test", "prm_train"):
        fn = f"{DATA}/prm800k/phase1_{name[4:]}.trajectories.jsonl"
        for line in open(fn):
            r = json.loads(line)
            yield r["id"], r["steps"], r["label"], {}
    elif name == "bbm":
        fn = f"{DATA}/bigbench_mistake/multistep_arithmetic.jsonl"
        for k, line in enumerate(open(fn)):
            r = json.loads(line)
            lab = r["mistake_index"]
            yield f"bbm-{k}", r["steps"], (-1 if lab is None else lab), \
                {"answer_wrong": str(r["answer"]).strip() != str(r["target"]).strip()}
    elif name == "mrgsm8k":
        fn = f"{DATA}/mr_gsm8k/mr_gsm8k_subset.jsonl"
        for line in open(fn):
            r = json.loads(line)
            yield r["uuid"], r["model_output_steps"], r["label"], {}
    else:
        raise SystemExit(f"unknown set {name}")


SET_TITLES = {
    "prm_train": "PRM800K phase-1 TRAIN (rules were tuned on this set)",
    "prm_test": "PRM800K phase-1 test (development set, not tuned on)",
    "bbm": "BIG-Bench-Mistake multistep_arithmetic (used only to fix parsing bugs)",
    "mrgsm8k": "MR-GSM8K subset (not tuned on; all trajectories wrong)",
}


def run_set(name, n_examples=10, quiet=False):
    """Run the checker over a set; return (stats, per-trajectory records)."""
    n_traj = n_err = n_cor = 0
    steps_total = steps_checked = steps_flagged = 0
    eqs_checked = eqs_flagged = 0
    true_flags = loose_flags = false_alarms = 0
    alarms_on_wrong_answer = 0
    hit_err = hit_cor = covered = 0
    early = 0
    alarms = []
    records = []
    seen_alarm = set()
    flagged_texts = set()
    for tid, steps, label, meta in load(name):
        n_traj += 1
        if label == -1:
            n_cor += 1
        else:
            n_err += 1
        first = -1
        status = []          # per step: 'flag', 'ok' (checked, nothing false) or None
        for i, s in enumerate(steps):
            steps_total += 1
            r = check_step(s)
            status.append("flag" if r["flags"] else ("ok" if r["checked"] else None))
            if r["checked"]:
                steps_checked += 1
                eqs_checked += len(r["checked"])
            if r["flags"]:
                steps_flagged += 1
                flagged_texts.add(s)
                eqs_flagged += len(r["flags"])
                if first == -1:
                    first = i
                if label != -1 and i == label:
                    true_flags += 1
                if label != -1 and i >= label:
                    loose_flags += 1
                if label == -1 or i < label:
                    false_alarms += 1
                    if label == -1 and meta.get("answer_wrong"):
                        alarms_on_wrong_answer += 1
                    if s not in seen_alarm:
                        seen_alarm.add(s)
                        alarms.append((tid, i, label, s, r["flags"]))
        records.append({"id": tid, "label": label, "first_flag": first, "status": status})
        if label == -1:
            hit_cor += first == -1
        else:
            hit_err += first == label
            covered += first != -1
            if first != -1 and first < label:
                early += 1
    acc_e = hit_err / n_err if n_err else None
    acc_c = hit_cor / n_cor if n_cor else None
    stats = dict(set=name, trajectories=n_traj, erroneous=n_err, correct=n_cor,
                 steps=steps_total, steps_checked=steps_checked, equalities_checked=eqs_checked,
                 steps_flagged=steps_flagged, equalities_flagged=eqs_flagged,
                 distinct_flagged_steps=len(flagged_texts),
                 true_flags=true_flags, loose_flags=loose_flags, false_alarms=false_alarms,
                 distinct_false_alarm_steps=len(seen_alarm),
                 false_alarms_in_no_mistake_traj_with_wrong_answer=alarms_on_wrong_answer,
                 acc_error=acc_e, acc_correct=acc_c, f1=_f1(acc_e, acc_c),
                 coverage=covered / n_err if n_err else None,
                 traj_flagged_before_label=early)
    if not quiet:
        print_stats(stats)
        print(f"  example false alarms (first {n_examples} distinct step texts):")
        for tid, i, label, s, flags in alarms[:n_examples]:
            print(f"  - {tid} step {i} (label {label}): {s[:300]!r}")
            for f in flags:
                print(f"      {f['eq']}   left={fmt_vals(f['left'])}  right={fmt_vals(f['right'])}")
        print()
    return stats, records


def _f1(a, c):
    if a is None or c is None or a + c == 0:
        return None
    return 2 * a * c / (a + c)


def _score(preds, labels):
    ne = sum(1 for l in labels if l != -1)
    nc = len(labels) - ne
    he = sum(1 for p, l in zip(preds, labels) if l != -1 and p == l)
    hc = sum(1 for p, l in zip(preds, labels) if l == -1 and p == -1)
    ae = he / ne if ne else None
    ac = hc / nc if nc else None
    return ae, ac, _f1(ae, ac)


def combine(name, records, model_rows, tau=0.49):
    """ProcessBench-style numbers of the PRM alone, the checker alone and combinations."""
    labels = [r["label"] for r in records]
    model = [m["first_error"] for m in model_rows]
    check_first = [r["first_flag"] for r in records]

    def mn(a, b):
        c = [x for x in (a, b) if x != -1]
        return min(c) if c else -1

    rules = {
        "PRM alone": model,
        "checker alone": check_first,
        "min(checker first flag, PRM first error)": [mn(a, b) for a, b in zip(check_first, model)],
        "checker first flag if any, else PRM": [a if a != -1 else b
                                                for a, b in zip(check_first, model)],
    }
    # veto: the PRM's first error skips steps the checker verified (checked, all true) -- an
    # experiment; a step with true arithmetic can still be wrong
    veto = []
    for r, m in zip(records, model_rows):
        p = -1
        for i, mu in enumerate(m["step_mean"]):
            if r["status"][i] == "flag":
                p = i
                break
            if mu < tau and r["status"][i] != "ok":
                p = i
                break
        veto.append(p)
    rules["first of: checker flag, PRM<tau on a step not verified"] = veto
    out = []
    for rule, preds in rules.items():
        ae, ac, f1 = _score(preds, labels)
        changed = sum(1 for p, q in zip(preds, model) if p != q)
        gained = sum(1 for p, q, l in zip(preds, model, labels) if p == l and q != l)
        lost = sum(1 for p, q, l in zip(preds, model, labels) if p != l and q == l)
        out.append(dict(rule=rule, acc_error=ae, acc_correct=ac, f1=f1, changed=changed,
                        gained=gained, lost=lost))
    return out


def print_combine(name, rows):
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    print(f"  combination with the PRM (actprm default model, tau 0.49) on {name}:")
    print(f"    {'rule':56s} {'acc(err)':>8s} {'acc(cor)':>8s} {'F1':>6s} {'changed':>7s} "
          f"{'gained':>6s} {'lost':>5s}")
    for r in rows:
        print(f"    {r['rule']:56s} {fmt(r['acc_error']):>8s} {fmt(r['acc_correct']):>8s} "
              f"{fmt(r['f1']):>6s} {r['changed']:7d} {r['gained']:6d} {r['lost']:5d}")
    print()


def _p(x, d):
    return f"{x / d:.3f}" if d else "-"


def print_stats(st):
    print(f"== {SET_TITLES.get(st['set'], st['set'])}")
    print(f"  trajectories {st['trajectories']} (erroneous {st['erroneous']}, correct "
          f"{st['correct']}), steps {st['steps']}")
    fl = st["steps_flagged"]
    print(f"  steps checked {st['steps_checked']} ({_p(st['steps_checked'], st['steps'])}), "
          f"equalities checked {st['equalities_checked']}; steps flagged {fl}")
    print(f"  flag precision: exact first error {st['true_flags']}/{fl} = {_p(st['true_flags'], fl)}"
          f"; at/after first error {st['loose_flags']}/{fl} = {_p(st['loose_flags'], fl)}"
          f"; false alarms {st['false_alarms']}/{fl} = {_p(st['false_alarms'], fl)}")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    print(f"  distinct flagged step texts {st['distinct_flagged_steps']}, distinct false-alarm step "
          f"texts {st['distinct_false_alarm_steps']}; false alarms inside 'no mistake' "
          f"trajectories whose final answer is wrong: "
          f"{st['false_alarms_in_no_mistake_traj_with_wrong_answer']}")
    print(f"  trajectory: acc(error) {fmt(st['acc_error'])}  acc(correct) {fmt(st['acc_correct'])}"
          f"  F1 {fmt(st['f1'])}  coverage {fmt(st['coverage'])}"
          f"  (flagged before the label on {st['traj_flagged_before_label']} erroneous trajectories)")


def selftest():
    cases = [
        ("So 3 * 4 = 13.", True),
        ("So 3 * 4 = 12.", False),
        ("$\\frac{1}{3} = 0.33$", False),
        ("$\\frac{1}{3} = 0.34$", True),
        ("$2^{10} = 1024$", False),
        ("$2^{10} = 1000$", True),
        ("$x = 3 + 4 = 8$", True),
        ("$3x + 4 = 10$", False),
        ("The area is 3 cm * 4 cm = 12 cm^2", False),
        ("He pays $10/hour * 5 hours = $50", False),
        ("Let's calculate C = ((3 * 4 * 5) * (7 - -7 * 4)) = ((3 * 4 * 5) * (7 - 28))", True),
        ("= (-4 + -8) = -12", False),
        ("sell 300 * 3/5 = <<300*3/5=180>>180 chickens", False),
        ("sell 300 * 3/5 = <<300*3/5=190>>190 chickens", True),
        ("So 5 x 3 = 15 apples", False),
        ("So 5 x 3 = 16 apples", True),
        ("$1,000 \\times 3 = 3,000$", False),
        ("$1,000 \\times 3 = 3,001$", True),
        ("$\\sqrt{16} = 4$", False),
        ("$\\sqrt{16} = 5$", True),
        ("$5! = 120$", False),
        ("$20\\% \\cdot 50 = 10$", False),
        ("$10/3 \\approx 3.3$", False),
        ("The ratio 3:4 = 0.75", False),
        ("$f(2) = 5$", False),
        ("$x_1 = 3$", False),
        ("Is 3 + 4 = 8? No.", False),
        ("$2\\frac{1}{2} = 2.5$", False),
        ("$3 \\cdot 4 = 12 \\cdot 1 = 13$", True),
        ("the sum of 3 and 4 + 5 = 12", False),
        ("$\\$1.24 - \\$0.50 = \\$0.74$", False),
        ("$\\$1.24 - \\$0.50 = \\$0.70$", True),
    ]
    bad = 0
    for s, want in cases:
        r = check_step(s)
        got = bool(r["flags"])
        if got != want:
            bad += 1
            print(f"FAIL {s!r}: want flag={want}, got {got}; {r}")
    print(f"selftest: {len(cases) - bad}/{len(cases)} ok")
    return bad == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=["prm_train", "prm_test", "bbm", "mrgsm8k"])
    ap.add_argument("--examples", type=int, default=10)
    ap.add_argument("--step", help="check one step text and explain")
    ap.add_argument("--make-model-preds", nargs="+", metavar="SET=FILE",
                    help="build --model-preds from `actprm sql --format json` exports (id, steps, "
                         "label, first_error, step_mean per row, in data-set order) and exit")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--json", help="write per-set stats to this JSON file")
    ap.add_argument("--preds", help="write per-trajectory first-flag predictions (JSONL) here")
    ap.add_argument("--model-preds", default=os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "model_preds.jsonl"), help="the PRM's per-trajectory first_error and "
                    "step_mean (JSONL with set, index, id); default: model_preds.jsonl here")
    a = ap.parse_args()
    if a.selftest:
        sys.exit(0 if selftest() else 1)
    if a.make_model_preds:
        with open(a.model_preds, "w") as out:
            for arg in a.make_model_preds:
                name, fn = arg.split("=", 1)
                rows = [json.loads(line) for line in open(fn)]
                data = list(load(name))
                if len(rows) != len(data):
                    raise SystemExit(f"{name}: {len(rows)} rows in {fn}, {len(data)} in the data")
                for k, ((tid, steps, label, _), m) in enumerate(zip(data, rows)):
                    if m["steps"] != steps or m["label"] != label:
                        raise SystemExit(f"{name}: row {k} of {fn} does not match the data")
                    out.write(json.dumps({"set": name, "index": k, "id": tid,
                                          "first_error": m["first_error"],
                                          "step_mean": [round(x, 4) for x in m["step_mean"]]})
                              + "\n")
        print(f"wrote {a.model_preds}")
        return
    if a.step is not None:
        r = check_step(a.step)
        for c in r["checked"]:
            print(("OK   " if c["ok"] else "FLAG ") + c["eq"] + f"   [{fmt_vals(c['left'])} vs "
                  f"{fmt_vals(c['right'])}]")
        for d, why in r["skipped"]:
            print(f"skip {d}: {why}")
        sys.exit(1 if r["flags"] else 0)
    model = {}
    if a.model_preds and os.path.exists(a.model_preds):
        for line in open(a.model_preds):
            m = json.loads(line)
            model.setdefault(m["set"], []).append(m)
    all_stats = []
    pf = open(a.preds, "w") if a.preds else None
    for name in a.sets:
        st, records = run_set(name, a.examples)
        if name in model:
            rows = sorted(model[name], key=lambda m: m["index"])
            assert [m["id"] for m in rows] == [r["id"] for r in records], "model preds misaligned"
            st["combination"] = combine(name, records, rows)
            print_combine(name, st["combination"])
        all_stats.append(st)
        if pf:
            for r in records:
                pf.write(json.dumps({"set": name, "id": r["id"], "first_flag": r["first_flag"],
                                     "status": r["status"]}) + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(all_stats, f, indent=1)


if __name__ == "__main__":
    main()
