"""API keys: random secrets, stored as SHA-256 digests, with scopes read < write < admin.

A key looks like ``lt_<prefix>_<secret>``; the prefix finds the row, the digest of the whole key
is compared in constant time. A key is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.tables import api_keys

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and what they may do."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        # admin implies write implies read
        need = SCOPES.index(scope)
        return any(SCOPES.index(s) >= need for s in self.scopes if s in SCOPES)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key, prefix) for a fresh random key."""
    prefix = secrets.token_hex(4)
    return f"lt_{prefix}_{secrets.token_urlsafe(32)}", prefix


def prefix_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "lt" or not parts[1] or not parts[2]:
        return None
    return parts[1]


def check_scopes(scopes: list[str]) -> list[str]:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {scopes}")
    return sorted(set(scopes), key=SCOPES.index)


async def create_key(
    conn: AsyncConnection, *, name: str, scopes: list[str], now: datetime, key: str | None = None
) -> tuple[str, uuid.UUID]:
    """Store a key (a given one, e.g. the bootstrap key, or a new random one); returns it."""
    scopes = check_scopes(scopes)
    if key is None:
        key, prefix = new_key()
    else:
        p = prefix_of(key)
        if p is None or len(key) < 24:
            raise ValueError("a key must look like lt_<prefix>_<secret> and be at least 24 characters")
        prefix = p
    key_id = uuid.uuid4()
    await conn.execute(api_keys.insert().values(
        id=key_id, name=name, prefix=prefix, secret_hash=digest(key), scopes=scopes, created_at=now))
    return key, key_id


async def ensure_key(conn: AsyncConnection, *, key: str, name: str, now: datetime) -> bool:
    """Make sure ``key`` exists as an admin key (idempotent); True if it was created."""
    p = prefix_of(key)
    if p is None:
        raise ValueError("LIVETRIAGE_BOOTSTRAP_API_KEY must look like lt_<prefix>_<secret>")
    row = (await conn.execute(sa.select(api_keys.c.secret_hash).where(api_keys.c.prefix == p))).first()
    if row is not None:
        if not hmac.compare_digest(row[0], digest(key)):
            raise ValueError("LIVETRIAGE_BOOTSTRAP_API_KEY clashes with the prefix of another key")
        return False
    await create_key(conn, name=name, scopes=["admin"], now=now, key=key)
    return True


async def any_keys(conn: AsyncConnection) -> bool:
    return bool(await conn.scalar(sa.select(sa.exists().where(api_keys.c.revoked_at.is_(None)))))


async def authenticate(conn: AsyncConnection, *, key: str) -> Principal | None:
    p = prefix_of(key)
    if p is None:
        return None
    row = (await conn.execute(
        sa.select(api_keys).where(api_keys.c.prefix == p, api_keys.c.revoked_at.is_(None))
    )).mappings().first()
    if row is None or not hmac.compare_digest(row["secret_hash"], digest(key)):
        return None
    return Principal(row["id"], row["name"], frozenset(row["scopes"]))


async def revoke_key(conn: AsyncConnection, *, prefix: str, now: datetime) -> bool:
    res = await conn.execute(
        api_keys.update().where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(res.rowcount)


async def list_keys(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(api_keys.c.prefix, api_keys.c.name, api_keys.c.scopes, api_keys.c.created_at,
                  api_keys.c.revoked_at).order_by(api_keys.c.created_at)
    )
    return [dict(r) for r in rows.mappings()]
