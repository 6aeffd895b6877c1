"""Credentials for the engines hpckit starts: per-run TLS for Dask (scheduler, workers, client).

A Dask scheduler without TLS runs any pickled function a connecting client sends it, as the user who
started it. hpckit's own clusters therefore use TLS with a certificate made for the run, and a client
without that certificate is refused.

* :func:`temporary_security`: in memory (``distributed.security.Security.temporary()``), for clusters
  whose workers are started by this process (``DaskExecutor()``'s LocalCluster);
* :func:`write_tls_files`: the same, written to a 0700 directory (key 0600), for workers that start
  elsewhere and read the files over a shared filesystem (batch jobs of ``hpckit launch``); the
  certificate also names the addresses the scheduler listens on (``hosts``) in its subjectAltName, so it
  is valid for that address even for a client that checks host names (distributed itself does not: it
  trusts exactly this certificate, which is also the CA).
  ``TLSFiles.security()`` is what the scheduler side and the client use, ``TLSFiles.worker_args()``
  what a hand-written ``dask worker`` command line needs; dask-jobqueue adds the latter itself when given
  ``security=TLSFiles.security()`` and ``protocol="tls://"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpckit.io.paths import private_dir

__all__ = ["TLSFiles", "temporary_security", "write_tls_files"]


def _security_cls() -> Any:
    from hpckit.core.extras import require_module

    return require_module("distributed.security", "the dask engine").Security


def temporary_security() -> Any:
    """A fresh in-memory self-signed certificate and key for every role, encryption required. Without
    ``cryptography`` a :class:`~hpckit.core.errors.MissingExtra` (one line with the install command)."""
    from hpckit.core.extras import require_module

    require_module("cryptography", "TLS for the dask engine")
    return _security_cls().temporary()


@dataclass(frozen=True)
class TLSFiles:
    """A run's certificate (also its own CA) and private key on disk."""

    directory: Path
    ca: Path
    cert: Path
    key: Path

    def security(self) -> Any:
        """``Security`` for the scheduler, workers and client, from the files; encryption required."""
        c, k = str(self.cert), str(self.key)
        return _security_cls()(
            tls_ca_file=str(self.ca), tls_scheduler_cert=c, tls_scheduler_key=k, tls_worker_cert=c,
            tls_worker_key=k, tls_client_cert=c, tls_client_key=k, require_encryption=True,
        )

    def worker_args(self) -> list[str]:
        """``dask worker`` arguments that make a worker use these files."""
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def _write_private(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _certificate(hosts: tuple[str, ...]) -> tuple[str, str]:
    """(cert PEM, key PEM): self-signed like ``Security.temporary()`` (CN and DNS name ``dask-internal``),
    plus each of ``hosts`` (IP address or name) in the subjectAltName."""
    import datetime
    import ipaddress

    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise ImportError("TLS for Dask needs `cryptography`; install it with: pip install 'hpckit[dask]'") from None
    names: list = [x509.DNSName("dask-internal")]
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def write_tls_files(directory: str | os.PathLike, hosts: tuple[str, ...] = ()) -> TLSFiles:
    """Make a new certificate and key in ``directory`` (created 0700, must be new or empty of them):
    ``cert.pem`` (0600; also the CA; valid for ``hosts``, the addresses the scheduler listens on) and
    ``key.pem`` (0600)."""
    d = private_dir(directory)
    cert_pem, key_pem = _certificate(tuple(hosts))
    cert, key = d / "cert.pem", d / "key.pem"
    _write_private(cert, cert_pem, 0o600)
    _write_private(key, key_pem, 0o600)
    return TLSFiles(directory=d, ca=cert, cert=cert, key=key)
