"""Tests of the ``[tls]`` table: its files must exist and load, or the key is named."""

from __future__ import annotations

import copy
import ssl
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from geodrop.cli import main
from geodrop.cli.exitcodes import CONFIG as EXIT_CONFIG
from geodrop.config import parse_config
from geodrop.errors import ConfigError
from support.certs import TlsFiles, make_ca, make_server_cert

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dev-cluster.toml"
_EXAMPLE_DOCUMENT: dict[str, Any] = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    root = tmp_path_factory.mktemp("certs")
    return make_server_cert(root / "server", make_ca(root / "ca"), ["127.0.0.1"])


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    root = tmp_path_factory.mktemp("other-certs")
    return make_server_cert(root / "server", make_ca(root / "ca", "other CA"), ["127.0.0.1"])


def with_tls(**table: str) -> dict[str, Any]:
    document = copy.deepcopy(_EXAMPLE_DOCUMENT)
    document["tls"] = table
    return document


def test_no_tls_table_means_plain_http() -> None:
    assert parse_config(copy.deepcopy(_EXAMPLE_DOCUMENT), EXAMPLE.parent).tls is None


def test_a_valid_tls_table_gives_server_and_client_contexts(files: TlsFiles) -> None:
    document = with_tls(cert_file="server.pem", key_file="server.key", ca_file=str(files.ca))
    config = parse_config(document, files.cert.parent)
    assert config.tls is not None
    assert config.tls.cert_file == files.cert  # relative to the config file's folder
    assert config.tls.ca_file == files.ca
    server = config.tls.server_context()
    assert server.protocol is ssl.PROTOCOL_TLS_SERVER
    assert server.minimum_version is ssl.TLSVersion.TLSv1_2
    client = config.tls.client_context()
    assert client.verify_mode is ssl.CERT_REQUIRED
    assert client.check_hostname
    assert client.minimum_version is ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in client.get_ca_certs()] == [
        ((("commonName", "geodrop test CA"),),)
    ]


def test_without_ca_file_peers_are_checked_against_the_system_store(files: TlsFiles) -> None:
    config = parse_config(
        with_tls(cert_file=str(files.cert), key_file=str(files.key)),
        files.cert.parent,
    )
    assert config.tls is not None
    assert config.tls.ca_file is None
    assert config.tls.client_context().verify_mode is ssl.CERT_REQUIRED


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return path


def _encrypted_key(tmp_path: Path, files: TlsFiles) -> Path:
    path = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", files.key, "-aes256", "-passout", "pass:secret", "-out", path],
        check=True,
        capture_output=True,
    )
    return path


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("missing cert", "tls.cert_file"),
        ("garbage cert", "tls.cert_file"),
        ("key as cert", "tls.cert_file"),
        ("missing key", "tls.key_file"),
        ("garbage key", "tls.key_file"),
        ("key of another cert", "tls.key_file"),
        ("encrypted key", "tls.key_file"),
        ("missing ca", "tls.ca_file"),
        ("garbage ca", "tls.ca_file"),
        ("no cert_file", "tls.cert_file"),
        ("no key_file", "tls.key_file"),
        ("unknown key", "tls.certificate"),
    ],
)
def test_bad_tls_files_name_their_key(
    case: str, key: str, files: TlsFiles, other: TlsFiles, tmp_path: Path
) -> None:
    table = {"cert_file": str(files.cert), "key_file": str(files.key), "ca_file": str(files.ca)}
    garbage = str(_garbage(tmp_path))
    changes: dict[str, dict[str, str]] = {
        "missing cert": {"cert_file": str(tmp_path / "nope.pem")},
        "garbage cert": {"cert_file": garbage},
        "key as cert": {"cert_file": str(files.key)},
        "missing key": {"key_file": str(tmp_path / "nope.key")},
        "garbage key": {"key_file": garbage},
        "key of another cert": {"key_file": str(other.key)},
        "encrypted key": {"key_file": str(_encrypted_key(tmp_path, files))},
        "missing ca": {"ca_file": str(tmp_path / "nope-ca.pem")},
        "garbage ca": {"ca_file": garbage},
        "unknown key": {"certificate": "x"},
    }
    table.update(changes.get(case, {}))
    if case.startswith("no "):
        del table[case.removeprefix("no ")]
    with pytest.raises(ConfigError) as raised:
        parse_config(with_tls(**table), tmp_path)
    assert raised.value.message.startswith(f"{key}:"), raised.value.message
    if case == "encrypted key":  # refused at once, never an interactive password prompt
        assert "encrypted" in raised.value.message


def test_check_config_exits_78_naming_the_tls_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    path = tmp_path / "cluster.toml"
    path.write_text(text + '\n[tls]\ncert_file = "missing.pem"\nkey_file = "missing.key"\n')
    assert main(["check-config", "--config", str(path)]) == EXIT_CONFIG
    assert "tls.cert_file: no such file" in capsys.readouterr().err
