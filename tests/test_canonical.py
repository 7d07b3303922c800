"""Canonical JSON: one byte sequence per logical flow, and the rules that shape it."""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.canonical import (
    MAX_DEPTH,
    InvalidJSON,
    Rules,
    blob_id,
    canonical_bytes,
    canonicalize,
    format_pointer,
    parse_json,
    parse_pointer,
)

GOLDEN = Path(__file__).parent / "data" / "canonical"
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
keys = st.one_of(text, st.sampled_from(["a", "A", "é", "e\u0301", "😀", "\u2028", "a/b", "~", ""]))
ints = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.integers(-(2**200), 2**200),
    st.sampled_from([2**64, -(2**63) - 1, 10**30, -(10**40)]),
)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


def strictly_equal(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 from True, and -0.0 from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def has_float(doc: Any) -> bool:
    if isinstance(doc, float):
        return True
    if isinstance(doc, dict):
        return any(has_float(v) for v in doc.values())
    if isinstance(doc, list):
        return any(has_float(v) for v in doc)
    return False


def shuffled(doc: Any, rnd: random.Random) -> Any:
    """The same document with every object's keys inserted in a random order."""
    if isinstance(doc, dict):
        items = list(doc.items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(doc, list):
        return [shuffled(v, rnd) for v in doc]
    return doc


def copy(doc: Any) -> Any:
    """A deep copy (canonicalize may modify its argument)."""
    return json.loads(json.dumps(doc))


# --- golden cases -----------------------------------------------------------------------


def golden_cases() -> list[str]:
    return sorted(p.name[: -len(".input.json")] for p in GOLDEN.glob("*.input.json"))


def golden_rules(name: str) -> Rules:
    path = GOLDEN / f"{name}.rules.json"
    if not path.exists():
        return Rules()
    spec = json.loads(path.read_text(encoding="utf-8"))
    return Rules.of(spec.get("ignore", ()), spec.get("sort"))


def test_there_are_golden_cases_each_with_an_expected_output() -> None:
    """Every golden input has its expected canonical file, and there are enough of them."""
    names = golden_cases()
    assert len(names) >= 6
    for name in names:
        assert (GOLDEN / f"{name}.canonical.json").exists(), name


@pytest.mark.parametrize("name", golden_cases())
def test_golden_input_canonicalises_to_the_expected_bytes(name: str) -> None:
    """Each golden input, with its rules, gives exactly the bytes of its canonical file."""
    raw = (GOLDEN / f"{name}.input.json").read_bytes()
    expected = (GOLDEN / f"{name}.canonical.json").read_bytes()
    assert canonical_bytes(raw, golden_rules(name)) == expected


@pytest.mark.parametrize("name", golden_cases())
def test_golden_canonical_file_is_a_fixed_point(name: str) -> None:
    """A canonical file is its own canonical form."""
    expected = (GOLDEN / f"{name}.canonical.json").read_bytes()
    assert canonical_bytes(expected) == expected


# --- properties -------------------------------------------------------------------------


@PROPERTY
@given(json_values)
def test_canonical_form_is_idempotent(doc: Any) -> None:
    """Parsing canonical bytes and canonicalising them again gives the same bytes."""
    once = canonicalize(copy(doc))
    assert canonicalize(parse_json(once)) == once


@PROPERTY
@given(json_values)
def test_parsing_canonical_bytes_gives_back_the_document(doc: Any) -> None:
    """Canonical bytes parse to the very document, big integers exact and ints never floats."""
    assert strictly_equal(parse_json(canonicalize(copy(doc))), doc)


@PROPERTY
@given(json_values)
def test_canonical_bytes_are_utf8_with_unix_line_ends_and_one_final_newline(doc: Any) -> None:
    """Output is UTF-8, uses only LF line ends and ends with exactly one newline."""
    out = canonicalize(copy(doc))
    out.decode("utf-8")
    assert b"\r" not in out
    assert out.endswith(b"\n")
    assert not out.endswith(b"\n\n")


@PROPERTY
@given(json_values)
def test_every_line_is_indented_by_two_spaces_per_level(doc: Any) -> None:
    """Lines start with an even number of spaces, one level deeper than an opening line at most."""
    lines = canonicalize(copy(doc)).decode("utf-8").split("\n")[:-1]
    previous = 0
    for line in lines:
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        assert stripped and indent % 2 == 0, line
        assert indent <= previous + 2, line
        previous = indent


@PROPERTY
@given(json_values.filter(lambda d: not has_float(d)))
def test_layout_matches_the_standard_library_with_indent_2_and_sorted_keys(doc: Any) -> None:
    """Without floats (whose spelling differs), the bytes are json.dumps(indent=2, sort_keys=True)."""
    expected = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert canonicalize(copy(doc)) == expected.encode("utf-8")


@PROPERTY
@given(
    json_values,
    st.randoms(use_true_random=False),
    st.sampled_from([None, 0, 1, 4, "\t"]),
    st.booleans(),
    st.booleans(),
)
def test_key_order_and_whitespace_do_not_change_the_bytes(
    doc: Any, rnd: random.Random, indent: Any, ascii_only: bool, crlf: bool
) -> None:
    """Logically equal texts (key order, indentation, \\u escapes, CRLF) give identical bytes."""
    variant = json.dumps(shuffled(doc, rnd), indent=indent, ensure_ascii=ascii_only, separators=(" , ", " :  "))
    if crlf:
        variant = variant.replace("\n", "\r\n")
    reference = json.dumps(doc)
    assert canonical_bytes(variant.encode("utf-8")) == canonical_bytes(reference.encode("utf-8"))


@PROPERTY
@given(st.dictionaries(text, st.one_of(st.none(), st.booleans(), floats, text), max_size=6))
@example({"a": 1.5e-7, "b": 1e-5, "c": 1e16, "d": -0.0})
def test_a_big_integer_does_not_change_how_the_rest_is_written(doc: dict[str, Any]) -> None:
    """Adding an integer beyond 64 bits changes its own line only, floats keep their spelling."""
    small = canonicalize(copy(dict(doc, zzzz_id=1))).decode("utf-8")
    big = canonicalize(copy(dict(doc, zzzz_id=2**70))).decode("utf-8")
    assert big == small.replace('"zzzz_id": 1', f'"zzzz_id": {2**70}')


@PROPERTY
@given(floats)
def test_a_float_is_written_so_that_it_parses_back_to_the_same_float(value: float) -> None:
    """Every finite float survives a round trip bit for bit, and is written as a float."""
    out = canonicalize(value)
    back = parse_json(out)
    assert type(back) is float
    assert strictly_equal(back, value)


@PROPERTY
@given(st.integers(-(2**300), 2**300))
def test_an_integer_of_any_size_is_written_exactly(value: int) -> None:
    """Integers, even far beyond 64 bits, are written with all their digits."""
    assert canonicalize(value) == f"{value}\n".encode()
    assert canonicalize([value]) == f"[\n  {value}\n]\n".encode()
    back = parse_json(canonicalize([value]))
    assert back == [value] and type(back[0]) is int


# --- number formatting ------------------------------------------------------------------

FLOAT_SPELLINGS = [
    (1.0, "1.0"),
    (-1.0, "-1.0"),
    (0.0, "0.0"),
    (-0.0, "-0.0"),
    (0.1, "0.1"),
    (0.30000000000000004, "0.30000000000000004"),
    (10.5, "10.5"),
    (100.0, "100.0"),
    (2500.0, "2500.0"),
    (123456789.123, "123456789.123"),
    (1e15, "1000000000000000.0"),
    (1e16, "1e+16"),
    (1.2345678901234568e16, "1.2345678901234568e+16"),
    (1e21, "1e+21"),
    (-1.5e300, "-1.5e+300"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (0.0001, "0.0001"),
    (1e-5, "0.00001"),
    (1.5e-5, "0.000015"),
    (1e-6, "1e-6"),
    (1.5e-7, "1.5e-7"),
    (5e-324, "5e-324"),
    (2.0**53, "9007199254740992.0"),
]


@pytest.mark.parametrize(("value", "spelling"), FLOAT_SPELLINGS, ids=[s for _, s in FLOAT_SPELLINGS])
def test_floats_have_one_pinned_spelling(value: float, spelling: str) -> None:
    """A float is spelled the same alone, in an object, and next to a big integer."""
    assert canonicalize(value) == f"{spelling}\n".encode()
    assert canonicalize({"v": value}) == f'{{\n  "v": {spelling}\n}}\n'.encode()
    with_big = canonicalize({"big": 2**64, "v": value})
    assert with_big == f'{{\n  "big": {2**64},\n  "v": {spelling}\n}}\n'.encode()


@pytest.mark.parametrize(
    ("text", "spelling"),
    [("1", "1"), ("-0", "0"), ("1E16", "1e+16"), ("1e+16", "1e+16"), ("2.5E+3", "2500.0"), ("1e0", "1.0"), ("1e-400", "0.0")],
)
def test_number_text_is_respelled_canonically(text: str, spelling: str) -> None:
    """Equivalent spellings of a number in the input converge on one canonical spelling."""
    assert canonical_bytes(text.encode()) == f"{spelling}\n".encode()


def test_integer_and_float_stay_distinct() -> None:
    """1 and 1.0 are different documents: an integer is never written as a float or back."""
    assert canonical_bytes(b"[1, 1.0]") == b"[\n  1,\n  1.0\n]\n"


@pytest.mark.parametrize(
    "value", [2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**19, 10**100, -(10**100)], ids=str
)
def test_integers_at_and_beyond_64_bits_round_trip_exactly(value: int) -> None:
    """Integers around the 64-bit limits keep every digit through parse and canonicalise."""
    raw = f'{{"n": {value}, "f": 0.5}}'.encode()
    out = canonical_bytes(raw)
    assert out == f'{{\n  "f": 0.5,\n  "n": {value}\n}}\n'.encode()
    assert parse_json(out)["n"] == value


def test_a_long_digit_run_inside_a_string_changes_nothing() -> None:
    """A 19+ digit run in a string (which picks the other parser) gives the usual bytes."""
    plain = canonical_bytes(b'{"id": "12345", "x": 1e-5, "y": [1.5e-7, {}]}')
    digits = canonical_bytes(b'{"id": "1234567890123456789012", "x": 1e-5, "y": [1.5e-7, {}]}')
    assert digits == plain.replace(b'"12345"', b'"1234567890123456789012"')


# --- strings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("\x00", r'"\u0000"'),
        ("\x1f", r'"\u001f"'),
        ("\b\f\n\r\t", r'"\b\f\n\r\t"'),
        ('"\\', r'"\"\\"'),
        ("/", '"/"'),
        ("\x7f", '"\x7f"'),
        ("é日本😀", '"é日本😀"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("\ufeff", '"\ufeff"'),
    ],
    ids=["nul", "unit-separator", "short-escapes", "quote-backslash", "slash", "del", "non-ascii", "line-separators", "bom"],
)
def test_strings_escape_only_what_json_requires(value: str, written: str) -> None:
    """Control characters, quotes and backslashes are escaped; all other text is raw UTF-8."""
    assert canonicalize(value) == (written + "\n").encode("utf-8")


def test_escaped_and_raw_non_ascii_give_the_same_bytes() -> None:
    """\\u escapes (surrogate pairs included) and raw UTF-8 of the same text are one document."""
    assert canonical_bytes(b'"\\u00e9\\ud83d\\ude00"') == canonical_bytes('"é😀"'.encode())


def test_nfc_and_nfd_text_stay_different() -> None:
    """Canonical JSON does not normalise Unicode: é and e + combining acute stay distinct."""
    assert canonical_bytes('"\u00e9"'.encode()) != canonical_bytes('"e\u0301"'.encode())


def test_keys_are_sorted_by_code_point() -> None:
    """Keys sort by Unicode code point, upper case before lower, astral characters last."""
    out = canonicalize({"😀": 1, "\uffff": 1, "é": 1, "b": 1, "B": 1, "a": 1, "": 1, "10": 1, "9": 1})
    order = [line.split('"')[1] for line in out.decode().splitlines()[1:-1]]
    assert order == ["", "10", "9", "B", "a", "b", "é", "\uffff", "😀"]


# --- empty and scalar documents ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{}", b"{}\n"),
        (b"[]", b"[]\n"),
        (b" { } ", b"{}\n"),
        (b'{"a": {}, "b": []}', b'{\n  "a": {},\n  "b": []\n}\n'),
        (b"null", b"null\n"),
        (b"true", b"true\n"),
        (b'"x"', b'"x"\n'),
    ],
)
def test_empty_containers_and_scalars_are_written_compactly(raw: bytes, expected: bytes) -> None:
    """Empty objects and arrays are written as {} and [], scalars on one line."""
    assert canonical_bytes(raw) == expected


# --- invalid input ----------------------------------------------------------------------

LONG = b"1234567890123456789012"  # a 19+ digit run sends parsing to the standard library

INVALID = [
    ("empty", b"", "empty"),
    ("whitespace-only", b"  \n", "empty"),
    ("trailing-comma", b'{"a": 1,}', "trailing comma"),
    ("trailing-comma-long-digits", b'{"a": ' + LONG + b",}", "line 1"),
    ("missing-colon", b'{"a" 1}', "expected ':'"),
    ("unclosed", b"[1, 2", "end of data"),
    ("trailing-content", b"{} x", "after document"),
    ("single-quotes", b"{'a': 1}", "invalid JSON"),
    ("leading-zero", b"01", "leading zero"),
    ("raw-control-char", b'"a\x01b"', "control character"),
    ("byte-order-mark", b"\xef\xbb\xbf{}", "BOM"),
    ("not-utf8", b'"\xff"', "UTF-8"),
    ("not-utf8-long-digits", b'["\xff", ' + LONG + b"]", "not UTF-8"),
    ("latin1", '{"café": 1}'.encode("latin-1"), "UTF-8"),
    ("nan", b"NaN", "invalid JSON"),
    ("nan-long-digits", b"[NaN, " + LONG + b"]", "NaN is not a JSON number"),
    ("infinity", b"Infinity", "invalid JSON"),
    ("minus-infinity", b"[-Infinity]", "invalid JSON"),
    ("infinity-long-digits", b"[Infinity, " + LONG + b"]", "Infinity is not a JSON number"),
    ("huge-exponent", b"1e400", "infinity"),
    ("huge-negative", b"[-1e400]", "infinity"),
    ("huge-exponent-long-digits", b"[1e400, " + LONG + b"]", "out of range"),
    ("huge-exponent-long-string", b'["' + LONG + b'", 1e400]', "out of range"),
    ("huge-exponent-long-fraction", b"[0.1234567890123456789, 1E400]", "out of range"),
    ("lone-high-surrogate", b'"\\ud800"', "surrogate"),
    ("lone-low-surrogate", b'"\\udc00"', "surrogate"),
    ("reversed-pair", b'"\\ude00\\ud83d"', "surrogate"),
    ("lone-surrogate-long-digits", b'["\\ud800", ' + LONG + b"]", "surrogate"),
    ("lone-surrogate-key-long-digits", b'{"\\udfff": ' + LONG + b"}", "surrogate"),
    ("over-4300-digits", b"1" * 5000, "invalid JSON"),
]


@pytest.mark.parametrize(("raw", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_input_raises_invalid_json_with_a_clear_message(raw: bytes, fragment: str) -> None:
    """Bytes that are not exactly representable JSON raise InvalidJSON saying why."""
    with pytest.raises(InvalidJSON) as info:
        parse_json(raw)
    assert fragment.lower() in str(info.value).lower()


@pytest.mark.parametrize("number", [b"1", LONG], ids=["orjson", "stdlib"])
def test_syntax_errors_report_line_and_column(number: bytes) -> None:
    """A syntax error names the line and the column where it was found."""
    raw = b'{\n  "a": ' + number + b',\n  "b": x\n}'
    with pytest.raises(InvalidJSON, match=r"line 3,? column 8\b"):
        parse_json(raw)


def test_invalid_json_is_a_value_error() -> None:
    """Callers that catch ValueError also catch InvalidJSON."""
    assert issubclass(InvalidJSON, ValueError)


def nested(depth: int, inner: bytes = b"1", kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


@pytest.mark.parametrize("inner", [b"1", LONG], ids=["orjson", "stdlib"])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_up_to_max_depth_is_accepted(inner: bytes, kind: str) -> None:
    """A document exactly MAX_DEPTH levels deep parses and canonicalises."""
    doc = parse_json(nested(MAX_DEPTH, inner, kind))
    out = canonicalize(doc)
    assert out.count(b"\n") > MAX_DEPTH


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1025, 10_000, 100_000])
@pytest.mark.parametrize("inner", [b"1", LONG], ids=["orjson", "stdlib"])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_deeper_than_max_depth_raises_invalid_json_quickly(depth: int, inner: bytes, kind: str) -> None:
    """Over-deep nesting is refused as InvalidJSON (never RecursionError), in well under a second."""
    started = time.perf_counter()
    with pytest.raises(InvalidJSON, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(nested(depth, inner, kind))
    assert time.perf_counter() - started < 1.0


def test_unclosed_deep_nesting_raises_invalid_json() -> None:
    """Ten thousand opening brackets and no closing one are refused as InvalidJSON."""
    with pytest.raises(InvalidJSON):
        parse_json(b"[" * 10_000)


@pytest.mark.parametrize(
    "doc",
    [{"x": "\ud800", "n": 2**70}, {1: 2**70}, {"x": 10**5000}],
    ids=["lone-surrogate", "non-string-key", "too-many-digits"],
)
def test_documents_that_cannot_be_written_raise_invalid_json(doc: Any) -> None:
    """canonicalize refuses a Python document that has no exact JSON text, as InvalidJSON."""
    with pytest.raises(InvalidJSON, match="cannot serialise"):
        canonicalize(doc)


# --- blob ids ---------------------------------------------------------------------------

BLOB_SAMPLES = [
    b"",
    b"{}\n",
    canonicalize({"name": "orders", "version": "1.0", "big": 2**80}),
    canonicalize({"é": "日本😀\u2028", "f": [0.1, -0.0]}),
    bytes(range(256)),
]


@pytest.mark.parametrize("data", BLOB_SAMPLES, ids=[f"sample{i}" for i in range(len(BLOB_SAMPLES))])
def test_blob_id_equals_git_hash_object(data: bytes) -> None:
    """blob_id gives the id the git CLI computes with `git hash-object --stdin`."""
    proc = subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True, timeout=30)
    assert blob_id(data) == proc.stdout.decode().strip()


def test_blob_id_of_the_empty_blob_is_gits_well_known_id() -> None:
    """The empty blob has git's well-known id."""
    assert blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


@PROPERTY
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda d: canonicalize(copy(d)))))
def test_blob_id_equals_pygit2_hash(data: bytes) -> None:
    """blob_id agrees with libgit2's blob hashing on arbitrary bytes."""
    assert blob_id(data) == str(pygit2.hash(data))


@PROPERTY
@given(json_values, st.randoms(use_true_random=False))
def test_equal_documents_have_equal_blob_ids(doc: Any, rnd: random.Random) -> None:
    """Two spellings of one document get the same blob id, which is what the reconciler compares."""
    a = canonical_bytes(json.dumps(doc).encode())
    b = canonical_bytes(json.dumps(shuffled(doc, rnd), indent=3).encode())
    assert blob_id(a) == blob_id(b)


# --- pointers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pointer", "segments"),
    [
        ("", ()),
        ("/", ("",)),
        ("/a", ("a",)),
        ("/a/0/b", ("a", "0", "b")),
        ("/a~1b", ("a/b",)),
        ("/m~0n", ("m~n",)),
        ("/~01", ("~1",)),
        ("/~10", ("/0",)),
        ("/*", ("*",)),
        ("//", ("", "")),
    ],
)
def test_pointers_unescape_tilde_sequences_per_rfc_6901(pointer: str, segments: tuple[str, ...]) -> None:
    """~1 becomes / and ~0 becomes ~, decoded in that order so ~01 is the key ~1."""
    assert parse_pointer(pointer) == segments


@pytest.mark.parametrize("pointer", ["a", "a/b", "*", "~1"])
def test_a_pointer_not_starting_with_a_slash_is_refused(pointer: str) -> None:
    """A non-empty pointer must start with '/'."""
    with pytest.raises(ValueError, match="must be empty or start with '/'"):
        parse_pointer(pointer)


@PROPERTY
@given(st.lists(text, max_size=5))
def test_format_pointer_is_the_inverse_of_parse_pointer(segments: list[str]) -> None:
    """Formatting segments and parsing the pointer back gives the same segments."""
    assert parse_pointer(format_pointer(segments)) == tuple(segments)


def test_format_pointer_accepts_array_indices() -> None:
    """Integer segments are written as decimal indices."""
    assert format_pointer(["steps", 0, "a/b~"]) == "/steps/0/a~1b~0"


# --- ignore rules -----------------------------------------------------------------------


def apply(doc: Any, ignore: tuple[str, ...] = (), sort: dict[str, str] | None = None) -> Any:
    return json.loads(canonicalize(copy(doc), Rules.of(ignore, sort)))


def test_ignore_removes_a_top_level_field() -> None:
    """An ignored field is absent from the canonical form."""
    assert apply({"name": "x", "exportedAt": "now"}, ["/exportedAt"]) == {"name": "x"}


def test_ignore_unescapes_slash_and_tilde_in_keys() -> None:
    """Keys containing / and ~ are addressed with ~1 and ~0."""
    doc = {"a/b": 1, "m~n": 2, "~1": 3, "keep": 4}
    assert apply(doc, ["/a~1b", "/m~0n", "/~01"]) == {"keep": 4}


def test_ignore_star_matches_every_object_key() -> None:
    """A * segment on an object reaches the value under every key."""
    doc = {"nodes": {"n1": {"cache": 1, "id": 1}, "n2": {"cache": 2, "id": 2}, "n3": {"id": 3}}}
    assert apply(doc, ["/nodes/*/cache"]) == {"nodes": {"n1": {"id": 1}, "n2": {"id": 2}, "n3": {"id": 3}}}


def test_ignore_star_matches_every_array_element() -> None:
    """A * segment on an array reaches every element."""
    doc = {"steps": [{"id": 1, "pos": 1}, {"id": 2, "pos": 2}, {"id": 3}]}
    assert apply(doc, ["/steps/*/pos"]) == {"steps": [{"id": 1}, {"id": 2}, {"id": 3}]}


def test_ignore_stars_nest_over_arrays_and_objects() -> None:
    """Several * segments combine, crossing arrays and objects alike."""
    doc = {"g": [{"a": {"t": 1, "k": 1}, "b": {"t": 2}}, {"c": {"t": 3, "k": 3}}]}
    assert apply(doc, ["/g/*/*/t"]) == {"g": [{"a": {"k": 1}, "b": {}}, {"c": {"k": 3}}]}


def test_a_final_star_empties_the_container() -> None:
    """A pointer ending in * removes every member of the object or array it reaches."""
    assert apply({"tags": ["a", "b"], "meta": {"x": 1}}, ["/tags/*", "/meta/*"]) == {"tags": [], "meta": {}}


def test_ignore_by_index_removes_that_element() -> None:
    """A numeric segment on an array removes the element at that index."""
    assert apply({"xs": ["a", "b", "c"]}, ["/xs/1"]) == {"xs": ["a", "c"]}


def test_a_star_key_in_an_object_is_the_wildcard_not_the_literal_key() -> None:
    """'*' always means any key, so a pointer cannot single out a key literally named '*'."""
    assert apply({"*": 1, "a": 2}, ["/*"]) == {}


@pytest.mark.parametrize(
    "pointer",
    ["/absent", "/steps/99", "/steps/-", "/steps/first", "/steps/²", "/steps/١", "/name/deeper", "/steps/0/x/y", "/meta/*/z", ""],
)
def test_ignoring_something_absent_is_a_no_op(pointer: str) -> None:
    """A pointer that matches nothing (or the root) leaves the document unchanged, without error."""
    doc = {"name": "x", "steps": [{"id": 1}, {"id": 2}], "meta": {"a": 1}}
    assert apply(doc, [pointer]) == doc


def test_ignored_fields_do_not_affect_the_blob_id() -> None:
    """Flows that differ only in ignored fields get identical bytes."""
    rules = Rules.of(["/exportedAt", "/steps/*/runtime"])
    a = canonical_bytes(b'{"n": 1, "exportedAt": "mon", "steps": [{"id": 1, "runtime": 5}]}', rules)
    b = canonical_bytes(b'{"exportedAt": "tue", "steps": [{"runtime": 9, "id": 1}], "n": 1}', rules)
    assert a == b


# --- sort rules -------------------------------------------------------------------------


def test_sort_orders_an_array_by_a_key_inside_each_element() -> None:
    """An array is ordered by the value at the key pointer in each element."""
    doc = {"steps": [{"id": "c"}, {"id": "a"}, {"id": "b"}]}
    assert apply(doc, sort={"/steps": "/id"}) == {"steps": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}


def test_sort_key_pointer_can_reach_nested_fields() -> None:
    """The key pointer may go several levels into the element."""
    doc = {"w": [{"m": {"r": "b"}}, {"m": {"r": "a"}}]}
    assert apply(doc, sort={"/w": "/m/r"}) == {"w": [{"m": {"r": "a"}}, {"m": {"r": "b"}}]}


def test_sort_by_the_empty_pointer_orders_by_the_element_itself() -> None:
    """"" as key pointer sorts by each element, strings by code point."""
    assert apply({"tags": ["b", "a", "B", "é"]}, sort={"/tags": ""}) == {"tags": ["B", "a", "b", "é"]}


def test_sort_array_pointer_may_use_a_star() -> None:
    """A * in the array pointer sorts every matching array."""
    doc = {"groups": [{"m": ["b", "a"]}, {"m": ["d", "c"]}]}
    assert apply(doc, sort={"/groups/*/m": ""}) == {"groups": [{"m": ["a", "b"]}, {"m": ["c", "d"]}]}


def test_elements_without_a_scalar_key_go_last() -> None:
    """Elements lacking the key (or holding an object there) follow the keyed ones."""
    doc = {"s": [{"x": 1}, {"id": "b"}, {"id": {"nested": 1}}, {"id": "a"}]}
    out = apply(doc, sort={"/s": "/id"})
    assert out["s"][:2] == [{"id": "a"}, {"id": "b"}]
    assert sorted(map(json.dumps, out["s"][2:])) == sorted(map(json.dumps, [{"x": 1}, {"id": {"nested": 1}}]))


def test_numeric_sort_keys_compare_as_their_json_text() -> None:
    """Numbers are compared as JSON text, so 10 sorts before 9 (pinned, not numeric order)."""
    assert apply({"s": [{"n": 9}, {"n": 10}]}, sort={"/s": "/n"}) == {"s": [{"n": 10}, {"n": 9}]}


def test_sort_of_something_that_is_not_an_array_is_a_no_op() -> None:
    """A sort pointer that reaches an object, a scalar or nothing changes nothing."""
    doc = {"o": {"b": 1, "a": 2}, "s": "text", "keep": ["c", "b", "a"]}
    assert apply(doc, sort={"/o": "", "/s": "", "/missing": "/id"}) == doc


@PROPERTY
@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["a", "b", 1, "1", True, "true", None, "null"])},
            optional={"id": st.integers(0, 3), "cfg": st.dictionaries(st.sampled_from("xy"), st.integers(0, 2))},
        ),
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_sorted_arrays_give_the_same_bytes_in_any_input_order(items: list[Any], rnd: random.Random) -> None:
    """Elements with equal sort keys (or keys like 1 and "1") end in one order whatever the input order."""
    rules = Rules.of(sort={"/steps": "/type"})
    permuted = list(items)
    rnd.shuffle(permuted)
    assert canonicalize(copy({"steps": items}), rules) == canonicalize(copy({"steps": permuted}), rules)


@PROPERTY
@given(st.lists(st.lists(st.integers(0, 2), max_size=3), max_size=5), st.randoms(use_true_random=False))
def test_nested_sorted_arrays_give_the_same_bytes_in_any_input_order(inner: list[list[int]], rnd: random.Random) -> None:
    """Outer elements that tie on their key are ordered after their inner arrays are sorted."""
    rules = Rules.of(sort={"/g": "/k", "/g/*/m": ""})
    doc = {"g": [{"k": "same", "m": m} for m in inner]}
    scrambled = {"g": [{"k": "same", "m": rnd.sample(m, len(m))} for m in rnd.sample(inner, len(inner))]}
    assert canonicalize(copy(doc), rules) == canonicalize(copy(scrambled), rules)


def test_ignore_is_applied_before_sort() -> None:
    """Fields removed by ignore rules play no part in ordering."""
    rules = Rules.of(["/s/*/volatile"], {"/s": ""})
    a = canonicalize({"s": [{"id": 1, "volatile": 9}, {"id": 2, "volatile": 0}]}, rules)
    b = canonicalize({"s": [{"id": 2, "volatile": 5}, {"id": 1, "volatile": 3}]}, rules)
    assert a == b


def test_rules_of_does_not_depend_on_the_order_of_the_sort_mapping() -> None:
    """Rules built from the same mapping in another order are equal and hash alike."""
    a = Rules.of(["/x"], {"/b": "", "/a": "/id"})
    b = Rules.of(["/x"], {"/a": "/id", "/b": ""})
    assert a == b and hash(a) == hash(b)


def test_rules_with_an_invalid_pointer_are_refused_when_built() -> None:
    """A malformed pointer in the rules fails at construction, not at first use."""
    with pytest.raises(ValueError):
        Rules.of(["exportedAt"])
    with pytest.raises(ValueError):
        Rules.of(sort={"/steps": "id"})


@PROPERTY
@given(json_values)
@example({"a": [1, 2], "b": {"c": [{"id": 2, "w": 0}, {"id": 1}]}, "d": [[2], [1, {"v": 1}]]})
def test_rules_output_is_still_canonical(doc: Any) -> None:
    """Output produced under rules is a fixed point of canonicalisation with the same rules."""
    rules = Rules.of(["/a/*", "/*/v", "/b/*/*/w"], {"/*": "", "/b/*": "/id"})
    out = canonicalize(copy(doc), rules)
    assert canonical_bytes(out, rules) == out


def test_already_canonical_is_true_exactly_when_canonicalising_gives_the_bytes() -> None:
    """1, 1.0 and true are told apart, key order is not a difference, a document the rules would still
    change is not canonical, and the document is left as it was."""
    from reconciler.canonical import Rules, already_canonical, canonicalize

    rules = Rules.of(["/skip"], {"/nodes": "/id"})
    doc = {"name": "a", "nodes": [{"id": "b", "v": 1}, {"id": "a", "v": 1.5}], "skip": 1}
    data = canonicalize(json.loads(json.dumps(doc)), rules)
    same = {"nodes": [{"v": 1.5, "id": "a"}, {"id": "b", "v": 1}], "name": "a"}  # other key order
    assert already_canonical(same, data) and canonicalize(json.loads(json.dumps(same)), rules) == data
    for other in ({"nodes": [{"id": "a", "v": 1.5}, {"id": "b", "v": 1.0}], "name": "a"},
                  {"nodes": [{"id": "a", "v": 1.5}, {"id": "b", "v": True}], "name": "a"},
                  {"nodes": [{"id": "b", "v": 1}, {"id": "a", "v": 1.5}], "name": "a"},  # not sorted yet
                  {"nodes": [{"id": "a", "v": 1.5}, {"id": "b", "v": 1}], "name": "a", "skip": 1}):  # not ignored yet
        assert not already_canonical(other, data)
    big = {"n": 2 ** 70}
    assert already_canonical(big, canonicalize({"n": 2 ** 70})) and big == {"n": 2 ** 70}
