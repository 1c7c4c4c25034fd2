"""Persistence of silences and inhibit rules, and the check ``store.notify`` makes before paging.

Async repository functions with keyword-only arguments, in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.silences import MATCH_FIELDS, inhibiting, silencing
from services.notifier.tables import incidents, inhibit_rules, silences

# ---- silences ----------------------------------------------------------------------------


async def create_silence(
    conn: AsyncConnection,
    *,
    matchers: dict[str, list[str]],
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
    now: datetime,
) -> dict[str, Any]:
    row = (await conn.execute(
        silences.insert().values(
            id=uuid.uuid4(), matchers=matchers, starts_at=starts_at, ends_at=ends_at,
            created_by=created_by, comment=comment, created_at=now,
        ).returning(*silences.c)
    )).mappings().one()
    return dict(row)


async def get_silence(conn: AsyncConnection, *, silence_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(silences).where(silences.c.id == silence_id))).mappings().first()
    return dict(row) if row is not None else None


def _active_clause(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        silences.c.starts_at <= now,
        silences.c.ends_at > now,
        sa.or_(silences.c.expired_at.is_(None), silences.c.expired_at > now),
    )


async def list_silences(
    conn: AsyncConnection, *, now: datetime, active_only: bool = False, limit: int = 200
) -> list[dict[str, Any]]:
    """Silences, newest first; ``active_only`` keeps those in force at ``now``."""
    q = sa.select(silences)
    if active_only:
        q = q.where(_active_clause(now))
    q = q.order_by(silences.c.created_at.desc(), silences.c.id.desc()).limit(limit)
    return [dict(r) for r in (await conn.execute(q)).mappings()]


async def expire_silence(
    conn: AsyncConnection, *, silence_id: uuid.UUID, now: datetime, routing: Any = None
) -> dict[str, Any] | None:
    """End a silence now (idempotent); returns it, None if unknown.

    Open incidents it held are paged again (a ``trigger``, unless another silence or an
    inhibition still holds them), so ending a silence restores paging at once.
    """
    row = (await conn.execute(
        sa.select(silences).where(silences.c.id == silence_id).with_for_update()
    )).mappings().first()
    if row is None:
        return None
    if row["expired_at"] is None or row["expired_at"] > now:
        await conn.execute(silences.update().where(silences.c.id == silence_id).values(expired_at=now))
    held = (await conn.execute(
        sa.select(incidents.c.id).where(incidents.c.silenced_by == silence_id, incidents.c.status != "resolved")
        .order_by(incidents.c.detected_at)
    )).scalars().all()
    await conn.execute(incidents.update().where(incidents.c.silenced_by == silence_id).values(silenced_by=None))
    if routing is not None:
        from services.notifier.store import notify  # store imports this module

        for incident_id in held:
            await notify(conn, incident_id=incident_id, event=f"unsilenced:{silence_id}", kind="trigger",
                         routing=routing, now=now)
    return await get_silence(conn, silence_id=silence_id)


# ---- inhibit rules -----------------------------------------------------------------------


async def create_inhibit_rule(
    conn: AsyncConnection,
    *,
    source_match: dict[str, list[str]],
    target_match: dict[str, list[str]],
    equal: list[str],
    created_by: str,
    comment: str,
    now: datetime,
) -> dict[str, Any]:
    row = (await conn.execute(
        inhibit_rules.insert().values(
            id=uuid.uuid4(), source_match=source_match, target_match=target_match, equal=equal,
            created_by=created_by, comment=comment, created_at=now,
        ).returning(*inhibit_rules.c)
    )).mappings().one()
    return dict(row)


async def list_inhibit_rules(conn: AsyncConnection, *, limit: int = 500) -> list[dict[str, Any]]:
    q = sa.select(inhibit_rules).order_by(inhibit_rules.c.created_at, inhibit_rules.c.id).limit(limit)
    return [dict(r) for r in (await conn.execute(q)).mappings()]


async def get_inhibit_rule(conn: AsyncConnection, *, rule_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await conn.execute(
        sa.select(inhibit_rules).where(inhibit_rules.c.id == rule_id))).mappings().first()
    return dict(row) if row is not None else None


async def delete_inhibit_rule(conn: AsyncConnection, *, rule_id: uuid.UUID) -> bool:
    res = await conn.execute(inhibit_rules.delete().where(inhibit_rules.c.id == rule_id))
    return bool(res.rowcount)


# ---- the check before a page -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Held:
    """Why a page is not sent: the timeline kind and detail, and the silence if one."""

    kind: str  # page_silenced | page_inhibited
    detail: dict[str, Any]
    silence_id: uuid.UUID | None = None


MAX_SOURCES = 50  # candidate source incidents looked at per rule


async def held_by(conn: AsyncConnection, *, incident: dict[str, Any], now: datetime) -> Held | None:
    """Is a page about ``incident`` (its row, with ``team`` as routed) held back, and by what?"""
    active = (await conn.execute(sa.select(silences).where(_active_clause(now)))).mappings().all()
    # rows are keyed by column name (SQLAlchemy types RowMapping's keys more widely)
    hit = silencing(cast("Sequence[Mapping[str, Any]]", active), incident, now)
    if hit is not None:
        return Held("page_silenced", {"silence_id": str(hit["id"])}, hit["id"])
    for rule in await list_inhibit_rules(conn):
        q = sa.select(incidents).where(incidents.c.status != "resolved", incidents.c.id != incident["id"])
        for field, allowed in rule["source_match"].items():
            if field not in MATCH_FIELDS:
                q = q.where(sa.false())
                continue
            q = q.where(incidents.c[field].in_(list(allowed)))
        for field in rule["equal"]:
            if field in MATCH_FIELDS:
                q = q.where(incidents.c[field].is_not_distinct_from(incident.get(field)))
        sources = (await conn.execute(q.order_by(incidents.c.detected_at).limit(MAX_SOURCES))).mappings().all()
        found = inhibiting([rule], incident, cast("Sequence[Mapping[str, Any]]", sources))
        if found is not None:
            _, src = found
            return Held("page_inhibited", {"rule_id": str(rule["id"]), "source_incident_id": str(src["id"])})
    return None
