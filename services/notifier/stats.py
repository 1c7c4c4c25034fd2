"""Program-manager figures over a time range: volumes, MTTA, MTTR, time to action, SLA shares.

One SQL pass per figure family; the SLA targets come from settings (minutes per severity).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_COUNTS = sa.text(
    """
    SELECT 'category' AS dim, category AS key, count(*) FROM incidents
     WHERE detected_at >= :since AND detected_at < :until GROUP BY category
    UNION ALL
    SELECT 'severity', severity, count(*) FROM incidents
     WHERE detected_at >= :since AND detected_at < :until GROUP BY severity
    UNION ALL
    SELECT 'status', status, count(*) FROM incidents
     WHERE detected_at >= :since AND detected_at < :until GROUP BY status
    UNION ALL
    SELECT 'urgency', urgency, count(*) FROM incidents
     WHERE detected_at >= :since AND detected_at < :until GROUP BY urgency
    """
)

_TIMES = sa.text(
    """
    SELECT avg(extract(epoch FROM acknowledged_at - detected_at)) AS mtta,
           avg(extract(epoch FROM resolved_at - detected_at)) AS mttr,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY time_to_action_s) AS tta_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY time_to_action_s) AS tta_p90,
           count(*) AS n
      FROM incidents WHERE detected_at >= :since AND detected_at < :until
    """
)

_SLA = sa.text(
    """
    SELECT severity, category, count(*) AS n,
           count(*) FILTER (WHERE acknowledged_at IS NOT NULL
                            AND acknowledged_at - detected_at <= make_interval(secs => :ack_s_{sev})) AS acked,
           count(*) FILTER (WHERE first_action_at IS NOT NULL
                            AND time_to_action_s <= :act_s_{sev}) AS actioned
      FROM incidents
     WHERE detected_at >= :since AND detected_at < :until AND severity = :sev_{sev}
     GROUP BY severity, category
    """
)


async def stats(
    conn: AsyncConnection,
    *,
    since: datetime,
    until: datetime,
    sla_ack_minutes: dict[str, float],
    sla_action_minutes: dict[str, float],
) -> dict[str, Any]:
    params = {"since": since, "until": until}
    counts: dict[str, dict[str, int]] = {"category": {}, "severity": {}, "status": {}, "urgency": {}}
    for dim, key, n in await conn.execute(_COUNTS, params):
        counts[dim][key] = n
    t = (await conn.execute(_TIMES, params)).mappings().one()
    sla = []
    for sev in ("SEV1", "SEV2", "SEV3", "SEV4"):
        q = sa.text(_SLA.text.replace("{sev}", sev))
        rows = await conn.execute(q, {
            **params, f"sev_{sev}": sev,
            f"ack_s_{sev}": sla_ack_minutes.get(sev, 60.0) * 60,
            f"act_s_{sev}": sla_action_minutes.get(sev, 240.0) * 60,
        })
        for r in rows.mappings():
            sla.append({
                "severity": r["severity"], "category": r["category"], "incidents": r["n"],
                "acknowledged_within_sla": r["acked"], "actioned_within_sla": r["actioned"],
                "ack_share": round(r["acked"] / r["n"], 4), "action_share": round(r["actioned"] / r["n"], 4),
            })
    def f(x: Any) -> float | None:
        return None if x is None else round(float(x), 1)

    return {
        "since": since, "until": until, "incidents": t["n"], "by": counts,
        "mtta_s": f(t["mtta"]), "mttr_s": f(t["mttr"]),
        "time_to_action_p50_s": f(t["tta_p50"]), "time_to_action_p90_s": f(t["tta_p90"]),
        "sla_targets_minutes": {"acknowledge": sla_ack_minutes, "action": sla_action_minutes},
        "sla": sla,
    }
