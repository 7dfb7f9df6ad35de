"""The hub's stats as one readable line: the hub's log and ``python -m edge.listen`` both print it.

Kept apart from :mod:`edge.site.hub_service` so a listener does not import FAISS and the identity
engine to describe a ``stats`` event.
"""

from __future__ import annotations


def summary_line(report: dict) -> str:
    """The stats as one readable log line."""
    nodes = " ".join(
        f"{name}[{'up' if n['connected'] else ('done' if n['finished'] else 'GAP')}"
        f"{' gaps ' + ','.join(f'{g:g}s' for g in n['gaps']) if n['gaps'] else ''}]"
        for name, n in report["nodes"].items()
    )
    dropped = report.get("events_dropped") or 0
    return (
        f"{report['gallery']} identities ({report['index']}), {report['live_tracklets']} live tracklets, "
        f"nodes {nodes or '-'}, "
        f"summaries {report['summaries']}, published {report['published']}"
        f"{f' (dropped {dropped})' if dropped else ''}, "
        f"malformed {report['malformed']}, replayed {report['replayed']}, "
        f"refused {report['refused']}{' keys ' + str(report['refused_keys']) if report['refused_keys'] else ''}"
    )
