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
    index_version: int
    index_keys: dict[int, bytes]

    @property
    def index_key(self) -> bytes:
        return self.index_keys[self.index_version]


def _decode_key(raw: str, variable: str) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(f"{variable}: a key is not valid base64") from exc
    if len(key) != 32:
        raise ImproperlyConfigured(f"{variable}: every key must be 32 bytes (base64 of 32 random bytes)")
    return key


def _versioned_keys(setting: str, variable: str, *, bare_is_version_1: bool) -> dict[int, bytes]:
    """ "1:BASE64,2:BASE64" → {1: key, 2: key}. With ``bare_is_version_1`` a single key without
    a version is version 1 (CARDPOOL_INDEX_KEY before it was versioned)."""
    keys: dict[int, bytes] = {}
    items = [part for part in setting.split(",") if part.strip()]
    if bare_is_version_1 and len(items) == 1 and ":" not in items[0]:
        return {1: _decode_key(items[0], variable)}
    for item in items:
        version, sep, raw = item.partition(":")
        if not sep or not version.strip().isdigit():
            raise ImproperlyConfigured(f"{variable}: write each key as VERSION:BASE64KEY, comma-separated")
        number = int(version)
        if number in keys:
            raise ImproperlyConfigured(f"{variable}: version {number} is listed twice")
        keys[number] = _decode_key(raw, variable)
    if not keys:
        raise ImproperlyConfigured(f"{variable}: no key given")
    return keys


def keyring_parse(*, keys_setting: str, index_key_setting: str) -> Keyring:
    """Parse ``CARDPOOL_KEYS`` ("1:BASE64,2:BASE64") and ``CARDPOOL_INDEX_KEY`` (one bare key,
    which is version 1, or versioned like CARDPOOL_KEYS). The highest version of each is current.

    Raises ImproperlyConfigured naming the variable when anything is malformed.
    """
    keys = _versioned_keys(keys_setting, "CARDPOOL_KEYS", bare_is_version_1=False)
    index_keys = _versioned_keys(index_key_setting, "CARDPOOL_INDEX_KEY", bare_is_version_1=True)
    return Keyring(current_version=max(keys), keys=keys, index_version=max(index_keys), index_keys=index_keys)


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


def secret_decrypt(*, ciphertext: bytes | memoryview, key_version: int, product_id: int) -> str:
    """Decrypt one key. Raises KeyError for an unknown key version, InvalidTag for tampering."""
    ring = keyring()
    data = bytes(ciphertext)
    return AESGCM(ring.keys[key_version]).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(product_id)).decode()


def secret_blind_index(*, secret: str, product_id: int, version: int | None = None) -> str:
    """HMAC-SHA256 of the normalized secret, per product, under the current index key (or the
    given version): dedupes without storing plaintext."""
    ring = keyring()
    message = f"{product_id}:{secret_normalize(secret)}".encode()
    return hmac.new(ring.index_keys[version or ring.index_version], message, hashlib.sha256).hexdigest()


def secret_mask(secret: str) -> str:
    """What staff see in lists: the first two and last two characters at most."""
    if len(secret) <= 6:
        return "*" * len(secret)
    return f"{secret[:2]}{'*' * min(len(secret) - 4, 12)}{secret[-2:]}"
