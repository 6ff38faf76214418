"""TLS failures name their real cause: a weak key on the pinned certificate is not a thumbprint problem.

A loopback TLS server presents certificates made here with the openssl CLI. eksctl anywhere's
validateThumbprint (pkg/providers/vsphere/validator.go) compares the pin only; whether OpenSSL
accepts the certificate itself is a separate question, answered separately.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.eksa import tls
from infra.eksa.client import Credentials, VsphereClient
from infra.eksa.errors import VsphereTlsError


def _certificate(tmp_path: Path, name: str, key: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests need the openssl CLI (apt-get install -y openssl)", pytrace=False)
    cert, private = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    request = ["req", "-x509", "-newkey", key, "-nodes", "-keyout", str(private), "-out", str(cert)]
    subprocess.run(
        [
            openssl,
            *request,
            "-days",
            "1",
            "-subj",
            "/CN=vcenter.test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, private


def _serve(cert: Path, key: Path) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # the server side agrees to present the weak key
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # close() does not wake a blocked accept(): poll the stop flag
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as stream:
                    stream.recv(1)
            except (OSError, ssl.SSLError):
                pass  # the client refused the certificate: expected

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture
def weak_server(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A loopback server with a 1024-bit RSA certificate, and that certificate's SHA-1 thumbprint."""
    cert, key = _certificate(tmp_path, "weak", "rsa:1024")
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    for port in _serve(cert, key):
        yield port, tls.sha1_thumbprint(der)


def test_a_weak_key_with_the_right_pin_names_the_key(weak_server: tuple[int, str]) -> None:
    port, thumbprint = weak_server
    with pytest.raises(VsphereTlsError) as info:
        tls.verified_context(host="127.0.0.1", port=port, thumbprint=thumbprint, timeout=5)
    message = str(info.value)
    assert message.startswith(
        f"vCenter 127.0.0.1:{port} presents the pinned certificate (vsphere.thumbprint matches), but OpenSSL "
        "refuses it: its key is too weak for OpenSSL (an RSA key under 2048 bits?)"
    )
    assert "2048-bit or larger key" in message and "check vsphere.thumbprint" not in message


def test_the_client_reports_the_weak_key_before_sending_the_password(weak_server: tuple[int, str]) -> None:
    port, thumbprint = weak_server
    client = VsphereClient(
        server=f"127.0.0.1:{port}", credentials=Credentials("u", "p"), thumbprint=thumbprint, timeout=5
    )
    with pytest.raises(VsphereTlsError, match=r"refuses it: its key is too weak"):
        client.connect()


def test_a_wrong_pin_on_a_weak_certificate_is_still_a_thumbprint_mismatch(
    weak_server: tuple[int, str],
) -> None:
    port, _thumbprint = weak_server
    with pytest.raises(VsphereTlsError, match=r"presents certificate thumbprint .*, not the configured"):
        tls.verified_context(host="127.0.0.1", port=port, thumbprint="AB" * 20, timeout=5)


def test_a_strong_certificate_with_its_pin_is_accepted(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, "strong", "rsa:2048")
    thumbprint = tls.sha1_thumbprint(ssl.PEM_cert_to_DER_cert(cert.read_text()))
    for port in _serve(cert, key):
        context = tls.verified_context(host="127.0.0.1", port=port, thumbprint=thumbprint, timeout=5)
        assert context.verify_mode == ssl.CERT_REQUIRED
