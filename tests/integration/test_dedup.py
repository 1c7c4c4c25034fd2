"""Dedup claims in Postgres: ownership by origin, and pruning after the TTL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from services.ingest.dedup import Deduplicator, Origin
from shared.db import open_engine
from shared.settings import Settings

pytestmark = pytest.mark.integration


async def test_first_record_owns_the_id_and_redelivery_is_recognised(settings: Settings) -> None:
    async with open_engine(settings) as engine:
        d = Deduplicator(engine, timedelta(hours=1))
        first = await d.firsts([("a", Origin(0, 5)), ("b", Origin(0, 6)), ("a", Origin(0, 7))])
        assert first == {Origin(0, 5), Origin(0, 6)}  # the in-batch duplicate lost
        # the same records again (a redelivery): each is still its id's owner
        again = await d.firsts([("a", Origin(0, 5)), ("b", Origin(0, 6))])
        assert again == {Origin(0, 5), Origin(0, 6)}
        # a later record with a known id (a client retry) is not
        later = await d.firsts([("a", Origin(1, 0))])
        assert Origin(1, 0) not in later


async def test_prune_forgets_only_expired_claims(settings: Settings) -> None:
    async with open_engine(settings) as engine:
        d = Deduplicator(engine, timedelta(hours=1))
        await d.firsts([("old", Origin(0, 1)), ("new", Origin(0, 2))])
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE ingest_dedup SET first_seen = now() - interval '2 hours' WHERE report_id='old'")
            )
        assert await d.prune() == 1
        async with engine.connect() as conn:
            left = (await conn.execute(sa.text("SELECT report_id FROM ingest_dedup"))).scalars().all()
        assert left == ["new"]
