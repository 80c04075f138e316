"""Encryption at rest for card keys: AES-256-GCM under versioned keys, HMAC-SHA256 blind index.

A ciphertext is ``nonce (12 bytes) || ciphertext+tag``; the key version is stored beside it.
The associated data binds a ciphertext to its product, so a row copied onto another product
does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12


@dataclass(frozen=True)
class Keyring:
    current_version: int
    keys: dict[int, bytes]
    index_key: bytes


def _decode_key(raw: str, variable: str) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(f"{variable}: a key is not valid base64") from exc
    if len(key) != 32:
        raise ImproperlyConfigured(f"{variable}: every key must be 32 bytes (base64 of 32 random bytes)")
    return key


def keyring_parse(*, keys_setting: str, index_key_setting: str) -> Keyring:
    """Parse ``CARDPOOL_KEYS`` ("1:BASE64,2:BASE64") and ``CARDPOOL_INDEX_KEY``.

    Raises ImproperlyConfigured naming the variable when anything is malformed.
    """
    keys: dict[int, bytes] = {}
    for item in (part for part in keys_setting.split(",") if part.strip()):
        version, sep, raw = item.partition(":")
        if not sep or not version.strip().isdigit():
            raise ImproperlyConfigured("CARDPOOL_KEYS: write each key as VERSION:BASE64KEY, comma-separated")
        number = int(version)
        if number in keys:
            raise ImproperlyConfigured(f"CARDPOOL_KEYS: version {number} is listed twice")
        keys[number] = _decode_key(raw, "CARDPOOL_KEYS")
    if not keys:
        raise ImproperlyConfigured("CARDPOOL_KEYS: no key given")
    return Keyring(
        current_version=max(keys),
        keys=keys,
        index_key=_decode_key(index_key_setting, "CARDPOOL_INDEX_KEY"),
    )


@lru_cache(maxsize=4)
def _keyring_cached(keys_setting: str, index_key_setting: str) -> Keyring:
    return keyring_parse(keys_setting=keys_setting, index_key_setting=index_key_setting)


def keyring() -> Keyring:
    return _keyring_cached(settings.CARDPOOL_KEYS, settings.CARDPOOL_INDEX_KEY)


def secret_normalize(secret: str) -> str:
    """The canonical form of a key: NFKC (full-width letters become ASCII), outer blanks removed."""
    return unicodedata.normalize("NFKC", secret).strip()


def _aad(product_id: int) -> bytes:
    return f"kameng:cardkey:{product_id}".encode()


def secret_encrypt(*, secret: str, product_id: int) -> tuple[int, bytes]:
    """Encrypt under the current key; returns (key_version, nonce || ciphertext)."""
    ring = keyring()
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(ring.keys[ring.current_version]).encrypt(nonce, secret.encode(), _aad(product_id))
    return ring.current_version, nonce + sealed


def secret_decrypt(*, ciphertext: bytes, key_version: int, product_id: int) -> str:
    """Decrypt one key. Raises KeyError for an unknown key version, InvalidTag for tampering."""
    ring = keyring()
    data = bytes(ciphertext)
    return AESGCM(ring.keys[key_version]).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(product_id)).decode()


def secret_blind_index(*, secret: str, product_id: int) -> str:
    """HMAC-SHA256 of the normalized secret, per product: dedupes without storing plaintext."""
    message = f"{product_id}:{secret_normalize(secret)}".encode()
    return hmac.new(keyring().index_key, message, hashlib.sha256).hexdigest()


def secret_mask(secret: str) -> str:
    """What staff see in lists: the first two and last two characters at most."""
    if len(secret) <= 6:
        return "*" * len(secret)
    return f"{secret[:2]}{'*' * min(len(secret) - 4, 12)}{secret[-2:]}"
