"""The private APIs PayHub leans on are still there, in the shape it uses.

Two dependencies are used below their public surface, for speed:

* ``aiosqlite``: ``payhub.store.engine.InlineSqliteConnection`` subclasses
  ``aiosqlite.Connection`` and replaces ``_execute`` / ``_connect``, relying on
  ``_connection``, ``_connector``, ``_running`` and the ``_conn`` property, and on every
  public method going through ``self._execute(self._conn.<method>, ...)``.
* ``http-message-signatures``: ``payhub.api.auth._HubVerifier`` calls
  ``HTTPMessageVerifier._parse_signature_dictionary`` and ``_verify_one``, and overrides
  ``validate_created_and_expires`` to switch the library's clock off.

Both are pinned in ``pyproject.toml``. An upgrade may change any of this silently (a
private name renamed, a keyword dropped, a method no longer routed through ``_execute``),
so each check below fails with the name of the internal that moved, and the version
check fails first to say that the pin itself was changed.
"""

from __future__ import annotations

import inspect
import re
import sqlite3
from importlib.metadata import version
from pathlib import Path

import aiosqlite
import pytest
from http_message_signatures import HTTPMessageVerifier, algorithms
from http_sf.compat import Dictionary, InnerList, Item

from payhub.api.auth import _HubVerifier
from payhub.store.engine import InlineSqliteConnection

PINNED = {"aiosqlite": "0.22.1", "http-message-signatures": "3.0.0"}
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def internal_changed(library: str, name: str, what: str) -> None:
    pytest.fail(
        f"{library} internal {name} changed: {what}. PayHub uses it "
        f"(see tests/unit/test_pinned_internals.py); adapt the code before moving the pin.",
        pytrace=False,
    )


@pytest.mark.parametrize("distribution", sorted(PINNED))
def test_installed_version_is_the_pinned_one(distribution: str) -> None:
    pin = f'"{distribution}=={PINNED[distribution]}"'
    assert pin in PYPROJECT.read_text(), f"pyproject.toml must pin {pin}"
    installed = version(distribution)
    if installed != PINNED[distribution]:
        internal_changed(
            distribution, "(any)", f"{installed} installed, internals checked against the pin"
        )


# --- aiosqlite -----------------------------------------------------------------------------


def test_aiosqlite_connection_keeps_the_attributes_the_inline_connection_sets() -> None:
    def connector() -> sqlite3.Connection:
        return sqlite3.connect(":memory:", check_same_thread=False)

    try:
        connection = InlineSqliteConnection(connector, 64)
    except TypeError as exc:
        internal_changed("aiosqlite", "Connection.__init__(connector, iter_chunk_size)", str(exc))
    for name in ("_connection", "_connector", "_running"):
        if name not in vars(connection):
            internal_changed("aiosqlite", f"Connection.{name}", "no longer set by __init__")
    assert connection._connector is connector
    assert connection._connection is None
    stop = getattr(connection, "stop", None)
    if stop is not None:
        stop()


def test_aiosqlite_conn_property_and_private_coroutines_exist() -> None:
    conn = inspect.getattr_static(aiosqlite.Connection, "_conn", None)
    if not isinstance(conn, property):
        internal_changed("aiosqlite", "Connection._conn", "is no longer a property")
    for name in ("_execute", "_connect"):
        method = getattr(aiosqlite.Connection, name, None)
        if method is None or not inspect.iscoroutinefunction(method):
            internal_changed("aiosqlite", f"Connection.{name}", "is gone or not a coroutine")
    parameters = list(inspect.signature(aiosqlite.Connection._execute).parameters)
    if parameters[:2] != ["self", "fn"]:
        internal_changed("aiosqlite", "Connection._execute(fn, *args)", f"now {parameters}")


@pytest.mark.parametrize(
    "method", ["execute", "executemany", "executescript", "cursor", "rollback", "execute_fetchall"]
)
def test_aiosqlite_public_methods_go_through_execute(method: str) -> None:
    """The inline connection only intercepts ``_execute``: nothing may bypass it."""
    source = inspect.getsource(getattr(aiosqlite.Connection, method))
    if not re.search(r"self\._execute\(\s*self\._", source):
        internal_changed("aiosqlite", f"Connection.{method}", "no longer calls self._execute")


async def test_inline_connection_runs_statements(tmp_path: Path) -> None:
    """End to end through the replaced internals: connect, write, commit, read back."""
    path = str(tmp_path / "pin.db")
    connection = InlineSqliteConnection(
        lambda: sqlite3.connect(path, check_same_thread=False, isolation_level=None), 64
    )
    await connection
    await connection.execute("BEGIN IMMEDIATE")
    await connection.execute("CREATE TABLE t (x INTEGER)")
    await connection.execute("INSERT INTO t VALUES (7)")
    await connection.execute("COMMIT")
    rows = await connection.execute_fetchall("SELECT x FROM t", ())
    assert [tuple(row) for row in rows] == [(7,)]
    await connection.close()


# --- http-message-signatures ---------------------------------------------------------------


def test_signature_dictionary_parser_keeps_its_shape() -> None:
    parser = getattr(HTTPMessageVerifier, "_parse_signature_dictionary", None)
    if parser is None:
        internal_changed("http-message-signatures", "_parse_signature_dictionary", "is gone")
    parsed = _HubVerifier.parse_dictionary('sig1=("@method" "@path");created=1;keyid="k"')
    if not isinstance(parsed, Dictionary) or not isinstance(parsed["sig1"], InnerList):
        internal_changed(
            "http-message-signatures",
            "_parse_signature_dictionary",
            f"returns {type(parsed).__name__}, not http_sf.compat Dictionary of InnerList",
        )
    signature = _HubVerifier.parse_dictionary("sig1=:AAEC:")["sig1"]
    if not isinstance(signature, Item) or signature.value != b"\x00\x01\x02":
        internal_changed("http-message-signatures", "_parse_signature_dictionary", "byte items")


def test_verify_one_keeps_its_keywords_and_calls_the_clock_hook() -> None:
    verify_one = getattr(HTTPMessageVerifier, "_verify_one", None)
    if verify_one is None:
        internal_changed("http-message-signatures", "_verify_one", "is gone")
    parameters = inspect.signature(verify_one).parameters
    for name in ("label", "sig_input", "signature", "message", "max_age"):
        if name not in parameters or parameters[name].kind is not inspect.Parameter.KEYWORD_ONLY:
            internal_changed("http-message-signatures", f"_verify_one({name}=)", "keyword moved")
    if "self.validate_created_and_expires(" not in inspect.getsource(verify_one):
        internal_changed(
            "http-message-signatures",
            "_verify_one",
            "no longer calls validate_created_and_expires, the hook that turns its clock off",
        )
    hook = inspect.signature(HTTPMessageVerifier.validate_created_and_expires).parameters
    if list(hook)[:2] != ["self", "sig_input"]:
        internal_changed(
            "http-message-signatures", "validate_created_and_expires", f"now {list(hook)}"
        )


def test_hub_verifier_ignores_the_library_clock() -> None:
    """The override really replaces the library's check (a far-future ``created`` passes it)."""
    verifier = _HubVerifier(signature_algorithm=algorithms.ED25519, key_resolver=None)
    members = _HubVerifier.parse_dictionary('sig1=("@method");created=9999999999;keyid="k"')
    members = members["sig1"]
    assert verifier.validate_created_and_expires(members, max_age=None) is None
    with pytest.raises(Exception, match="future"):
        HTTPMessageVerifier.validate_created_and_expires(verifier, members, max_age=None)
