"""RSA key material for the payment SDKs, accepted in whatever shape merchants paste it.

PEM with or without header lines, PKCS#1 or PKCS#8, LF or CRLF, even on one line. Each SDK gets
what it needs: alipay-sdk-python wants the bare base64 body of a PKCS#1 private key and of a
SubjectPublicKeyInfo public key; wechatpayv3 wants full PKCS#8 / SubjectPublicKeyInfo PEM.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured

_PEM_LINE = re.compile(r"-----(BEGIN|END)[A-Z ]*-----")


def _der(text: str, variable: str) -> bytes:
    # Keys pasted into .env files often carry literal "\n" escapes instead of line breaks.
    body = "".join(_PEM_LINE.sub("", text.replace("\\n", "\n")).split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{variable}: not a PEM or base64 RSA key") from None


def private_key_load(text: str, variable: str) -> rsa.RSAPrivateKey:
    """Load an RSA private key (PKCS#1 or PKCS#8). Raises ImproperlyConfigured naming ``variable``."""
    try:
        key = serialization.load_der_private_key(_der(text, variable), password=None)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(f"{variable}: not an unencrypted RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(f"{variable}: not an RSA private key")
    return key


def public_key_load(text: str, variable: str) -> rsa.RSAPublicKey:
    """Load an RSA public key (SubjectPublicKeyInfo or PKCS#1). Raises ImproperlyConfigured."""
    try:
        key = serialization.load_der_public_key(_der(text, variable))
    except (ValueError, TypeError):
        raise ImproperlyConfigured(f"{variable}: not an RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ImproperlyConfigured(f"{variable}: not an RSA public key")
    return key


def _body(pem: bytes) -> str:
    return "".join(line for line in pem.decode().splitlines() if not line.startswith("-----"))


def private_key_pkcs1_body(key: rsa.RSAPrivateKey) -> str:
    """The base64 body of a PKCS#1 PEM, as alipay-sdk-python signs with."""
    return _body(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )


def private_key_pkcs8_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_spki_body(key: rsa.RSAPublicKey) -> str:
    """The base64 body of a SubjectPublicKeyInfo PEM, as alipay-sdk-python verifies with."""
    return _body(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def public_key_spki_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
