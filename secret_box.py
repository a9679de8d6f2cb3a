"""Encryption at rest for provider API keys (Fernet, rotation-ready).

ENCRYPTION_KEYS holds one or more Fernet keys, newest first: new ciphertext uses the first, old
ciphertext under any listed key still decrypts, and `rotate()` rewrites it under the newest.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBoxError(Exception):
    pass


class SecretBox:
    def __init__(self, keys):
        if not keys:
            raise SecretBoxError("No encryption key configured (ENCRYPTION_KEYS).")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretBoxError(
                "A stored API key cannot be decrypted with the configured ENCRYPTION_KEYS; "
                "add the old key to the list or enter the API key again."
            ) from None

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()
