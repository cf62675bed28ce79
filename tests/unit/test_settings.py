"""``payhub.toml`` is validated at start: every bad document is one ``ConfigError`` naming the key.

Documents are built the way ``tests/factories.py`` builds them (key files in ``tmp_path``),
then broken one key at a time.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payhub.app import check_banks
from payhub.connectors.registry import available_protocols
from payhub.errors import ConfigError
from payhub.routing import (
    AgencyPattern,
    BankScope,
    BreakerPolicy,
    PreferenceRule,
    RoutingSettings,
)
from payhub.settings import (
    SUPPORTED_TIMEZONE,
    Settings,
    load_settings,
    parse_settings,
    resolve_database_url,
)
from payhub.setup import public_pem, write_private_key
from tests.factories import VNPAY_SECRET, VNPAY_TMN, settings_document

Doc = dict[str, Any]
PORT = 18080


@pytest.fixture(name="doc")
def _doc(tmp_path: Path) -> Doc:
    """A valid document; its key files live in ``tmp_path/keys``."""
    return settings_document(tmp_path, "sqlite:///payhub.db", PORT)[0]


def parse(doc: Doc, tmp_path: Path) -> Settings:
    return parse_settings(doc, tmp_path / "payhub.toml")


def rejected(doc: Doc, tmp_path: Path, *names: str) -> str:
    """Parse ``doc`` expecting one ConfigError whose single line names every one of ``names``."""
    with pytest.raises(ConfigError) as info:
        parse(doc, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


def ec_public_pem() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --- a valid document ----------------------------------------------------------------------


def test_a_valid_document_becomes_settings(doc: Doc, tmp_path: Path) -> None:
    doc["hub"]["public_url"] = f"http://127.0.0.1:{PORT}/"
    settings = parse(doc, tmp_path)

    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'payhub.db'}"
    assert settings.public_url == f"http://127.0.0.1:{PORT}"
    assert (settings.host, settings.port, settings.timezone) == (
        "127.0.0.1",
        PORT,
        SUPPORTED_TIMEZONE,
    )
    assert settings.default_bank == "vnpay"
    assert settings.rate_limit_per_second == 0
    assert [key.kid for key in settings.hub_keys] == ["hub-test"]
    assert isinstance(settings.hub_keys[0].private_key, Ed25519PrivateKey)
    assert sorted(settings.portals) == ["demo", "other"]
    assert settings.portals["demo"].keys[0].algorithm == "ed25519"
    other = settings.portals["other"].keys[0]
    assert other.algorithm == "hmac-sha256"
    assert other.key == (tmp_path / "keys" / "other.secret").read_bytes()
    assert settings.finance_users["finance"].keys[0].keyid == "finance"
    bank = settings.banks["vnpay"]
    assert bank.connector == "vnpay"
    assert dict(bank.options) == {
        "tmn_code": VNPAY_TMN,
        "hash_secret": VNPAY_SECRET,
        "base_url": f"http://127.0.0.1:{PORT}/sim/vnpay",
    }
    assert check_banks(settings).keys() == {"vnpay"}


def test_optional_tables_and_keys_take_their_defaults(doc: Doc, tmp_path: Path) -> None:
    for key in ("public_url", "port", "default_bank"):
        del doc["hub"][key]
    for table in ("portals", "finance", "banks"):
        del doc[table]
    settings = parse(doc, tmp_path)
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.port == 8080
    assert settings.default_bank is None
    assert settings.portals == {} and settings.finance_users == {} and settings.banks == {}


def test_secrets_stay_out_of_repr(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["demo"]["whsec"] = "whsec_" + "A" * 32
    text = repr(parse(doc, tmp_path))
    assert VNPAY_SECRET not in text
    assert "whsec_" not in text


def test_a_32_byte_hmac_secret_and_a_64_char_id_are_enough(doc: Doc, tmp_path: Path) -> None:
    (tmp_path / "keys" / "other.secret").write_bytes(secrets.token_bytes(32))
    long_id = "a" * 64
    doc["portals"][long_id] = doc["portals"].pop("other")
    assert long_id in parse(doc, tmp_path).portals


# --- load_settings: the file --------------------------------------------------------------


def test_load_settings_reads_a_toml_file(doc: Doc, tmp_path: Path) -> None:
    path = tmp_path / "payhub.toml"
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    loaded, parsed = load_settings(path), parse(doc, tmp_path)
    assert loaded.database_url == parsed.database_url
    assert loaded.banks == parsed.banks
    assert loaded.portals["other"] == parsed.portals["other"]
    assert loaded.portals["demo"].keys[0].keyid == "demo"


def test_load_settings_resolves_relative_paths_against_the_config_folder(
    doc: Doc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "payhub.toml").write_text(tomlkit.dumps(doc), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings("../payhub.toml")
    assert settings.config_path == tmp_path / "payhub.toml"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'payhub.db'}"
    assert settings.portals["other"].keys[0].key == (tmp_path / "keys/other.secret").read_bytes()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"configuration file not found: .*nowhere\.toml"):
        load_settings(tmp_path / "nowhere.toml")


def test_a_file_that_is_not_toml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "payhub.toml"
    path.write_text("[hub\ndatabase_url = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"payhub.toml is not valid TOML"):
        load_settings(path)


def test_a_file_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "payhub.toml"
    path.write_bytes(b'[hub]\ndatabase_url = "\xff"\n')
    with pytest.raises(ConfigError, match=r"cannot read .*payhub\.toml"):
        load_settings(path)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path)


# --- structure: tables and unknown keys ---------------------------------------------------


def test_hub_is_required(doc: Doc, tmp_path: Path) -> None:
    del doc["hub"]
    rejected(doc, tmp_path, "missing [hub] table")


@pytest.mark.parametrize("table", ["hub", "portals", "finance", "banks"])
def test_top_level_tables_must_be_tables(doc: Doc, tmp_path: Path, table: str) -> None:
    doc[table] = "not a table"
    rejected(doc, tmp_path, f"{table} must be a table")


@pytest.mark.parametrize(
    ("where", "location"),
    [
        (lambda d: d, "unknown key 'extra';"),
        (lambda d: d["hub"], "[hub]"),
        (lambda d: d["hub"]["signing_keys"][0], "[hub.signing_keys[0]]"),
        (lambda d: d["portals"]["demo"], "[portals.demo]"),
        (lambda d: d["portals"]["demo"]["keys"][0], "[portals.demo.keys[0]]"),
        (lambda d: d["portals"]["other"]["keys"][0], "[portals.other.keys[0]]"),
        (lambda d: d["finance"]["finance"], "[finance.finance]"),
        (lambda d: d["finance"]["finance"]["keys"][0], "[finance.finance.keys[0]]"),
    ],
    ids=["top", "hub", "signing_key", "portal", "portal_key", "hmac_key", "finance", "finance_key"],
)
def test_unknown_keys_are_rejected_at_every_level(
    doc: Doc, tmp_path: Path, where: Callable[[Doc], Doc], location: str
) -> None:
    where(doc)["extra"] = 1
    message = rejected(doc, tmp_path, "'extra'", location, "allowed:")
    assert "unknown key" in message


def test_unknown_keys_of_a_bank_are_left_to_its_connector(doc: Doc, tmp_path: Path) -> None:
    doc["banks"]["vnpay"]["locale"] = "en"
    assert parse(doc, tmp_path).banks["vnpay"].options["locale"] == "en"


# --- [hub] --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "name"),
    [
        ("database_url", 5, "hub.database_url"),
        ("database_url", "", "hub.database_url"),
        ("timezone", 7, "hub.timezone"),
        ("public_url", 5, "hub.public_url"),
        ("public_url", "ftp://hub.example", "hub.public_url"),
        ("public_url", "127.0.0.1:8080", "hub.public_url"),
        ("host", "", "hub.host"),
        ("host", ["127.0.0.1"], "hub.host"),
        ("port", "8080", "hub.port"),
        ("port", True, "hub.port"),
        ("port", 65536, "hub.port"),
        ("port", -1, "hub.port"),
        ("port", 8080.0, "hub.port"),
        ("rate_limit_per_second", -1, "hub.rate_limit_per_second"),
        ("rate_limit_per_second", "10", "hub.rate_limit_per_second"),
        ("rate_limit_per_second", False, "hub.rate_limit_per_second"),
        ("default_bank", 5, "hub.default_bank"),
        ("default_bank", ["vnpay"], "hub.default_bank"),
        ("signing_keys", {"kid": "x"}, "hub.signing_keys"),
        ("signing_keys", [], "hub.signing_keys"),
        ("signing_keys", ["keys/hub.pem"], "hub.signing_keys[0]"),
    ],
)
def test_hub_values_of_the_wrong_type_are_rejected(
    doc: Doc, tmp_path: Path, key: str, value: Any, name: str
) -> None:
    doc["hub"][key] = value
    rejected(doc, tmp_path, name)


def test_database_url_is_required(doc: Doc, tmp_path: Path) -> None:
    del doc["hub"]["database_url"]
    rejected(doc, tmp_path, "missing hub.database_url")


@pytest.mark.parametrize("timezone", ["UTC", "Asia/Bangkok", "asia/ho_chi_minh", "+07:00"])
def test_only_vietnam_time_is_supported(doc: Doc, tmp_path: Path, timezone: str) -> None:
    doc["hub"]["timezone"] = timezone
    rejected(doc, tmp_path, "hub.timezone", SUPPORTED_TIMEZONE, repr(timezone))


def test_the_timezone_may_be_given_explicitly(doc: Doc, tmp_path: Path) -> None:
    doc["hub"]["timezone"] = SUPPORTED_TIMEZONE
    assert parse(doc, tmp_path).timezone == SUPPORTED_TIMEZONE


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/payhub",
        "payhub.db",
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite+aiosqlite://",
        "postgresql://db.example",
        "postgresql://db.example/",
        "postgresql://",
        "postgresql://db.example:port/payhub",
        "postgresql+psycopg://db.example/payhub",
    ],
)
def test_bad_database_urls_are_rejected(doc: Doc, tmp_path: Path, url: str) -> None:
    doc["hub"]["database_url"] = url
    rejected(doc, tmp_path, "hub.database_url")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///payhub.db", "sqlite+aiosqlite:///{base}/payhub.db"),
        ("sqlite:///data/hub.db", "sqlite+aiosqlite:///{base}/data/hub.db"),
        ("sqlite+aiosqlite:///hub.db", "sqlite+aiosqlite:///{base}/hub.db"),
        ("sqlite:////var/lib/payhub/hub.db", "sqlite+aiosqlite:////var/lib/payhub/hub.db"),
        (
            "postgresql://postgres@127.0.0.1:5432/test",
            "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        ),
        ("postgres://u:p@db.example/payhub", "postgresql+asyncpg://u:p@db.example/payhub"),
        ("postgresql+asyncpg://db.example/payhub", "postgresql+asyncpg://db.example/payhub"),
        ("postgresql:///payhub", "postgresql+asyncpg:///payhub"),
    ],
)
def test_database_urls_get_their_async_driver(
    doc: Doc, tmp_path: Path, url: str, expected: str
) -> None:
    doc["hub"]["database_url"] = url
    assert parse(doc, tmp_path).database_url == expected.format(base=tmp_path)


def test_a_relative_config_path_still_gives_an_absolute_sqlite_path(
    doc: Doc, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = parse_settings(doc, Path("payhub.toml"))
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'payhub.db'}"
    url = resolve_database_url("sqlite:///payhub.db", Path("local"))
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'local' / 'payhub.db'}"


def test_default_bank_must_be_configured(doc: Doc, tmp_path: Path) -> None:
    doc["hub"]["default_bank"] = "momo"
    rejected(doc, tmp_path, "hub.default_bank", "'momo'", "configured: vnpay")


# --- hub signing keys ---------------------------------------------------------------------


def test_a_missing_hub_key_file_is_named(doc: Doc, tmp_path: Path) -> None:
    doc["hub"]["signing_keys"][0]["private_key_file"] = "keys/gone.pem"
    rejected(doc, tmp_path, "hub.signing_keys[0]", "cannot read", "gone.pem")


def test_a_hub_key_file_that_is_a_directory_is_unreadable(doc: Doc, tmp_path: Path) -> None:
    doc["hub"]["signing_keys"][0]["private_key_file"] = "keys"
    rejected(doc, tmp_path, "hub.signing_keys[0]", "cannot read")


def test_a_hub_key_name_with_a_nul_byte_is_a_config_error(doc: Doc, tmp_path: Path) -> None:
    doc["hub"]["signing_keys"][0]["private_key_file"] = "keys/\x00.pem"
    rejected(doc, tmp_path, "hub.signing_keys[0]", "cannot read")


def test_a_hub_key_that_is_not_pem_is_rejected(doc: Doc, tmp_path: Path) -> None:
    (tmp_path / "keys" / "hub.pem").write_text("not a key")
    rejected(doc, tmp_path, "hub.signing_keys[0].private_key_file", "not a PEM private key")


def test_a_hub_key_that_is_not_ed25519_is_rejected(doc: Doc, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "keys" / "hub.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    rejected(doc, tmp_path, "hub.signing_keys[0]", "Ed25519")


def test_a_password_protected_hub_key_is_rejected(doc: Doc, tmp_path: Path) -> None:
    (tmp_path / "keys" / "hub.pem").write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    rejected(doc, tmp_path, "hub.signing_keys[0].private_key_file", "password")


@pytest.mark.parametrize(
    ("key", "value", "name"),
    [
        ("kid", 5, "hub.signing_keys[0].kid"),
        ("kid", "hub key", "hub.signing_keys[0].kid"),
        ("private_key_file", 5, "hub.signing_keys[0].private_key_file"),
        ("retired", "no", "hub.signing_keys[0].retired"),
        ("expires_at", "2026-12-05", "hub.signing_keys[0].expires_at"),
        ("expires_at", datetime(2026, 12, 5), "hub.signing_keys[0].expires_at"),
    ],
)
def test_hub_key_fields_are_checked(
    doc: Doc, tmp_path: Path, key: str, value: Any, name: str
) -> None:
    doc["hub"]["signing_keys"][0][key] = value
    rejected(doc, tmp_path, name)


def test_hub_key_kids_are_unique(doc: Doc, tmp_path: Path) -> None:
    entry = doc["hub"]["signing_keys"][0]
    doc["hub"]["signing_keys"].append({**entry, "retired": True})
    rejected(doc, tmp_path, "hub.signing_keys", "'hub-test'")


def test_a_retired_hub_key_is_kept(doc: Doc, tmp_path: Path) -> None:
    entry = doc["hub"]["signing_keys"][0]
    doc["hub"]["signing_keys"].append({**entry, "kid": "hub-old", "retired": True})
    assert [(k.kid, k.retired) for k in parse(doc, tmp_path).hub_keys] == [
        ("hub-test", False),
        ("hub-old", True),
    ]


def test_a_rotated_out_hub_key_signs_until_its_overlap_ends(doc: Doc, tmp_path: Path) -> None:
    entry = doc["hub"]["signing_keys"][0]
    ends = datetime(2026, 12, 5, tzinfo=UTC)
    doc["hub"]["signing_keys"].append({**entry, "kid": "hub-old", "expires_at": ends})
    current, old = parse(doc, tmp_path).hub_keys
    assert old.expires_at == ends and current.expires_at is None
    assert old.valid_at(ends - timedelta(seconds=1)) and not old.valid_at(ends)
    assert current.valid_at(ends + timedelta(days=365))


# --- principals and their keys ------------------------------------------------------------


def test_a_missing_public_key_file_is_named(doc: Doc, tmp_path: Path) -> None:
    key = doc["finance"]["finance"]["keys"][0]
    del key["public_key"]
    key["public_key_file"] = "keys/finance.pub.pem"
    rejected(doc, tmp_path, "finance.finance.keys[0]", "cannot read", "finance.pub.pem")


def test_a_public_key_file_is_read_relative_to_the_config(doc: Doc, tmp_path: Path) -> None:
    key = doc["finance"]["finance"]["keys"][0]
    (tmp_path / "keys" / "finance.pub.pem").write_text(key.pop("public_key"))
    key["public_key_file"] = "keys/finance.pub.pem"
    assert parse(doc, tmp_path).finance_users["finance"].keys[0].keyid == "finance"


def test_a_binary_public_key_file_is_rejected(doc: Doc, tmp_path: Path) -> None:
    key = doc["portals"]["demo"]["keys"][0]
    del key["public_key"]
    key["public_key_file"] = "keys/binary"
    (tmp_path / "keys" / "binary").write_bytes(b"\xff\xfe\x00garbage")
    rejected(doc, tmp_path, "portals.demo.keys[0].public_key_file")


def test_an_ed25519_key_needs_a_public_key(doc: Doc, tmp_path: Path) -> None:
    del doc["portals"]["demo"]["keys"][0]["public_key"]
    rejected(doc, tmp_path, "missing portals.demo.keys[0].public_key_file")


def test_an_ed25519_key_takes_one_of_public_key_and_its_file(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["demo"]["keys"][0]["public_key_file"] = "keys/demo.pub.pem"
    rejected(doc, tmp_path, "portals.demo.keys[0]", "public_key", "not both")


def test_an_ed25519_key_takes_no_secret_file(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["demo"]["keys"][0]["secret_file"] = "keys/other.secret"
    rejected(doc, tmp_path, "portals.demo.keys[0]", "'secret_file'")


def test_an_hmac_key_takes_no_public_key(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["other"]["keys"][0]["public_key"] = ec_public_pem()
    rejected(doc, tmp_path, "portals.other.keys[0]", "'public_key'")


@pytest.mark.parametrize(
    "pem",
    ["not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", ""],
    ids=["text", "bad-base64-body", "empty"],
)
def test_a_public_key_that_is_not_pem_is_rejected(doc: Doc, tmp_path: Path, pem: str) -> None:
    doc["portals"]["demo"]["keys"][0]["public_key"] = pem
    rejected(doc, tmp_path, "portals.demo.keys[0]")


def test_a_public_key_of_the_wrong_type_is_rejected(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["demo"]["keys"][0]["public_key"] = 42
    rejected(doc, tmp_path, "portals.demo.keys[0].public_key")


def test_a_public_key_that_is_not_ed25519_is_rejected(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["demo"]["keys"][0]["public_key"] = ec_public_pem()
    rejected(doc, tmp_path, "portals.demo.keys[0]", "not Ed25519")


def test_a_private_key_is_not_a_public_key(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["demo"]["keys"][0]["public_key"] = (tmp_path / "keys/hub.pem").read_text()
    rejected(doc, tmp_path, "portals.demo.keys[0]", "not a PEM public key")


@pytest.mark.parametrize("size", [0, 16, 31])
def test_hmac_secrets_need_32_bytes(doc: Doc, tmp_path: Path, size: int) -> None:
    (tmp_path / "keys" / "other.secret").write_bytes(secrets.token_bytes(size))
    rejected(doc, tmp_path, "portals.other.keys[0].secret_file", "32 bytes", f"has {size}")


def test_a_missing_hmac_secret_file_is_named(doc: Doc, tmp_path: Path) -> None:
    (tmp_path / "keys" / "other.secret").unlink()
    rejected(doc, tmp_path, "portals.other.keys[0]", "cannot read", "other.secret")


def test_an_hmac_secret_that_is_a_directory_is_unreadable(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["other"]["keys"][0]["secret_file"] = str(tmp_path)
    rejected(doc, tmp_path, "portals.other.keys[0]", "cannot read")


@pytest.mark.parametrize("algorithm", ["rsa", "HMAC-SHA256", "ed448", 1])
def test_unknown_algorithms_are_rejected(doc: Doc, tmp_path: Path, algorithm: Any) -> None:
    doc["portals"]["demo"]["keys"][0]["algorithm"] = algorithm
    rejected(doc, tmp_path, "portals.demo.keys[0].algorithm")


def test_the_algorithm_defaults_to_ed25519(doc: Doc, tmp_path: Path) -> None:
    del doc["portals"]["demo"]["keys"][0]["algorithm"]
    assert parse(doc, tmp_path).portals["demo"].keys[0].algorithm == "ed25519"


def test_a_keyid_belongs_to_one_principal(doc: Doc, tmp_path: Path) -> None:
    doc["finance"]["finance"]["keys"][0]["keyid"] = "demo"
    rejected(doc, tmp_path, "'demo'", "portals.demo", "finance.finance")


def test_a_keyid_is_not_repeated_within_a_principal(doc: Doc, tmp_path: Path) -> None:
    keys = doc["portals"]["demo"]["keys"]
    keys.append(copy.deepcopy(keys[0]))
    rejected(doc, tmp_path, "portals.demo.keys", "'demo'", "twice")


def test_two_portals_may_not_share_a_keyid(doc: Doc, tmp_path: Path) -> None:
    doc["portals"]["other"]["keys"][0]["keyid"] = "demo"
    rejected(doc, tmp_path, "'demo'", "portals.demo", "portals.other")


@pytest.mark.parametrize(
    ("where", "value", "name"),
    [
        ("keys", [], "portals.demo.keys needs at least one key"),
        ("keys", {"keyid": "demo"}, "portals.demo.keys must be an array"),
        ("keys", ["demo"], "portals.demo.keys[0] must be a table"),
        ("callback_url", 5, "portals.demo.callback_url"),
        ("callback_url", "", "portals.demo.callback_url"),
        ("callback_url", "dvc.example/payhub", "portals.demo.callback_url"),
        ("whsec", 5, "portals.demo.whsec"),
        ("whsec", "secret", "portals.demo.whsec"),
        ("whsec", "whsec_", "portals.demo.whsec"),
        ("whsec", "whsec_not base64!", "portals.demo.whsec"),
        ("whsec", "whsec_c2hvcnQ=", "portals.demo.whsec"),
    ],
)
def test_portal_values_are_checked(
    doc: Doc, tmp_path: Path, where: str, value: Any, name: str
) -> None:
    doc["portals"]["demo"][where] = value
    rejected(doc, tmp_path, name)


def test_a_portal_needs_a_callback_url(doc: Doc, tmp_path: Path) -> None:
    del doc["portals"]["demo"]["callback_url"]
    rejected(doc, tmp_path, "missing portals.demo.callback_url")


def test_a_standard_webhooks_secret_is_accepted(doc: Doc, tmp_path: Path) -> None:
    whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    doc["portals"]["demo"]["whsec"] = whsec
    assert parse(doc, tmp_path).portals["demo"].whsec == whsec


def test_a_finance_user_needs_a_key(doc: Doc, tmp_path: Path) -> None:
    doc["finance"]["finance"] = {}
    rejected(doc, tmp_path, "finance.finance.keys needs at least one key")


@pytest.mark.parametrize(
    ("key", "value", "name"),
    [
        ("keyid", 5, "portals.demo.keys[0].keyid"),
        ("keyid", "", "portals.demo.keys[0].keyid"),
        ("keyid", "de mo", "portals.demo.keys[0].keyid"),
        ("keyid", "demo\n", "portals.demo.keys[0].keyid"),
    ],
)
def test_keyids_are_checked(doc: Doc, tmp_path: Path, key: str, value: Any, name: str) -> None:
    doc["portals"]["demo"]["keys"][0][key] = value
    rejected(doc, tmp_path, name)


BAD_IDS = ["", "-lead", ".hidden", "with space", "x" * 65, "tỉnh", "demo\n", "a/b"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("table", ["portals", "finance", "banks"])
def test_bad_principal_and_bank_ids_are_rejected(
    doc: Doc, tmp_path: Path, table: str, bad: str
) -> None:
    first = next(iter(doc[table]))
    doc[table][bad] = doc[table].pop(first)
    if table == "banks":
        del doc["hub"]["default_bank"]
    rejected(doc, tmp_path, f"{table}: {bad!r} is not a valid id")


# --- banks --------------------------------------------------------------------------------


def test_a_bank_needs_a_connector(doc: Doc, tmp_path: Path) -> None:
    del doc["banks"]["vnpay"]["connector"]
    rejected(doc, tmp_path, "missing banks.vnpay.connector")


@pytest.mark.parametrize("connector", [5, "", ["vnpay"]])
def test_a_bank_connector_is_a_name(doc: Doc, tmp_path: Path, connector: Any) -> None:
    doc["banks"]["vnpay"]["connector"] = connector
    rejected(doc, tmp_path, "banks.vnpay.connector")


def test_a_bank_is_a_table(doc: Doc, tmp_path: Path) -> None:
    doc["banks"]["vnpay"] = "vnpay"
    rejected(doc, tmp_path, "banks.vnpay must be a table")


def test_two_banks_may_share_one_connector(doc: Doc, tmp_path: Path) -> None:
    doc["banks"]["vnpay-hn"] = {**doc["banks"]["vnpay"], "tmn_code": "PAYHUB02"}
    settings = parse(doc, tmp_path)
    assert {name: bank.connector for name, bank in settings.banks.items()} == {
        "vnpay": "vnpay",
        "vnpay-hn": "vnpay",
    }
    assert check_banks(settings).keys() == {"vnpay", "vnpay-hn"}


def test_an_unknown_connector_names_the_installed_ones(doc: Doc, tmp_path: Path) -> None:
    doc["banks"]["vnpay"]["connector"] = "sacombank"
    settings = parse(doc, tmp_path)  # the document is fine; the connector is checked at start
    with pytest.raises(ConfigError) as info:
        check_banks(settings)
    message = str(info.value)
    assert "'sacombank'" in message
    assert f"installed: {', '.join(available_protocols())}" in message


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("tmn_code", "SHORT", "tmn_code"),
        ("tmn_code", None, "tmn_code"),
        ("hash_secret", "", "hash_secret"),
        ("base_url", "sandbox.vnpayment.vn", "base_url"),
        ("locale", "fr", "locale"),
        ("timeout_seconds", 0, "timeout_seconds"),
        ("timeout_seconds", True, "timeout_seconds"),
    ],
)
def test_bank_options_rejected_by_the_connector_name_the_bank(
    doc: Doc, tmp_path: Path, option: str, value: Any, complaint: str
) -> None:
    if value is None:
        del doc["banks"]["vnpay"][option]
    else:
        doc["banks"]["vnpay"][option] = value
    settings = parse(doc, tmp_path)
    with pytest.raises(ConfigError, match=rf"^banks\.vnpay: {complaint}"):
        check_banks(settings)


# --- routing ------------------------------------------------------------------------------


def routing_doc(doc: Doc) -> Doc:
    """``doc`` with a second bank and a full ``[routing]`` section."""
    doc["banks"]["momo"] = {"connector": "momo"}
    doc["routing"] = {
        "order": ["vnpay", "momo"],
        "breaker": {
            "failure_threshold": 3,
            "failure_rate_percent": 40,
            "min_calls": 20,
            "window_seconds": 120,
            "open_seconds": 15,
        },
        "banks": {
            "momo": {
                "min_amount": 10_000,
                "max_amount": 20_000_000,
                "kinds": ["fee", "charge"],
                "agencies": ["H29.*", "BNV"],
            }
        },
        "rules": [{"kinds": ["tax"], "agencies": ["H01.*"], "prefer": ["momo"]}],
    }
    return doc


def test_the_routing_section_becomes_routing_settings(doc: Doc, tmp_path: Path) -> None:
    routing = parse(routing_doc(doc), tmp_path).routing
    assert routing == RoutingSettings(
        order=("vnpay", "momo"),
        breaker=BreakerPolicy(
            failure_threshold=3,
            failure_rate_percent=40,
            min_calls=20,
            window_seconds=120,
            open_seconds=15,
        ),
        banks={
            "momo": BankScope(
                min_amount=10_000,
                max_amount=20_000_000,
                kinds=frozenset({"fee", "charge"}),
                agencies=(AgencyPattern("H29", below=True), AgencyPattern("BNV")),
            )
        },
        rules=(
            PreferenceRule(
                prefer=("momo",),
                kinds=frozenset({"tax"}),
                agencies=(AgencyPattern("H01", below=True),),
            ),
        ),
    )


def test_without_a_routing_section_routing_keeps_its_defaults(doc: Doc, tmp_path: Path) -> None:
    assert parse(doc, tmp_path).routing == RoutingSettings()
    assert RoutingSettings().breaker == BreakerPolicy(
        failure_threshold=5, failure_rate_percent=50, min_calls=10, window_seconds=60,
        open_seconds=30,
    )  # fmt: skip
    doc["routing"] = {"breaker": {"open_seconds": 60}}
    routing = parse(doc, tmp_path).routing
    assert routing.breaker.open_seconds == 60 and routing.breaker.failure_threshold == 5
    assert routing.order == () and routing.banks == {} and routing.rules == ()


def test_the_default_bank_must_lead_the_routing_order(doc: Doc, tmp_path: Path) -> None:
    routing_doc(doc)["routing"]["order"] = ["momo", "vnpay"]
    rejected(doc, tmp_path, "hub.default_bank", "'vnpay'", "routing.order")
    del doc["hub"]["default_bank"]
    assert parse(doc, tmp_path).routing.order == ("momo", "vnpay")


def _set(doc: Doc, path: str, value: Any) -> None:
    *parents, last = path.split("/")
    node: Any = doc
    for step in parents:
        node = node[int(step)] if step.isdigit() else node[step]
    key: Any = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "names"),
    [
        ("routing", ["vnpay"], ["routing must be a table"]),
        ("routing/weights", {}, ["unknown key 'weights' in [routing]"]),
        ("routing/order", "vnpay", ["routing.order", "array of bank names"]),
        ("routing/order", [], ["routing.order", "array of bank names"]),
        ("routing/order", ["vnpay", 5], ["routing.order", "array of bank names"]),
        ("routing/order", ["vnpay", "acb"], ["routing.order", "'acb'", "not a configured bank"]),
        ("routing/order", ["vnpay", "vnpay"], ["routing.order", "'vnpay'", "twice"]),
        ("routing/breaker", 5, ["routing.breaker must be a table"]),
        ("routing/breaker/half_open_calls", 1, ["'half_open_calls' in [routing.breaker]"]),
        ("routing/breaker/failure_threshold", 0, ["routing.breaker.failure_threshold", "1–1000"]),
        ("routing/breaker/failure_threshold", True, ["routing.breaker.failure_threshold"]),
        ("routing/breaker/failure_rate_percent", 101, ["routing.breaker.failure_rate_percent"]),
        ("routing/breaker/failure_rate_percent", 0.5, ["routing.breaker.failure_rate_percent"]),
        ("routing/breaker/min_calls", 0, ["routing.breaker.min_calls"]),
        ("routing/breaker/window_seconds", "60", ["routing.breaker.window_seconds"]),
        ("routing/breaker/open_seconds", -1, ["routing.breaker.open_seconds", "1–3600"]),
        ("routing/banks", [], ["routing.banks must be a table"]),
        ("routing/banks/acb", {}, ["routing.banks.acb", "not a configured bank"]),
        ("routing/banks/momo", "x", ["routing.banks.momo must be a table"]),
        ("routing/banks/momo/weight", 1, ["'weight' in [routing.banks.momo]"]),
        ("routing/banks/momo/min_amount", 0, ["routing.banks.momo.min_amount", "VND"]),
        ("routing/banks/momo/max_amount", 1.5, ["routing.banks.momo.max_amount"]),
        ("routing/banks/momo/max_amount", "20000000", ["routing.banks.momo.max_amount"]),
        ("routing/banks/momo/max_amount", 5_000, ["routing.banks.momo", "above max_amount"]),
        ("routing/banks/momo/kinds", [], ["routing.banks.momo.kinds", "fee, charge"]),
        ("routing/banks/momo/kinds", "fee", ["routing.banks.momo.kinds"]),
        ("routing/banks/momo/kinds", ["fee", "phí"], ["routing.banks.momo.kinds", "'phí'"]),
        ("routing/banks/momo/kinds", ["FEE"], ["routing.banks.momo.kinds", "'FEE'"]),
        ("routing/banks/momo/agencies", [], ["routing.banks.momo.agencies"]),
        ("routing/banks/momo/agencies", ["H29*"], ["routing.banks.momo.agencies", "'H29*'"]),
        ("routing/banks/momo/agencies", [".*"], ["routing.banks.momo.agencies", "'.*'"]),
        ("routing/banks/momo/agencies", ["H 29"], ["routing.banks.momo.agencies"]),
        ("routing/banks/momo/agencies", [29], ["routing.banks.momo.agencies", "29"]),
        ("routing/rules", {"prefer": ["momo"]}, ["routing.rules must be an array"]),
        ("routing/rules/0", "momo", ["routing.rules[0] must be a table"]),
        ("routing/rules/0/prefer", DELETE, ["missing routing.rules[0].prefer"]),
        ("routing/rules/0/prefer", ["acb"], ["routing.rules[0].prefer", "'acb'"]),
        ("routing/rules/0/prefer", [], ["routing.rules[0].prefer"]),
        ("routing/rules/0/kinds", ["tip"], ["routing.rules[0].kinds", "'tip'"]),
        ("routing/rules/0/agencies", "H01", ["routing.rules[0].agencies"]),
        ("routing/rules/0/min_amount", -5, ["routing.rules[0].min_amount"]),
        ("routing/rules/0/bank", "momo", ["'bank' in [routing.rules[0]]"]),
    ],
)
def test_routing_values_are_checked(
    doc: Doc, tmp_path: Path, path: str, value: Any, names: list[str]
) -> None:
    _set(routing_doc(doc), path, value)
    rejected(doc, tmp_path, *names)


def test_a_rule_that_matches_everything_is_refused(doc: Doc, tmp_path: Path) -> None:
    routing_doc(doc)["routing"]["rules"] = [{"prefer": ["momo"]}]
    rejected(doc, tmp_path, "routing.rules[0] matches every payment")


# --- properties ---------------------------------------------------------------------------

KEYS = [
    "hub", "portals", "finance", "banks", "database_url", "timezone", "public_url", "host",
    "port", "default_bank", "signing_keys", "rate_limit_per_second", "kid",
    "private_key_file", "retired", "callback_url", "keys", "whsec", "keyid", "algorithm",
    "public_key", "public_key_file", "secret_file", "connector", "demo", "vnpay",
    "routing", "order", "breaker", "rules", "prefer", "kinds", "agencies", "min_amount",
    "max_amount", "failure_threshold", "failure_rate_percent", "open_seconds",
]  # fmt: skip
LIKELY_VALUES = [
    "sqlite:///x.db", "postgresql://h/db", SUPPORTED_TIMEZONE, "http://h", "ed25519",
    "hmac-sha256", "keys/hub.pem", "keys/other.secret", "keys", "whsec_", "vnpay", "",
    "fee", "H29.*",
]  # fmt: skip
SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(LIKELY_VALUES)
    | st.datetimes()
)
NAMES = st.sampled_from(KEYS) | st.text(max_size=8)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=12,
)


def _fails_only_with_config_error(raw: dict[str, Any], base: Path) -> None:
    try:
        parse_settings(raw, base / "payhub.toml")
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.dictionaries(NAMES, VALUES, max_size=5))
def test_random_documents_fail_only_with_config_error(raw: dict[str, Any]) -> None:
    _fails_only_with_config_error(raw, Path("/nonexistent-payhub"))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@pytest.fixture(name="valid", scope="module")
def _valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Doc, Path]:
    base = tmp_path_factory.mktemp("valid")
    return routing_doc(settings_document(base, "sqlite:///payhub.db", PORT)[0]), base


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_valid_document_changed_at_one_place_fails_only_with_config_error(
    valid: tuple[Doc, Path], data: st.DataObject
) -> None:
    original, base = valid
    doc = copy.deepcopy(original)
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    if action == "replace":
        parent[path[-1]] = data.draw(VALUES, label="value")
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(NAMES, label="key")] = data.draw(VALUES, label="value")
    else:
        parent.append(data.draw(VALUES, label="value"))
    _fails_only_with_config_error(doc, base)


def test_the_document_in_the_settings_docstring_is_the_format(tmp_path: Path) -> None:
    """The example at the top of ``payhub.settings`` must stay a valid configuration."""
    import payhub.settings as module

    assert module.__doc__ is not None
    example = module.__doc__.split("::", 1)[1]
    text = "\n".join(line[4:] for line in example.splitlines())
    text = text.replace("whsec_…", "whsec_" + "QUJD" * 8).replace('"…"', f'"{VNPAY_SECRET}"')
    keys = tmp_path / "keys"
    write_private_key(keys / "hub-20261128.pem", Ed25519PrivateKey.generate())
    (keys / "demo.pub.pem").write_text(public_pem(Ed25519PrivateKey.generate()))
    (keys / "finance.pub.pem").write_text(public_pem(Ed25519PrivateKey.generate()))
    path = tmp_path / "payhub.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path)
    assert settings.default_bank == "vnpay"
    assert check_banks(settings).keys() == {"vnpay"}
