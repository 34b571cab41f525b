"""The shared secrets of the exchanges: the HMAC key that signs packages and requests.

A secret is named by id in the exchange contract (``signing_key``); its value comes from
``COUNTYLAKE_SECRET_<ID>``, else ``<data root>/secrets/<id>.key`` (created with 256 random bits
on first use, mode 0600, for the demo and the reference receivers). Never from git.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from etl.errors import CountylakeError
from etl.settings import Paths

MIN_BYTES = 16


def secret(secret_id: str, where: Paths) -> str:
    value = os.environ.get(f"COUNTYLAKE_SECRET_{secret_id.upper()}", "").strip()
    if value:
        source = f"$COUNTYLAKE_SECRET_{secret_id.upper()}"
    else:
        path = where.home / "secrets" / f"{secret_id}.key"
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it meanwhile
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
        if path.stat().st_mode & 0o077:
            raise CountylakeError(str(path), "the secret is readable by others", "chmod 600 it")
        value, source = path.read_text(encoding="utf-8").strip(), str(path)
    if len(value.encode()) < MIN_BYTES:
        raise CountylakeError(source, f"the secret has fewer than {MIN_BYTES} bytes")
    return value


def pseudonym_key(secret_value: str, exchange: str) -> bytes:
    """The exchange's pseudonym key, derived from its secret (never the signing key itself)."""
    return hmac.new(
        secret_value.encode(), f"countylake pseudonym {exchange}".encode(), hashlib.sha256
    ).digest()


def key_path(secret_id: str, where: Paths) -> Path:
    return where.home / "secrets" / f"{secret_id}.key"
