"""automl's signature on its SavedModel exports: trust that writing a file cannot forge.

Loading a SavedModel runs its graph (TensorFlow ops can read and write files), so
``automl predict`` loads one only when this user's automl exported it, or with
``--trust-model``. As Jupyter signs the notebooks a user trusts, an export is signed with
HMAC-SHA256 over every file in it (path and content), keyed with a secret only this user can
read: ``~/.local/share/automl/signing_key`` (``$XDG_DATA_HOME/automl``), 32 random bytes
created with mode 0600 on the first export. ``$AUTOML_SIGNING_KEY_FILE`` names another key
file. The signature is ``automl.signature`` at the top of the export; a hand-written
``assets/automl.json`` or a copied signature does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

KEY_ENV = "AUTOML_SIGNING_KEY_FILE"
SIGNATURE_FILE = "automl.signature"


def key_path() -> Path:
    """Where this user's signing key lives (``$AUTOML_SIGNING_KEY_FILE`` overrides it)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "automl" / "signing_key"


def _key(create: bool) -> bytes | None:
    path = key_path()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def _digest(folder: Path, key: bytes) -> str | None:
    """HMAC-SHA256 of every file under ``folder`` but the signature; None if it holds a link."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for f in sorted(folder.rglob("*")):
        if f.is_symlink():
            return None
        if not f.is_file() or f == folder / SIGNATURE_FILE:
            continue
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        mac.update(f.relative_to(folder).as_posix().encode() + b"\0" + h.digest())
    return mac.hexdigest()


def sign(folder: str | Path) -> None:
    """Sign the export in ``folder`` with this user's key (created on first use)."""
    folder = Path(folder)
    digest = _digest(folder, _key(create=True))
    if digest is None:
        raise ValueError(f"{str(folder)!r} holds a symbolic link; automl signs only its own files")
    (folder / SIGNATURE_FILE).write_text(json.dumps({"hmac-sha256": digest}))


def verify(folder: str | Path) -> bool:
    """Whether ``folder`` carries a valid signature of this user's key (never raises)."""
    folder = Path(folder)
    try:
        expected = json.loads((folder / SIGNATURE_FILE).read_text())["hmac-sha256"]
        key = _key(create=False)
        if key is None or not isinstance(expected, str):
            return False
        digest = _digest(folder, key)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return digest is not None and hmac.compare_digest(digest, expected)
