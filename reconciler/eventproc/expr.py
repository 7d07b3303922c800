"""Just enough of Flink SQL's lexical structure to find field references (pure).

An expression (a filter's condition, a transform's output, a join condition) is
split into tokens: identifiers, backtick-quoted names, string literals, numbers,
operators, parentheses and ``${...}`` placeholders. A *field reference* is

- a backtick-quoted name, or an identifier that is not a SQL keyword, type or
  unit name and is not followed by ``(`` (a function call);
- ``q.name`` (either part quoted or not): ``name`` qualified by ``q``, which
  only a join's aliases can be.

This is conservative on purpose: a word we take for a keyword is never
reported, so a field whose name is a keyword must be written with backticks
(Flink needs that for reserved words anyway). Refused outright, because the
renderer embeds the text in a larger statement: ``;``, comments, unterminated
quotes, unbalanced parentheses, double quotes, and sub-queries (``SELECT``);
window functions (``OVER``) too. Whatever passes is still checked by Flink's
planner when the rendered SQL is planned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Token", "Ref", "ExprError", "tokenize", "references", "check_query", "KEYWORDS"]

# Keywords, type names, units and niladic functions that may stand in an expression
# without being a field: a superset on purpose (see the module docstring).
KEYWORDS = frozenset("""
AND OR NOT NULL TRUE FALSE UNKNOWN IS IN BETWEEN SYMMETRIC ASYMMETRIC LIKE SIMILAR ESCAPE TO CASE WHEN THEN
ELSE END AS CAST TRY_CAST DISTINCT ALL ANY SOME EXISTS INTERVAL FROM FOR BOTH LEADING TRAILING PLACING
RETURNING ON ERROR EMPTY DEFAULT WITH WITHOUT LOCAL TIME ZONE VALUE KEY ARRAY MAP MULTISET ROW RAW
CHAR CHARACTER VARCHAR STRING BOOLEAN BINARY VARBINARY BYTES DECIMAL DEC NUMERIC TINYINT SMALLINT INT
INTEGER BIGINT FLOAT REAL DOUBLE PRECISION DATE TIMESTAMP TIMESTAMP_LTZ YEAR YEARS QUARTER MONTH MONTHS WEEK
DAY DAYS HOUR HOURS MINUTE MINUTES SECOND SECONDS MILLISECOND MICROSECOND NANOSECOND DOW DOY EPOCH
ISODOW ISOYEAR CENTURY DECADE MILLENNIUM CURRENT_TIMESTAMP CURRENT_DATE CURRENT_TIME LOCALTIMESTAMP
LOCALTIME CURRENT_ROW_TIMESTAMP
""".split())
# Words that would turn an expression into something the renderer cannot embed.
_REFUSED = {"SELECT": "a sub-query (SELECT) is not allowed in an expression; use a sql node",
            "OVER": "a window function (OVER) is not allowed in an expression; use an aggregate or sql node"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<placeholder>\$\{[^}]*\})
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>`(?:[^`]|``)*`)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[^\W\d]\w*)
  | (?P<op><>|<=|>=|!=|\|\||[-+*/%=<>,.()\[\]:])
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str  # ws is dropped; placeholder, string, quoted, number, ident, op
    text: str
    offset: int

    @property
    def name(self) -> str:
        """The identifier a ``quoted`` or ``ident`` token names."""
        return self.text[1:-1].replace("``", "`") if self.kind == "quoted" else self.text


@dataclass(frozen=True)
class Ref:
    """A field reference: ``name``, or ``qualifier.name``."""

    name: str
    qualifier: str = ""
    offset: int = 0

    def __str__(self) -> str:
        return f"{self.qualifier}.{self.name}" if self.qualifier else self.name


class ExprError(ValueError):
    """Text the renderer cannot embed safely; the message says what to change."""


def tokenize(text: str) -> list[Token]:
    """The tokens of an expression; raises :class:`ExprError` for what cannot be embedded."""
    tokens: list[Token] = []
    pos, depth = 0, 0
    while pos < len(text):
        if text.startswith("--", pos) or text.startswith("/*", pos):
            raise ExprError("comments are not allowed in an expression")
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == ";":
                raise ExprError("';' is not allowed in an expression (it would end the statement)")
            if ch in "'`":
                raise ExprError(f"unterminated {'string' if ch == chr(39) else 'quoted name'} starting at offset {pos}")
            if ch == '"':
                raise ExprError("double quotes are not Flink SQL: write 'text' for a string, `name` for a field")
            if text.startswith("${", pos):
                raise ExprError(f"unterminated placeholder at offset {pos}")
            raise ExprError(f"unexpected character {ch!r} at offset {pos}")
        kind = m.lastgroup or ""
        pos = m.end()
        if kind == "ws":
            continue
        tok = Token(kind, m.group(), m.start())
        if kind == "op" and tok.text == "(":
            depth += 1
        elif kind == "op" and tok.text == ")":
            depth -= 1
            if depth < 0:
                raise ExprError(f"unbalanced ')' at offset {tok.offset}")
        elif kind == "ident" and tok.text.upper() in _REFUSED:
            raise ExprError(_REFUSED[tok.text.upper()])
        tokens.append(tok)
    if depth:
        raise ExprError("unbalanced '(': a parenthesis is not closed")
    _check_type_words(tokens)
    return tokens


# Type names are keywords, not values: outside CAST(... AS type) they end up as a parse error.
_TYPE_WORDS = frozenset("CHAR CHARACTER VARCHAR STRING BOOLEAN BINARY VARBINARY BYTES DECIMAL DEC NUMERIC TINYINT "
                        "SMALLINT INT INTEGER BIGINT FLOAT REAL DOUBLE TIMESTAMP_LTZ MULTISET RAW".split())
_LITERAL_TYPES = frozenset({"DATE", "TIME", "TIMESTAMP"})  # DATE '2026-01-01' is a value
_CONSTRUCTORS = frozenset({"ARRAY", "MAP", "ROW"})  # ARRAY[1, 2] and ROW(a, b) are values


def _check_type_words(tokens: list[Token]) -> None:
    depth, type_depth = 0, -1  # type_depth >= 0: inside the type of an AS/RETURNING until its ')'
    for i, tok in enumerate(tokens):
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
            if depth < type_depth:
                type_depth = -1
        if tok.kind != "ident" or type_depth >= 0:
            continue
        word = tok.text.upper()
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if word in ("AS", "RETURNING"):
            type_depth = depth
        elif word in _TYPE_WORDS or \
                (word in _LITERAL_TYPES and not (nxt is not None and nxt.kind == "string")) or \
                (word in _CONSTRUCTORS and not (nxt is not None and nxt.text in "[(")):
            raise ExprError(f"{tok.text!r} is a type name, not a value; a field of that name is written "
                            f"`{tok.text}`")


def references(tokens: list[Token]) -> list[Ref]:
    """The field references among ``tokens``, in order."""
    refs: list[Ref] = []
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else None
        after_dot = i > 0 and tokens[i - 1].text == "."
        if tok.kind in ("ident", "quoted") and not after_dot:
            if nxt is not None and nxt.text == "." and i + 2 < n and tokens[i + 2].kind in ("ident", "quoted"):
                refs.append(Ref(tokens[i + 2].name, tok.name, tok.offset))
                i += 3
                continue
            if tok.kind == "quoted" or (tok.text.upper() not in KEYWORDS and not (nxt is not None and nxt.text == "(")):
                refs.append(Ref(tok.name, "", tok.offset))
        i += 1
    return refs


_QUERY = re.compile(r"""
    (?P<ws>\s+) | (?P<line>--[^\n]*(?:\n|$)) | (?P<block>/\*.*?\*/) | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>`(?:[^`]|``)*`) | (?P<dquoted>"(?:[^"]|"")*") | (?P<open>\() | (?P<close>\)) | (?P<semi>;)
  | (?P<word>\w+) | (?P<bad>['`"]|/\*) | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def check_query(text: str) -> None:
    """A custom query must be one SELECT (or WITH) that can be wrapped in parentheses."""
    depth, first = 0, ""
    pos = 0
    while pos < len(text):
        m = _QUERY.match(text, pos)
        assert m is not None  # (?P<other>.) matches any character
        kind, pos = m.lastgroup, m.end()
        if kind == "bad":  # a quote or comment that the complete forms above did not match
            what = {"'": "string", "`": "quoted name", '"': "quoted text", "/": "comment"}[m.group()[0]]
            raise ExprError(f"unterminated {what} starting at offset {m.start()}")
        if kind == "semi":
            raise ExprError("';' is not allowed: the query must be a single SELECT")
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
            if depth < 0:
                raise ExprError(f"unbalanced ')' at offset {m.start()}")
        elif kind == "word" and not first:
            first = m.group().upper()
        elif kind in ("string", "quoted", "dquoted", "other") and not first:
            first = "?"
    if depth:
        raise ExprError("unbalanced '(': a parenthesis is not closed")
    if first not in ("SELECT", "WITH"):
        raise ExprError("the query must start with SELECT or WITH")
