"""Certificate pinning: vCenter is trusted by the SHA-1 thumbprint in the configuration."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl

from infra.eksa.errors import VsphereTlsError, VsphereUnreachableError


def normalize_thumbprint(value: str) -> str:
    """``ab:cd:…`` or ``ABCD…`` → ``AB:CD:…`` (the form vCenter and eksctl show)."""
    digits = value.replace(":", "").strip().upper()
    if not re.fullmatch(r"[0-9A-F]{40}", digits):
        raise VsphereTlsError(f"{value!r} is not a SHA-1 thumbprint (40 hex digits, colons optional)")
    return ":".join(digits[i : i + 2] for i in range(0, 40, 2))


def sha1_thumbprint(der: bytes) -> str:
    return normalize_thumbprint(hashlib.sha1(der).hexdigest())  # vSphere's own pin format


def fetch_certificate(host: str, port: int, *, timeout: float) -> bytes:
    """The DER certificate the server presents, read without trusting it (it is checked by the caller)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as exc:
        raise VsphereTlsError(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise VsphereUnreachableError(
            f"cannot reach vCenter at {host}:{port}: {exc.strerror or exc}; "
            "check vsphere.server and the network"
        ) from None
    if not der:
        raise VsphereTlsError(f"{host}:{port} presented no certificate")
    return der


def pinned_context(der: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly this certificate, on every connection.

    Host names are not checked: the pin identifies the server more tightly than a name does, and
    vCenter certificates often name the FQDN while the configuration uses an address.
    """
    context = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))
    context.check_hostname = False
    # Accept the pinned leaf itself as the trust anchor (vCenter's VMCA chain is not needed).
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verified_context(*, host: str, port: int, thumbprint: str, timeout: float) -> ssl.SSLContext:
    """Fetch the server certificate, compare its SHA-1 with ``thumbprint``, and pin it."""
    expected = normalize_thumbprint(thumbprint)
    der = fetch_certificate(host, port, timeout=timeout)
    actual = sha1_thumbprint(der)
    if actual != expected:
        raise VsphereTlsError(
            f"vCenter {host}:{port} presents certificate thumbprint {actual}, not the configured "
            f"vsphere.thumbprint {expected}; verify the new certificate out of band before updating it"
        )
    return pinned_context(der)
