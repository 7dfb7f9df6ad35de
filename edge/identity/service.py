"""What the edge pipeline asks of whoever decides its identities.

Two things answer: the :class:`~edge.identity.engine.IdentityEngine` itself (a single box decides
on its own) and a site node's :class:`~edge.site.node.SiteEngine` (the site hub decides, the node's
own engine only while the hub is away). The pipeline is typed against :class:`IdentityService` so
that either can stand behind it without ``hasattr`` checks: every method here exists on both, even
where one of them has nothing to do (a standalone engine has no link to close and no provisional
ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Optional, Protocol

import numpy as np

from edge.identity.records import Decision, Key, TrackletSummary


class IdentityView(Protocol):
    """What the pipeline reads of one identity (its events, its snapshot): the engine's
    :class:`~edge.identity.records.Identity` or a node's ``NodeIdentity``. Read-only properties, so
    that plain dataclass fields satisfy them."""

    @property
    def global_id(self) -> int: ...

    @property
    def cameras(self) -> set[str]: ...

    @property
    def last_seen(self) -> float: ...

    @property
    def members(self) -> set[Key]:
        """The live tracklets (camera, local id) that belong to it now."""
        ...

    @property
    def embedding(self) -> Optional[np.ndarray]:
        """Its global appearance [D] as events carry it (None: not known here)."""
        ...

    @property
    def sealed(self) -> bool:
        """Founded by a tracklet too short to match: nothing will join it (its ``new`` event says so)."""
        ...


class IdentityService(Protocol):
    """Tracklet summaries in, identity decisions out, on the scene clock the caller passes in."""

    @property
    def identities(self) -> Mapping[int, IdentityView]:
        """The identities known now, by global id."""
        ...

    def __len__(self) -> int:
        """How many identities are known (the report's gallery size)."""
        ...

    def update(self, summaries: Iterable[TrackletSummary], now: float) -> list[Decision]:
        """Take the tracklets that changed (new evidence, ended) and return what changed."""
        ...

    def global_id(self, key: Key) -> Optional[int]:
        """The identity tracklet ``key`` belongs to now (None: not decided yet)."""
        ...

    def take_final(self) -> list[tuple[Key, int]]:
        """Tracklets whose identity will not change any more, since the last call."""
        ...

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """End of the run: the last decisions; afterwards every tracklet is final."""
        ...

    def is_provisional(self, gid: int) -> bool:
        """Is ``gid`` an id given while the deciding side was away (not a site id)?"""
        ...

    def report(self) -> dict[str, Any]:
        """What the run report shows of the service (a site node: its link to the hub)."""
        ...

    def close(self) -> None:
        """Release what the service holds (a site node: its link to the hub). After :meth:`flush`."""
        ...

    def reading(self) -> AbstractContextManager[Any]:
        """Held while the caller reads :attr:`identities` (a site node's change on its link's
        threads as the hub's decisions come: not mid-read)."""
        ...
