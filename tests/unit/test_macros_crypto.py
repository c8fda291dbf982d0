"""Encryption of secure macros: round trip, tampering, unknown keys, key files, rotation."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from jobyard.core import crypto
from jobyard.core.crypto import Keyring, SecretError, associated_data, key_id, new_key

AAD = associated_data("account", 0, "DB_PASSWORD")


def test_round_trip_and_format() -> None:
    ring = Keyring.of(new_key())
    stored = ring.encrypt("s3cr3t-välue", AAD)
    kid, _, body = stored.partition(":")
    assert kid == ring.current_id and len(kid) == 12
    assert "s3cr3t" not in stored
    assert len(base64.b64decode(body)) == 12 + len("s3cr3t-välue".encode()) + 16
    assert ring.decrypt(stored, AAD) == "s3cr3t-välue"
    assert ring.encrypt("x", AAD) != ring.encrypt("x", AAD)  # fresh nonce each time


def test_empty_value_round_trips() -> None:
    ring = Keyring.of(new_key())
    assert ring.decrypt(ring.encrypt("", AAD), AAD) == ""


def test_tampered_ciphertext_is_refused() -> None:
    ring = Keyring.of(new_key())
    kid, _, body = ring.encrypt("value", AAD).partition(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(SecretError, match="authentication"):
        ring.decrypt(f"{kid}:{base64.b64encode(bytes(raw)).decode()}", AAD)


def test_value_moved_to_another_macro_is_refused() -> None:
    ring = Keyring.of(new_key())
    stored = ring.encrypt("value", AAD)
    for other in (
        associated_data("account", 0, "OTHER"),
        associated_data("user", 0, "DB_PASSWORD"),
        associated_data("jobconfig", 2, "DB_PASSWORD"),
    ):
        with pytest.raises(SecretError):
            ring.decrypt(stored, other)


def test_wrong_or_unknown_key_id() -> None:
    ring = Keyring.of(new_key())
    other = Keyring.of(new_key())
    stored = other.encrypt("value", AAD)
    with pytest.raises(SecretError, match="no key with id"):
        ring.decrypt(stored, AAD)
    # A known id but a body made with another key fails authentication.
    forged = f"{ring.current_id}:{stored.partition(':')[2]}"
    with pytest.raises(SecretError, match="authentication"):
        ring.decrypt(forged, AAD)
    for malformed in ("", "nocolon", f"{ring.current_id}:", f"{ring.current_id}:!!!", "a:QUJD"):
        with pytest.raises(SecretError):
            ring.decrypt(malformed, AAD)


def test_decode_key_checks_length_and_base64() -> None:
    key = new_key()
    assert crypto.decode_key(crypto.encode_key(key)) == key
    with pytest.raises(SecretError, match="32 bytes"):
        crypto.decode_key(base64.b64encode(b"short").decode())
    with pytest.raises(SecretError, match="base64"):
        crypto.decode_key("not base64 !!")


def test_key_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert crypto.ensure_key_file(home) is True
    path = home / crypto.KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = path.read_text()
    assert crypto.ensure_key_file(home) is False
    assert path.read_text() == first
    ring = Keyring.load(home)
    assert ring.current == crypto.decode_key(first)


def test_load_without_key_fails_and_env_key_wins(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="no secret key"):
        Keyring.load(tmp_path)
    crypto.ensure_key_file(tmp_path)
    env = new_key()
    ring = Keyring.load(tmp_path, crypto.encode_key(env))
    assert ring.current == env and ring.current_id == key_id(env)


def test_rotation_keeps_old_key_and_reencrypts(tmp_path: Path) -> None:
    crypto.ensure_key_file(tmp_path)
    old = Keyring.load(tmp_path)
    stored = old.encrypt("value", AAD)
    staged, rotation = crypto.stage_new_key(tmp_path)
    assert rotation.old_id == old.current_id and staged.current_id == rotation.new_id
    # While staged, every key is on disk: a fresh load still decrypts the old value.
    assert Keyring.load(tmp_path).decrypt(stored, AAD) == "value"
    again = staged.encrypt(staged.decrypt(stored, AAD), AAD)
    assert Keyring.key_id_of(again) == rotation.new_id
    crypto.commit_new_key(tmp_path, rotation)
    after = Keyring.load(tmp_path)
    assert after.current_id == rotation.new_id
    assert after.decrypt(again, AAD) == "value"
    assert after.decrypt(stored, AAD) == "value"  # the old key is kept (decrypt only)
    assert (tmp_path / f"secret.key.{rotation.old_id}").exists()
    assert not (tmp_path / f"secret.key.{rotation.new_id}").exists()
    for path in tmp_path.glob("secret.key*"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_running_keyring_picks_up_a_rotation(tmp_path: Path) -> None:
    crypto.ensure_key_file(tmp_path)
    running = Keyring.load(tmp_path)
    staged, rotation = crypto.stage_new_key(tmp_path)
    crypto.commit_new_key(tmp_path, rotation)
    new_value = Keyring.load(tmp_path).encrypt("fresh", AAD)
    assert running.decrypt(new_value, AAD) == "fresh"  # reloaded on the unknown key id
    assert running.current_id == staged.current_id
