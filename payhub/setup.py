"""Writing local setups: ``payhub init DIR``, ``portal add``, ``finance add``, ``keys rotate``.

Edits go through tomlkit so an operator's comments and layout survive, and every edit
is validated as a whole configuration before the file is replaced.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, MutableSequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import tomlkit
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tomlkit.exceptions import ParseError as TomlParseError

from payhub.connectors.port import PrivateFile
from payhub.connectors.registry import available_protocols, connector_class
from payhub.domain.clock import system_clock
from payhub.errors import ConfigError
from payhub.settings import load_settings, not_a_file, parse_settings

DEFAULT_PORT = 8080
GITIGNORE = """\
# Written by `payhub init`: private keys and the database stay out of version control.
keys/*
!keys/*.pub.pem
payhub.db
payhub.db-*
"""
PREFERRED_BANKS = ("vnpay", "momo", "vietqr")
"""The first of these that is installed becomes ``init``'s default bank."""


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """A PKCS#8 PEM readable by its owner only."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_owner_only(path, data)


def write_owner_only(path: Path, data: bytes) -> None:
    """``data`` in a file readable and writable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode above applies only to a file that did not exist
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def init_setup(directory: Path, *, port: int = DEFAULT_PORT, force: bool = False) -> Path:
    """A self-contained local setup in ``directory``; returns the config file's path."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be 1–65535, not {port}")
    directory = directory.resolve()
    config_path = directory / "payhub.toml"
    if config_path.exists() and not force:
        raise ConfigError(f"{config_path} already exists (use --force to overwrite)")
    keys_dir = directory / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    public_url = f"http://127.0.0.1:{port}"

    kid = "hub-" + system_clock().strftime("%Y%m%d%H%M%S")
    write_private_key(keys_dir / f"{kid}.pem", Ed25519PrivateKey.generate())
    principals: dict[str, str] = {}
    for name in ("demo", "finance"):
        key = Ed25519PrivateKey.generate()
        write_private_key(keys_dir / f"{name}.pem", key)
        (keys_dir / f"{name}.pub.pem").write_text(public_pem(key))
        principals[name] = public_pem(key)

    doc = tomlkit.document()
    doc.add(tomlkit.comment("PayHub local setup written by `payhub init`."))
    hub = tomlkit.table()
    hub["database_url"] = "sqlite:///payhub.db"
    hub["timezone"] = "Asia/Ho_Chi_Minh"
    hub["public_url"] = public_url
    hub["host"] = "127.0.0.1"
    hub["port"] = port
    installed = available_protocols()
    protocols = [p for p in PREFERRED_BANKS if p in installed]
    protocols += [p for p in installed if p not in PREFERRED_BANKS]
    if protocols:
        hub["default_bank"] = protocols[0]
    signing = tomlkit.aot()
    signing.append(tomlkit.item({"kid": kid, "private_key_file": f"keys/{kid}.pem"}))
    hub["signing_keys"] = signing
    doc["hub"] = hub

    portals = tomlkit.table(is_super_table=True)
    callback_port = port + 1 if port < 65535 else port - 1
    portals["demo"] = _principal_table(
        "demo", "keys/demo.pub.pem", callback=f"http://127.0.0.1:{callback_port}/payhub/events"
    )
    doc["portals"] = portals
    finance = tomlkit.table(is_super_table=True)
    finance["finance"] = _principal_table("finance", "keys/finance.pub.pem")
    doc["finance"] = finance

    banks = tomlkit.table(is_super_table=True)
    for protocol in protocols:
        options: dict[str, Any] = {"connector": protocol}
        options.update(connector_class(protocol).demo_options(f"{public_url}/sim/{protocol}"))
        for option, value in options.items():
            if isinstance(value, PrivateFile):  # a bank's secret goes to keys/, not the config
                path = keys_dir / value.name
                write_owner_only(path, value.content)
                options[option] = str(path)
        banks[protocol] = options
    doc["banks"] = banks
    config_path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    load_settings(config_path)  # what init writes must load
    _ignore_secrets(directory / ".gitignore")
    return config_path


def private_key_files(directory: Path) -> list[Path]:
    """The private keys of a setup in ``directory``: what must never be shared or committed."""
    return sorted(p for p in (directory / "keys").glob("*.pem") if not p.name.endswith(".pub.pem"))


def _ignore_secrets(path: Path) -> None:
    """Keep the keys and the database out of git, adding to a ``.gitignore`` already there."""
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    missing = [line for line in GITIGNORE.splitlines() if line not in existing.splitlines()]
    if not existing:
        path.write_text(GITIGNORE, encoding="utf-8")
    elif [line for line in missing if not line.startswith("#")]:
        separator = "" if existing.endswith("\n") else "\n"
        path.write_text(existing + separator + "\n".join(missing) + "\n", encoding="utf-8")


def _principal_table(keyid: str, public_key_file: str, *, callback: str | None = None) -> Any:
    table = tomlkit.table()
    if callback is not None:
        table["callback_url"] = callback
    keys = tomlkit.aot()
    keys.append(
        tomlkit.item({"keyid": keyid, "algorithm": "ed25519", "public_key_file": public_key_file})
    )
    table["keys"] = keys
    return table


def add_principal(
    config: Path,
    kind: str,
    principal_id: str,
    *,
    public_key: str | None = None,
    hmac_secret_file: str | None = None,
    callback: str | None = None,
    whsec: str | None = None,
) -> None:
    """Add a portal (``kind='portals'``) or finance user (``'finance'``) with one key."""
    config = config.resolve()
    try:
        original = config.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {config}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(not_a_file(config)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config}: {exc}") from exc
    try:
        doc = tomlkit.parse(original)
    except TomlParseError as exc:
        raise ConfigError(f"{config} is not valid TOML: {exc}") from exc
    section = doc.setdefault(kind, tomlkit.table(is_super_table=True))
    if not isinstance(section, MutableMapping):
        raise ConfigError(f"{kind} must be a table")
    if principal_id in section:
        raise ConfigError(f"{kind}.{principal_id} already exists")
    key: dict[str, Any] = {"keyid": principal_id}
    if public_key is not None:
        key["algorithm"] = "ed25519"
        key["public_key"] = tomlkit.string(_read_public_key(public_key), multiline=True)
    elif hmac_secret_file is not None:
        key["algorithm"] = "hmac-sha256"
        key["secret_file"] = str(Path(hmac_secret_file).resolve())
    else:
        raise ConfigError("give --public-key PEM or --hmac-secret-file F")
    table = tomlkit.table()
    if callback is not None:
        table["callback_url"] = callback
    if whsec is not None:
        table["whsec"] = whsec
    keys = tomlkit.aot()
    keys.append(tomlkit.item(key))
    table["keys"] = keys
    section[principal_id] = table
    text = tomlkit.dumps(doc)
    parse_settings(tomlkit.loads(text).unwrap(), config)
    temporary = config.with_name(config.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.chmod(temporary, config.stat().st_mode & 0o777)
        temporary.replace(config)
    finally:
        temporary.unlink(missing_ok=True)


def _read_public_key(value: str) -> str:
    if value.lstrip().startswith("-----BEGIN"):
        return value.strip() + "\n"
    try:
        return Path(value).read_text(encoding="utf-8").strip() + "\n"
    except OSError as exc:
        raise ConfigError(f"cannot read public key {value}: {exc.strerror}") from exc


HUB_KEY_OVERLAP = timedelta(days=7)
"""How long a rotated-out hub key stays published and keeps signing ``v1a``.

Long enough for every portal to refetch the JWKS (the SDK does when no key verifies)
and for every hub process to be restarted with the new key; a portal holding either
key verifies every webhook of the overlap, because both signatures are sent.
"""


@dataclass(frozen=True)
class Rotation:
    new_kid: str
    overlapping: list[tuple[str, datetime]]
    dropped: list[str]


def rotate_hub_key(config: Path, *, now: datetime | None = None) -> Rotation:
    """A new current hub key; the previous ones sign and stay published until their overlap ends.

    Keys whose overlap has ended leave the configuration (their files stay on disk).
    The private key is written readable by its owner only and never printed.
    """
    now = now or system_clock()
    config = config.resolve()
    try:
        original = config.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {config}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(not_a_file(config)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config}: {exc}") from exc
    try:
        doc = tomlkit.parse(original)
    except TomlParseError as exc:
        raise ConfigError(f"{config} is not valid TOML: {exc}") from exc
    current = load_settings(config)
    hub = doc["hub"]
    assert isinstance(hub, MutableMapping)
    entries = hub["signing_keys"]
    assert isinstance(entries, MutableSequence)
    kids = {key.kid for key in current.hub_keys}
    new_kid = "hub-" + now.strftime("%Y%m%d%H%M%S")
    suffix = 1
    while new_kid in kids:
        suffix += 1
        new_kid = "hub-" + now.strftime("%Y%m%d%H%M%S") + f"-{suffix}"
    key_file = f"keys/{new_kid}.pem"
    overlapping: list[tuple[str, datetime]] = []
    dropped: list[str] = []
    for entry, key in reversed(list(zip(list(entries), current.hub_keys, strict=True))):
        if not key.valid_at(now):
            dropped.append(key.kid)
            entries.remove(entry)
            continue
        ends = key.expires_at or now + HUB_KEY_OVERLAP
        entry["expires_at"] = ends
        overlapping.append((key.kid, ends))
    entries.insert(0, tomlkit.item({"kid": new_kid, "private_key_file": key_file}))
    write_private_key(config.parent / key_file, Ed25519PrivateKey.generate())
    text = tomlkit.dumps(doc)
    parse_settings(tomlkit.loads(text).unwrap(), config)
    temporary = config.with_name(config.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.chmod(temporary, config.stat().st_mode & 0o777)
        temporary.replace(config)
    finally:
        temporary.unlink(missing_ok=True)
    return Rotation(new_kid, overlapping[::-1], dropped[::-1])
