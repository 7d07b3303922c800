"""Flow names and versions as path segments: reversible, traversal-proof, case-safe."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from reconciler.names import (
    MAX_SEGMENT,
    InvalidName,
    case_collisions,
    decode,
    encode,
    flow_path,
    parse_flow_path,
)

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PLAIN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
valid_chars = st.characters(exclude_categories=("Cs",))
# At most 12 ASCII characters per character (4 UTF-8 bytes as %HH), so 19 characters
# always fit in MAX_SEGMENT; mix in the characters that matter most.
interesting = st.sampled_from(list("aZ.-_~^%/\\ \x00é😀") + ["\u0430", "\u0301", "\u2028", "\ufeff", "\u212a"])
short_names = st.text(st.one_of(valid_chars, interesting), min_size=1, max_size=19)
plain_names = st.text(st.sampled_from(PLAIN_CHARS), min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))
any_names = st.text(st.one_of(valid_chars, interesting), min_size=1, max_size=300)


def expected_length(name: str) -> int:
    """Length of the segment as the module docstring describes it."""
    if name not in (".", "..") and all(c in PLAIN_CHARS for c in name):
        return len(name)
    literal = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
    return 1 + sum(1 if c in literal else 2 if "A" <= c <= "Z" else 3 * len(c.encode("utf-8")) for c in name)


# --- exact encodings --------------------------------------------------------------------

ENCODINGS = [
    ("orders", "orders"),
    ("Orders", "Orders"),
    ("orders-v2_final.1", "orders-v2_final.1"),
    ("1.0", "1.0"),
    ("...", "..."),
    (".hidden", ".hidden"),
    ("my flow", "~my%20flow"),
    ("Orders EU", "~^orders%20^e^u"),
    ("a/b", "~a%2Fb"),
    ("a\\b", "~a%5Cb"),
    ("\x00", "~%00"),
    (".", "~."),
    ("..", "~.."),
    ("../etc", "~..%2Fetc"),
    ("~", "~%7E"),
    ("~abc", "~%7Eabc"),
    ("^", "~%5E"),
    ("%", "~%25"),
    ("%2F", "~%252^f"),
    ("é", "~%C3%A9"),
    ("e\u0301", "~e%CC%81"),
    ("🚀", "~%F0%9F%9A%80"),
    ("\u0430", "~%D0%B0"),
    ("Straße", "~^stra%C3%9Fe"),
    ("\u212a", "~%E2%84%AA"),
]


@pytest.mark.parametrize(("name", "segment"), ENCODINGS, ids=[repr(n) for n, _ in ENCODINGS])
def test_encoding_of_known_names_is_pinned(name: str, segment: str) -> None:
    """Known names encode to exactly the documented segment and decode back."""
    assert encode(name) == segment
    assert decode(segment) == name


# --- round trip and safety properties ---------------------------------------------------


@PROPERTY
@given(short_names)
@example("Orders EU/2026")
@example("..")
@example("~")
def test_decode_inverts_encode(name: str) -> None:
    """Any non-empty text without lone surrogates survives encode then decode."""
    assert decode(encode(name)) == name


@PROPERTY
@given(any_names)
def test_a_name_either_fits_or_is_refused_as_too_long(name: str) -> None:
    """encode returns a segment of at most MAX_SEGMENT characters or raises InvalidName, never truncates."""
    if expected_length(name) > MAX_SEGMENT:
        with pytest.raises(InvalidName, match="too long"):
            encode(name)
    else:
        segment = encode(name)
        assert len(segment) == expected_length(name) <= MAX_SEGMENT
        assert decode(segment) == name


@pytest.mark.parametrize(
    ("name", "fits"),
    [
        ("a" * MAX_SEGMENT, True),
        ("a" * (MAX_SEGMENT + 1), False),
        ("é" * 39 + "abcde", True),  # 1 + 39 * 6 + 5 == 240
        ("é" * 39 + "abcdef", False),
        ("A" * 118 + " ", True),  # 1 + 118 * 2 + 3 == 240
        ("A" * 118 + " b", False),
    ],
    ids=["plain-240", "plain-241", "encoded-240", "encoded-241", "upper-240", "upper-241"],
)
def test_the_segment_length_limit_is_exact(name: str, fits: bool) -> None:
    """A segment of exactly MAX_SEGMENT characters is accepted, one more is refused."""
    if fits:
        assert len(encode(name)) == MAX_SEGMENT
    else:
        with pytest.raises(InvalidName, match=f"limit {MAX_SEGMENT}"):
            encode(name)


def test_a_segment_plus_json_suffix_fits_a_255_byte_file_name() -> None:
    """MAX_SEGMENT leaves room for the .json suffix within common 255-byte limits."""
    assert MAX_SEGMENT + len(".json") <= 255


@PROPERTY
@given(short_names)
def test_a_segment_cannot_leave_its_folder(name: str) -> None:
    """Segments are ASCII, never hold '/', '\\' or NUL, and are never '.' or '..'."""
    segment = encode(name)
    assert segment.isascii() and segment.isprintable()
    assert not {"/", "\\", "\x00"} & set(segment)
    assert segment not in ("", ".", "..")


@PROPERTY
@given(short_names)
def test_only_plain_names_may_hold_upper_case_letters(name: str) -> None:
    """An encoded (~) segment holds no upper-case letter except hex digits after %."""
    segment = encode(name)
    if segment.startswith("~"):
        without_hex = "".join(part[2:] for part in segment.split("%")[1:])
        assert not any(c.isupper() for c in segment.split("%")[0] + without_hex)
    else:
        assert segment == name


@PROPERTY
@given(plain_names)
def test_plain_names_are_their_own_segment(name: str) -> None:
    """A name of A-Za-z0-9._- other than '.' and '..' maps to itself."""
    assert encode(name) == name
    assert decode(name) == name


@PROPERTY
@given(short_names)
def test_encoded_names_always_start_with_a_tilde_and_plain_ones_never_do(name: str) -> None:
    """The first character tells an encoded segment from a plain one, so they never collide."""
    segment = encode(name)
    assert segment.startswith("~") == (segment != name)


@PROPERTY
@given(short_names, short_names)
@example("A", "^a")
@example("é", "É")
@example("%2f", "%2F")
def test_distinct_encoded_names_differ_even_ignoring_case(a: str, b: str) -> None:
    """Two different names whose segments are both ~-encoded never collide on a case-insensitive disk."""
    assume(a != b)
    ea, eb = encode(a), encode(b)
    assume(ea.startswith("~") and eb.startswith("~"))
    assert ea.lower() != eb.lower()


@PROPERTY
@given(short_names)
def test_a_lowered_encoded_segment_decodes_to_the_same_name(name: str) -> None:
    """Lower-casing an encoded segment (lower-case hex) still decodes to the same name."""
    segment = encode(name)
    assume(segment.startswith("~"))
    assert decode(segment.lower()) == name


# --- refused names and segments ---------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "\ud800", "a\udc00b", "\udfff\ud83d"], ids=["empty", "high-surrogate", "low-surrogate", "reversed-pair"]
)
def test_empty_names_and_lone_surrogates_are_refused(name: str) -> None:
    """encode refuses the empty string and text with lone surrogates."""
    with pytest.raises(InvalidName):
        encode(name)


@pytest.mark.parametrize("name", [None, b"orders", 1, ["orders"]], ids=["none", "bytes", "int", "list"])
def test_non_string_names_are_refused(name: Any) -> None:
    """encode refuses anything that is not a str, with InvalidName."""
    with pytest.raises(InvalidName, match="non-empty string"):
        encode(name)


REFUSED_SEGMENTS = [
    ("empty", ""),
    ("dot", "."),
    ("dot-dot", ".."),
    ("parent-path", "../x"),
    ("nested-path", "a/b"),
    ("absolute", "/etc"),
    ("backslash", "a\\b"),
    ("windows-parent", "..\\x"),
    ("nul", "a\x00"),
    ("space-unencoded", "my flow"),
    ("non-ascii-unencoded", "é"),
    ("tilde-only", "~"),
    ("tilde-tilde", "~~"),
    ("plain-written-encoded", "~abc"),
    ("upper-written-encoded", "~^orders"),
    ("upper-as-hex", "~%41"),
    ("literal-as-hex", "~a%20%62"),
    ("dot-dot-as-hex", "~%2E%2E"),
    ("dot-dot-as-lower-hex", "~%2e%2e"),
    ("dot-as-hex", "~%2E"),
    ("slash-escape-in-path", "~..%2F..%2Fetc/x"),
    ("upper-letter-in-encoding", "~My%20flow"),
    ("caret-upper", "~^A%20"),
    ("dangling-caret", "~a%20^"),
    ("caret-digit", "~a%20^1"),
    ("short-hex", "~a%2"),
    ("bad-hex", "~a%zz"),
    ("non-ascii-in-encoding", "~é%20"),
    ("space-in-encoding", "~a b"),
    ("slash-in-encoding", "~a/b"),
    ("truncated-utf8", "~%C3"),
    ("overlong-utf8", "~%C0%AF"),
    ("encoded-surrogate", "~%ED%A0%80"),
    ("too-long", "~" + "%20" * 81),
]


@pytest.mark.parametrize("segment", [s for _, s in REFUSED_SEGMENTS], ids=[i for i, _ in REFUSED_SEGMENTS])
def test_segments_encode_cannot_produce_are_refused(segment: str) -> None:
    """decode refuses traversal, malformed escapes and non-canonical spellings with InvalidName."""
    with pytest.raises(InvalidName):
        decode(segment)


def test_a_non_canonical_spelling_names_the_expected_one() -> None:
    """Refusing a non-canonical spelling says which spelling is expected."""
    with pytest.raises(InvalidName, match="expected 'abc'"):
        decode("~abc")


def test_lower_case_hex_is_accepted_as_the_same_name() -> None:
    """%2f and %2F spell the same byte: a case-folding checkout must still decode."""
    assert decode("~a%2fb") == decode("~a%2Fb") == "a/b"
    assert decode("~%c3%a9") == "é"


def test_dot_names_are_encoded_and_safe() -> None:
    """'.' and '..' are valid names whose segments are '~.' and '~..', not traversal."""
    assert decode("~.") == "."
    assert decode("~..") == ".."


# --- unicode ----------------------------------------------------------------------------


def test_nfc_and_nfd_forms_are_different_names() -> None:
    """Precomposed é and e + combining acute encode differently and each round-trips."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    assert encode(nfc) != encode(nfd)
    assert encode(nfc).lower() != encode(nfd).lower()
    assert (decode(encode(nfc)), decode(encode(nfd))) == (nfc, nfd)


def test_cyrillic_and_latin_lookalikes_are_different_names() -> None:
    """Cyrillic 'а' and Latin 'a' look alike but encode to different segments."""
    assert encode("\u0430pple") == "~%D0%B0pple"
    assert encode("apple") == "apple"


def test_kelvin_sign_and_letter_k_are_different_names() -> None:
    """U+212A KELVIN SIGN (which case-folds to 'k') does not collide with 'K' or 'k'."""
    kelvin = encode("\u212a")
    assert kelvin == "~%E2%84%AA"
    assert kelvin.lower() not in (encode("K").lower(), encode("k").lower())


@pytest.mark.parametrize("name", ["🚀 launch", "日本語", "Ωmega", "e\u0301", "\u2028", "\ufeff", "\U0010ffff"])
def test_non_ascii_names_round_trip(name: str) -> None:
    """Emoji, CJK, Greek, combining marks and odd code points round-trip."""
    segment = encode(name)
    assert segment.startswith("~") and segment.isascii()
    assert decode(segment) == name


# --- flow paths -------------------------------------------------------------------------


def test_flow_path_of_plain_names_reads_naturally() -> None:
    """Plain name and version give <folder>/<name>/<version>.json."""
    assert flow_path("flows", "orders", "1.0") == "flows/orders/1.0.json"


def test_flow_path_encodes_name_and_version() -> None:
    """Both the name and the version are encoded as segments."""
    assert flow_path("flows", "Orders/EU", "v 2") == "flows/~^orders%2F^e^u/~v%202.json"


def test_flow_path_of_dot_names_stays_in_the_folder() -> None:
    """A flow named '..' with version '..' is still two levels inside the folder."""
    path = flow_path("flows", "..", "..")
    assert path == "flows/~../~...json"
    assert parse_flow_path(path[len("flows/") :]) == ("..", "..")


@PROPERTY
@given(short_names, short_names)
def test_parse_flow_path_inverts_flow_path(name: str, version: str) -> None:
    """The (name, version) of a flow is recovered from its relative path."""
    path = flow_path("flows", name, version)
    assert path.startswith("flows/") and path.count("/") == 2
    assert parse_flow_path(path[len("flows/") :]) == (name, version)


@pytest.mark.parametrize(
    "rel",
    [
        "orders/1.0",
        "orders/1.0.JSON",
        "orders",
        "orders/1.0.json/x",
        "flows/orders/1.0.json",
        "/orders/1.0.json",
        "../1.0.json",
        "./orders/1.0.json",
        "orders/.json",
        "orders/..json",
        "orders/...json",
        "orders/~.json",
        "~abc/1.0.json",
        "orders/~1.0.json",
        "a\\b/1.0.json",
        "",
    ],
)
def test_parse_flow_path_refuses_anything_but_name_slash_version_json(rel: str) -> None:
    """Wrong depth, missing suffix, traversal and non-canonical segments raise InvalidName."""
    with pytest.raises(InvalidName):
        parse_flow_path(rel)


# --- case collisions --------------------------------------------------------------------


def test_case_collisions_finds_plain_names_differing_only_in_case() -> None:
    """'Orders' then 'orders' is reported as one colliding pair, first seen first."""
    assert case_collisions(["Orders", "invoices", "orders"]) == [("Orders", "orders")]


def test_case_collisions_reports_every_later_spelling_against_the_first() -> None:
    """Three spellings of one name give two pairs, each against the first seen."""
    assert case_collisions(["orders", "ORDERS", "Orders"]) == [("orders", "ORDERS"), ("orders", "Orders")]


def test_repeated_identical_segments_are_not_collisions() -> None:
    """The same segment twice is not a case collision."""
    assert case_collisions(["orders", "orders", "1.0"]) == []


def test_case_collisions_accepts_any_iterable() -> None:
    """A generator of segments works as well as a list."""
    assert case_collisions(s for s in ["A", "a"]) == [("A", "a")]


@PROPERTY
@given(st.lists(short_names, max_size=8, unique=True))
def test_only_plain_names_can_collide(names: list[str]) -> None:
    """Among distinct names, every reported collision is between two plain segments."""
    segments = [encode(n) for n in names]
    for first, later in case_collisions(segments):
        assert first.lower() == later.lower() and first != later
        assert not first.startswith("~") and not later.startswith("~")
