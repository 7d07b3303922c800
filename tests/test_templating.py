"""Parameters and secrets: render for import, templatize for export, scan before commits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.templating import Templating

T = Templating(
    params={"API": "https://api.prod.example.com", "HOST": "api.prod.example.com", "ENV": "prod"},
    secrets={"DB_PASS": "pr0d-db-pa55", "KAFKA_TOKEN": "tok-prod-123"},
    secret_pointers=("/steps/*/config/auth",),
    keep=("/name", "/version"),
)


def test_render_substitutes_params_and_secrets() -> None:
    """Placeholders anywhere in a string are replaced by the environment's values."""
    doc, problems = T.render({"u": "${param:API}/v1", "p": {"password": "${secret:DB_PASS}"}})
    assert doc == {"u": "https://api.prod.example.com/v1", "p": {"password": "pr0d-db-pa55"}}
    assert problems == []


def test_an_unknown_placeholder_names_the_pointer_and_the_name() -> None:
    """Unknown params and secrets are problems with their JSON pointer."""
    _, problems = T.render({"steps": [{"u": "${param:NOPE}"}, {"s": "${secret:GONE}"}]})
    assert problems == [
        ("/steps/0/u", "unknown parameter 'NOPE': add it to the environment's params"),
        ("/steps/1/s", "secret 'GONE' is not in the environment's secret store"),
    ]


def test_templatize_puts_the_longest_value_first_and_never_inside_a_longer_token() -> None:
    """The URL wins over the host it contains; 'prod' inside 'production' stays."""
    doc, _ = T.templatize({"u": "https://api.prod.example.com/x", "h": "api.prod.example.com", "e": "prod",
                           "w": "production", "s": "prod-eu"})
    assert doc == {"u": "${param:API}/x", "h": "${param:HOST}", "e": "${param:ENV}", "w": "production",
                   "s": "${param:ENV}-eu"}


def test_identity_fields_are_never_templatized() -> None:
    """A flow named like a parameter value keeps its name."""
    doc, _ = T.templatize({"name": "prod", "version": "prod", "x": "prod"})
    assert doc == {"name": "prod", "version": "prod", "x": "${param:ENV}"}


def test_secret_fields_become_placeholders_when_the_value_is_a_known_secret() -> None:
    """By key name (password, token, apiKey...) or by pointer."""
    doc, problems = T.templatize({"db": {"dbPassword": "pr0d-db-pa55"},
                                  "steps": [{"config": {"auth": "tok-prod-123"}}]})
    assert doc == {"db": {"dbPassword": "${secret:DB_PASS}"}, "steps": [{"config": {"auth": "${secret:KAFKA_TOKEN}"}}]}
    assert problems == []


def test_an_unknown_value_in_a_secret_field_is_refused_without_echoing_it() -> None:
    """A pasted password is a problem naming the pointer, never the value."""
    _, problems = T.templatize({"cfg": {"password": "hunter2-pasted"}})
    assert problems and problems[0][0] == "/cfg/password"
    assert "hunter2" not in repr(problems)


def test_the_scan_finds_secret_values_anywhere_and_credentials_in_secret_fields() -> None:
    """A secret embedded in free text, or a literal token, is refused by pointer."""
    problems = T.scan({"note": "connect with pr0d-db-pa55 please", "apiToken": "abc", "password": "${secret:DB_PASS}"})
    assert [p for p, _ in problems] == ["/note", "/apiToken"]
    assert "pr0d-db-pa55" not in repr(problems) and "abc" not in repr(problems)


@pytest.mark.parametrize("key", ["tokenizer", "tokens", "secretName", "passwordPolicy"])
def test_field_names_that_merely_contain_a_secret_word_are_not_secret_fields(key: str) -> None:
    """Suffix match: apiToken is a secret field, tokenizer is not."""
    assert T.scan({key: "value"}) == []


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.none()),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "url", "x"]), c, max_size=4),
                    max_leaves=20))
def test_render_undoes_templatize_for_documents_without_secret_fields(doc) -> None:
    """Export then import gives back exactly what the environment held."""
    tpl, problems = T.templatize(doc)
    if problems:
        return
    back, unresolved = T.render(tpl)
    if "${" in repr(doc):
        return  # literal placeholders in the input are out of scope
    assert unresolved == [] and back == doc


def test_the_fingerprint_changes_with_any_value_but_does_not_reveal_it() -> None:
    """Rotating a secret invalidates cached renders."""
    other = Templating(params=dict(T.params), secrets={**T.secrets, "DB_PASS": "rotated"}, keep=T.keep,
                       secret_pointers=T.secret_pointers)
    assert other.fingerprint() != T.fingerprint()
    assert "pr0d" not in T.fingerprint()


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.one_of(st.sampled_from(["https://api.prod.example.com/x", "prod", "pr0d-db-pa55", "plain", 'q"uote']),
                              st.text(max_size=12), st.integers()),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["url", "dbPassword", "api-token", "auth", "name", "Tokenizer", "x"]), c, max_size=3),
                    max_leaves=12))
def test_the_quick_text_check_never_skips_a_document_the_walk_would_change(doc) -> None:
    """quick_clean(text) => templatize changes nothing and the scan finds nothing."""
    from reconciler.canonical import canonicalize

    data = canonicalize(doc)
    if T.quick_clean(data):
        assert T.templatize(doc) == (doc, [])
        assert T.scan(doc) == []


def test_a_document_with_no_placeholder_is_not_walked_even_where_params_and_secrets_are_set() -> None:
    """``renderer`` skips only what rendering would give back unchanged: no ``${`` in the text and no
    ``\\u`` escape that could spell one; an escaped placeholder is still rendered (and resolved)."""
    import json

    from reconciler.canonical import parse_json

    t = Templating(params={"API": "https://x"}, secrets={"pw": "s3cret"}, secret_pointers=("/password",))
    plain = json.dumps({"name": "a", "url": "https://y", "password": "", "code": "let a = `$ {x}`;"}).encode()
    assert t.active and t.renderer(plain) is None
    doc = parse_json(plain)
    assert t.render(doc) == (doc, [])  # what the skipped walk would have given
    escaped = b'{"name": "a", "url": "\\u0024{param:API}/v1", "p": "\\u0024{secret:pw}"}'
    render = t.renderer(escaped)
    assert render is not None
    assert render(parse_json(escaped)) == ({"name": "a", "url": "https://x/v1", "p": "s3cret"}, [])
    assert t.renderer(b'{"name": "a", "url": "${param:API}"}') is not None
    missing = Templating(params={"API": "https://x"}).renderer(b'{"u": "${param:NOPE}"}')
    assert missing is not None and missing({"u": "${param:NOPE}"})[1]  # unresolved: a problem, as before
