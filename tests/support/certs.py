"""Throw-away certificate authorities and server certificates, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A server certificate, its key, and the CA certificate that signed it (PEM files)."""

    cert: Path
    key: Path
    ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr}")


def make_ca(folder: Path, name: str = "geodrop test CA") -> tuple[Path, Path]:
    """A self-signed CA valid for two days: its certificate and key."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path], addresses: Sequence[str]) -> TlsFiles:
    """A server certificate signed by ``ca`` for the IP addresses ``addresses``."""
    ca_cert, ca_key = ca
    folder.mkdir(parents=True, exist_ok=True)
    cert, key, request = folder / "server.pem", folder / "server.key", folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n"
        f"subjectAltName = {', '.join(f'IP:{a}' for a in addresses)}\n",
        encoding="utf-8",
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=geodrop test server", "-keyout", key, "-out", request,
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "2", "-extfile", extensions, "-out", cert,
        cwd=folder,
    )  # fmt: skip
    return TlsFiles(cert=cert, key=key, ca=ca_cert)
