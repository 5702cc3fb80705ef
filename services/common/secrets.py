"""Secrets at rest (refresh tokens, mailbox passwords): Fernet, with key rotation.

The first configured key encrypts; every key decrypts, so a new key can be put first and old
ciphertexts re-encrypted with `rotate` before the old key is dropped.
"""
from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBoxError(ValueError):
    pass


class SecretBox:
    def __init__(self, keys: list[str]):
        if not keys:
            raise SecretBoxError("no Fernet key configured (CRMSYNC_FERNET_KEYS)")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise SecretBoxError(f"invalid Fernet key in CRMSYNC_FERNET_KEYS: {exc}") from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError("secret cannot be decrypted with any configured key") from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first (newest) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError("secret cannot be decrypted with any configured key") from exc

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()
