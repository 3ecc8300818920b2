"""TLS material for a local production layout: a private CA and a server certificate it signed
for localhost / 127.0.0.1 / ::1, made with the openssl command line. A client verifies Herald's
certificate with the CA file (`ssl.create_default_context(cafile=...)`, `curl --cacert`) exactly
as it would verify a real one, instead of switching verification off."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Local certificates live for 30 days and are remade when less than a day is left: long enough
# for a working month of `make cluster`, short enough that a copied key soon expires.
VALID_DAYS = 30
RENEW_BEFORE_SECONDS = 86400
OPENSSL_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class TlsFiles:
    ca_certificate: Path  # give this to clients
    certificate: Path  # server certificate (nginx ssl_certificate)
    key: Path  # server key (nginx ssl_certificate_key)


def ensure_certificates(
    directory: Path,
    *,
    hosts: Sequence[str] = ("localhost",),
    addresses: Sequence[str] = ("127.0.0.1", "::1"),
) -> TlsFiles:
    """Make (or keep, if still valid for the same names) a CA and a server certificate in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    names = ",".join([*(f"DNS:{host}" for host in hosts), *(f"IP:{address}" for address in addresses)])
    stamp = directory / "names"
    if _still_valid(files) and stamp.exists() and stamp.read_text() == names:
        return files
    with tempfile.TemporaryDirectory(prefix="herald-tls-") as scratch:
        config = Path(scratch) / "openssl.cnf"
        # Our own config, so the result does not depend on the distribution's openssl.cnf. The
        # extensions are the ones strict verifiers (e.g. Python 3.13's VERIFY_X509_STRICT) want.
        config.write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = Herald local CA\n"
            "[ca]\nbasicConstraints = critical, CA:TRUE, pathlen:0\n"
            "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
            "[server]\nbasicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
            f"subjectAltName = {names}\nsubjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid:always\n"
        )
        ca_key = directory / "ca.key"
        csr = Path(scratch) / "server.csr"
        # ECDSA P-256: small, fast, and accepted by every current client.
        curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            "req",
            "-x509",
            *curve,
            "-keyout",
            ca_key,
            "-out",
            files.ca_certificate,
            "-days",
            VALID_DAYS,
            "-config",
            config,
            "-extensions",
            "ca",
        )
        _openssl(
            "req", "-new", *curve, "-keyout", files.key, "-out", csr, "-subj", f"/CN={hosts[0]}", "-config", config
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            files.ca_certificate,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-CAserial",
            Path(scratch) / "ca.srl",
            "-out",
            files.certificate,
            "-days",
            VALID_DAYS,
            "-extfile",
            config,
            "-extensions",
            "server",
        )
    for key in (ca_key, files.key):
        key.chmod(0o600)
    stamp.write_text(names)
    return files


def _still_valid(files: TlsFiles) -> bool:
    for certificate in (files.ca_certificate, files.certificate):
        if not certificate.exists():
            return False
        result = subprocess.run(
            ["openssl", "x509", "-checkend", str(RENEW_BEFORE_SECONDS), "-noout", "-in", str(certificate)],
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            return False
    return files.key.exists()


def _openssl(*args: object) -> None:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_SECONDS
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
