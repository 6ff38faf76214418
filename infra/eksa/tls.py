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


# OpenSSL's X509_V_ERR_* codes for a certificate refused although it is the pinned one.
_WEAK = {
    66: "its key is too weak for OpenSSL (an RSA key under 2048 bits?)",  # EE_KEY_TOO_SMALL
    67: "its issuer's key is too weak for OpenSSL",  # CA_KEY_TOO_SMALL
    68: "it is signed with a digest OpenSSL considers too weak (SHA-1 or MD5)",  # CA_MD_TOO_WEAK
}
_DATES = {9: "it is not valid yet", 10: "it has expired"}


def refused_certificate(host: str, port: int, exc: ssl.SSLCertVerificationError) -> VsphereTlsError:
    """The pinned certificate itself is refused: name the cause (weak key, dates, chain), not the pin."""
    code = exc.verify_code
    detail = exc.verify_message or exc.reason or str(exc)
    if code in _WEAK:
        cause, fix = _WEAK[code], "reissue the vCenter certificate with a 2048-bit or larger key and SHA-256"
    elif code in _DATES:
        cause, fix = _DATES[code], "renew the vCenter certificate (or fix this machine's clock)"
    else:
        cause, fix = "its chain is not trusted", "give vCenter a certificate OpenSSL accepts"
    return VsphereTlsError(
        f"vCenter {host}:{port} presents the pinned certificate (vsphere.thumbprint matches), but OpenSSL "
        f"refuses it: {cause} ({detail}); {fix}, or set vsphere.insecure=true for a lab"
    )


def _handshake(context: ssl.SSLContext, host: str, port: int, *, timeout: float) -> None:
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            pass
    except ssl.SSLCertVerificationError as exc:
        raise refused_certificate(host, port, exc) from None
    except ssl.SSLError as exc:
        raise VsphereTlsError(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise VsphereUnreachableError(
            f"cannot reach vCenter at {host}:{port}: {exc.strerror or exc}; "
            "check vsphere.server and the network"
        ) from None


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
    context = pinned_context(der)
    # The pin matched; a verified handshake now tells whether OpenSSL accepts the certificate itself
    # before the password is sent, so a weak key is never reported as a thumbprint problem.
    _handshake(context, host, port, timeout=timeout)
    return context
