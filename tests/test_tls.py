"""pygit2 is imported without its CA bundle parsed (reconciler.gitstore.tls), and every network operation
still runs with the CA file and folder pygit2 itself sets: each test is a fresh interpreter, as a command is."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = ssl.get_default_verify_paths()
needs_both = pytest.mark.skipif(PATHS.cafile is None or PATHS.capath is None,
                                reason="this system has no default CA file or no CA folder: pygit2 is imported as is")


def _python(code: str, cwd: Path = ROOT) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


REPORT = "import json, pygit2; print(json.dumps([pygit2.settings.ssl_cert_file, pygit2.settings.ssl_cert_dir]))"


@needs_both
def test_a_command_on_a_local_repository_never_hands_libgit2_the_ca_file(tmp_path: Path) -> None:
    """A real export on a local repository, then what libgit2 was given: the CA folder only (nothing parsed)."""
    (tmp_path / "envs" / "acc").mkdir(parents=True)
    (tmp_path / "envs" / "acc" / "f.json").write_text('{"name": "f", "version": "1", "steps": []}')
    (tmp_path / "reconciler.toml").write_text('[repository]\npath = "state/flows.git"\n'
                                             '[[environment]]\nname = "acc"\ndriver = "directory"\npath = "envs/acc"\n')
    code = ("from reconciler.cli import main\ntry:\n    main(['export', 'acc', '-q'])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n" + REPORT)
    cafile, capath = _python(code, tmp_path)
    assert (cafile, capath) == (None, PATHS.capath)
    assert (tmp_path / "state" / "flows.git" / "refs" / "heads" / "env" / "acc").is_file()  # the export did its work


@needs_both
def test_a_remote_gets_the_ca_file_and_folder_pygit2_sets_before_it_fetches(tmp_path: Path) -> None:
    """Making a Remote (every fetch and push goes through one) gives libgit2 exactly pygit2's own default."""
    code = ("from reconciler.gitstore import GitStore\nfrom reconciler.remote import Remote\n"
            f"store = GitStore({str(tmp_path / 'r.git')!r}, author_name='t', author_email='t@example.com')\n"
            "Remote(store, 'https://git.invalid/x.git')\n" + REPORT)
    assert _python(code) == [PATHS.cafile, PATHS.capath]
    # and it is what a plain `import pygit2` sets (the same interpreter, no reconciler module)
    assert _python(REPORT) == [PATHS.cafile, PATHS.capath]


def test_pygit2_imported_first_is_left_as_it_is() -> None:
    """An embedding program that imported pygit2 itself keeps pygit2's own settings; ensure() is then a no-op."""
    code = ("import pygit2\nfrom reconciler.gitstore import tls\nassert not tls._deferred\ntls.ensure()\n" + REPORT)
    assert _python(code) == [PATHS.cafile, PATHS.capath]


def test_ssl_is_unchanged_after_the_import() -> None:
    """The stand-in is gone once pygit2 is imported: ssl and pygit2.settings see ssl's own function again."""
    code = ("import ssl, sys, json\nreal = ssl.get_default_verify_paths\nimport reconciler.gitstore\n"
            "print(json.dumps([ssl.get_default_verify_paths is real,"
            " sys.modules['pygit2.settings'].get_default_verify_paths is real,"
            " ssl.get_default_verify_paths().cafile]))")
    assert _python(code) == [True, True, PATHS.cafile]


def test_an_https_remote_with_an_untrusted_certificate_is_refused_and_says_so(tmp_path: Path) -> None:
    """A real TLS server on 127.0.0.1 with a self-signed certificate: the fetch is refused (verification is on
    after the lighter import) with a message about the certificate, not about ssh host keys."""
    import http.server
    import threading

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                           str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], capture_output=True)
    if made.returncode != 0:
        pytest.skip("no openssl command to make a certificate")
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/flows.git"
        code = ("import json\nfrom reconciler.gitstore import GitStore\nfrom reconciler.remote import Remote\n"
                "from reconciler.errors import RetryableError\n"
                f"store = GitStore({str(tmp_path / 'r.git')!r}, author_name='t', author_email='t@example.com')\n"
                f"try:\n    Remote(store, {url!r}).fetch()\n    print(json.dumps('fetched'))\n"
                "except RetryableError as exc:\n    print(json.dumps(str(exc)))")
        said = _python(code)
    finally:
        server.shutdown()
    assert "TLS certificate of 127.0.0.1 is not trusted" in said, said
    assert "ssh" not in said
