"""Secrets at rest: Fernet with rotation; a ciphertext no configured key opens is a clear error."""
import pytest

from services.common.secrets import SecretBox, SecretBoxError


def test_rotation_keeps_old_ciphertexts_readable_and_re_encrypts_under_the_new_key():
    old, new = SecretBox.new_key(), SecretBox.new_key()
    token = SecretBox([old]).encrypt("refresh-token")
    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt(token) == "refresh-token"
    rotated = rotated_box.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "refresh-token"
    with pytest.raises(SecretBoxError, match="cannot be decrypted"):
        SecretBox([new]).decrypt(token)


def test_bad_keys_are_refused_at_start():
    with pytest.raises(SecretBoxError, match="no Fernet key"):
        SecretBox([])
    with pytest.raises(SecretBoxError, match="invalid Fernet key"):
        SecretBox(["short"])
