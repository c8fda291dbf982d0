"""Encryption of secure macro values at rest: AES-256-GCM with a small keyring.

A stored secure value is ``"<key id>:<base64(nonce + ciphertext + tag)>"``. The key id
is the first 12 hex digits of the SHA-256 of the key, so it names a key without
revealing it and a value says which key decrypts it. The associated data binds the
ciphertext to its place (``"<scope>:<scope id>:<name>"``): a value copied to another
macro, level or object fails authentication instead of decrypting.

Keys (32 random bytes, base64 on one line):

- the current key: the setting ``JOBYARD_SECRET_KEY`` when set, else the file
  ``$JOBYARD_HOME/secret.key`` (created at first start with mode 0600);
- older keys: files ``$JOBYARD_HOME/secret.key.<key id>`` kept by ``jobyard keys
  rotate``; they only decrypt. A key id found in no file is reloaded once from disk
  (another process may have rotated) before decryption fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobyard.core.errors import JobyardError

KEY_FILE = "secret.key"
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretError(JobyardError):
    """A secure value cannot be decrypted (unknown key, tampered, malformed) or a key is bad."""

    code = "secret_error"


def new_key() -> bytes:
    """32 random bytes: a fresh AES-256 key."""
    return secrets.token_bytes(KEY_BYTES)


def key_id(key: bytes) -> str:
    """The public name of a key: 12 hex digits of its SHA-256."""
    return hashlib.sha256(b"jobyard-macro-key:" + key).hexdigest()[:12]


def encode_key(key: bytes) -> str:
    """A key as it is written in a key file or in ``JOBYARD_SECRET_KEY``."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, where: str = "secret key") -> bytes:
    """Parse a base64 key of exactly 32 bytes; ``SecretError`` otherwise."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"{where} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise SecretError(f"{where} must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def associated_data(scope: str, scope_id: int, name: str) -> bytes:
    """What a ciphertext is bound to: its level, object and macro name."""
    return f"{scope}:{scope_id}:{name}".encode()


def write_key_file(path: Path, key: bytes) -> None:
    """Write a key file with mode 0600, atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(encode_key(key) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_key_file(home: Path) -> bool:
    """Create ``home/secret.key`` (0600) if missing; True when it was created now."""
    path = home / KEY_FILE
    if path.exists():
        return False
    home.mkdir(parents=True, exist_ok=True)
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return False
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(encode_key(key) + "\n")
    os.chmod(path, 0o600)
    return True


def _read_key(path: Path) -> bytes:
    return decode_key(path.read_text(encoding="ascii"), f"key file {path}")


@dataclass
class Keyring:
    """The current key (encrypts) and older keys (decrypt only), by key id."""

    current_id: str
    keys: dict[str, bytes]
    home: Path | None = None
    env_key: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, current: bytes, *older: bytes) -> Keyring:
        """A keyring from keys in memory (tests, tools)."""
        keys = {key_id(k): k for k in older}
        keys[key_id(current)] = current
        return cls(current_id=key_id(current), keys=keys)

    @classmethod
    def load(cls, home: Path, env_key: str = "") -> Keyring:
        """Current key from ``env_key`` or ``home/secret.key``; older keys from their files.

        ``SecretError`` when there is no current key (the server creates the file at
        its first start) or a key is malformed.
        """
        if env_key.strip():
            current = decode_key(env_key, "JOBYARD_SECRET_KEY")
        else:
            path = home / KEY_FILE
            if not path.exists():
                raise SecretError(
                    f"no secret key: {path} does not exist and JOBYARD_SECRET_KEY is not set "
                    "(the server creates the file at its first start)"
                )
            current = _read_key(path)
        keys = dict(_older_keys(home))
        keys[key_id(current)] = current
        return cls(current_id=key_id(current), keys=keys, home=home, env_key=env_key)

    @property
    def current(self) -> bytes:
        """The key new values are encrypted with."""
        return self.keys[self.current_id]

    def encrypt(self, plaintext: str, aad: bytes) -> str:
        """``"<key id>:<base64 nonce+ciphertext>"`` of ``plaintext`` under the current key."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.current).encrypt(nonce, plaintext.encode("utf-8"), aad)
        return f"{self.current_id}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, stored: str, aad: bytes) -> str:
        """The plaintext of a stored value; ``SecretError`` if it cannot be authenticated."""
        kid, sep, body = stored.partition(":")
        if not sep or not kid or not body:
            raise SecretError("malformed encrypted value")
        key = self.keys.get(kid)
        if key is None:
            self._reload()
            key = self.keys.get(kid)
        if key is None:
            raise SecretError(f"no key with id {kid} (was an old key file deleted?)")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise SecretError("malformed encrypted value") from None
        if len(raw) < NONCE_BYTES + 16:
            raise SecretError("malformed encrypted value")
        try:
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except InvalidTag:
            raise SecretError("encrypted value failed authentication (tampered or moved)") from None
        return plain.decode("utf-8")

    @staticmethod
    def key_id_of(stored: str) -> str:
        """Which key a stored value was encrypted with."""
        return stored.partition(":")[0]

    def _reload(self) -> None:
        """Pick up keys written by another process (rotation) since this one loaded."""
        if self.home is None:
            return
        with self._lock:
            try:
                fresh = Keyring.load(self.home, self.env_key)
            except SecretError:
                return
            self.keys.update(fresh.keys)
            self.current_id = fresh.current_id


class Keyrings:
    """Keyrings loaded once and kept, by home and environment key.

    One per owner (a server's :class:`~jobyard.service.context.Context`, a worker
    process), never one per module: two servers in one process keep their own.
    """

    def __init__(self) -> None:
        self._rings: dict[tuple[str, str], Keyring] = {}
        self._lock = threading.Lock()

    def get(self, home: Path, env_key: str = "") -> Keyring:
        """The keyring of ``home`` (loaded on first use; it reloads on unknown key ids)."""
        cache_key = (str(home), env_key)
        with self._lock:
            ring = self._rings.get(cache_key)
            if ring is None:
                ring = self._rings[cache_key] = Keyring.load(home, env_key)
            return ring

    def clear(self) -> None:
        """Forget the loaded keyrings: the next :meth:`get` reads the key files again."""
        with self._lock:
            self._rings.clear()


def _older_keys(home: Path) -> Iterator[tuple[str, bytes]]:
    if not home.is_dir():
        return
    for path in sorted(home.glob(f"{KEY_FILE}.*")):
        if path.name.endswith(".tmp") or not path.is_file():
            continue
        key = _read_key(path)
        yield key_id(key), key


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``rotate_key_files`` did."""

    old_id: str
    new_id: str
    new_key: bytes


def stage_new_key(home: Path, new: bytes | None = None) -> tuple[Keyring, Rotation]:
    """Step 1 of a rotation: write the new key as an *older* key file, so every key that
    may be in use is on disk whatever happens next. Returns a keyring whose current key
    is the new one (it still decrypts with the old ones).
    """
    ring = Keyring.load(home)
    key = new if new is not None else new_key()
    new_id = key_id(key)
    write_key_file(home / f"{KEY_FILE}.{new_id}", key)
    old_file = home / f"{KEY_FILE}.{ring.current_id}"
    if not old_file.exists():
        write_key_file(old_file, ring.current)
    keys = dict(ring.keys)
    keys[new_id] = key
    staged = Keyring(current_id=new_id, keys=keys, home=home)
    return staged, Rotation(old_id=ring.current_id, new_id=new_id, new_key=key)


def commit_new_key(home: Path, rotation: Rotation) -> None:
    """Last step of a rotation: the new key becomes ``secret.key`` (the old one stays as
    ``secret.key.<old id>``), and its staging copy is removed."""
    write_key_file(home / KEY_FILE, rotation.new_key)
    (home / f"{KEY_FILE}.{rotation.new_id}").unlink(missing_ok=True)
