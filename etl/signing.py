"""Request signing of the Shandong open-data gateway style, used by department APIs and by the
HTTP uplink: X-Signature = Base64(HMAC-SHA256(secret, ClientId + Timestamp + Nonce)); and the
padded keys with which DuckDB computes HMAC-SHA256 itself (pseudonyms, in SQL)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

VALID_FOR_MS = 10 * 60 * 1000


def signature(secret: str, client_id: str, timestamp_ms: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"{client_id}{timestamp_ms}{nonce}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def signed_headers(client_id: str, secret: str) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000))
    nonce = secrets.token_hex(16)
    return {
        "X-Client-Id": client_id,
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": signature(secret, client_id, timestamp, nonce),
    }


def verify(
    headers: dict[str, str], secrets_by_client: dict[str, str], now_ms: int | None = None
) -> str | None:
    """Check signed headers; return None when valid, else the reason. Replay of a nonce is the
    caller's to track (it needs state)."""
    client = headers.get("X-Client-Id", "")
    timestamp, nonce = headers.get("X-Timestamp", ""), headers.get("X-Nonce", "")
    given = headers.get("X-Signature", "")
    if client not in secrets_by_client:
        return f"unknown client {client!r}"
    if not timestamp.isdigit() or not nonce:
        return "missing X-Timestamp or X-Nonce"
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now_ms - int(timestamp)) > VALID_FOR_MS:
        return "timestamp outside the 10-minute validity"
    expected = signature(secrets_by_client[client], client, timestamp, nonce)
    if not hmac.compare_digest(expected, given):
        return "bad signature"
    return None


def hmac_pads(key: bytes) -> tuple[str, str]:
    """The inner and outer padded keys of HMAC-SHA256 (K xor 0x36.., K xor 0x5c..), 64 bytes
    each, as hex: what SQL needs to compute HMAC(K, m) = sha256(opad || sha256(ipad || m))
    without the key (the warehouse's ``pseudonym()`` macro, the uplinks' pseudonym mask)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()
