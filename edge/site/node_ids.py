"""Which identity each of a node's tracklets has: the hub's site ids, or its own while the hub is away.

The hub decides (:meth:`NodeIds._apply` takes its ``ids`` messages). While it is away (no answer
for ``hub_timeout_s``, at start or later) the node says so in a warning naming the hub's endpoint
and, given a ``local`` engine factory (``edge.run`` gives it the node's own
:class:`~edge.identity.IdentityEngine`, the single-box engine), goes on deciding: the tracklets it
knows site ids of keep them, the others get *provisional* ids from ``site.local_ids_from`` (far
above any hub id). When the hub answers again, each provisional id is mapped onto the site id the
hub gives (:attr:`NodeIds.reconciled`); the hub decides from then on. Ids and finals from the hub
that come while the node is not welcomed (a stalled hub catching up) are ignored, so a tracklet is
never finalised by both sides. Outages (from, to, seconds) are kept for the run report.

:class:`~edge.site.node.SiteEngine` builds on this with the link to the hub. Every method here
runs under :attr:`NodeIds._lock` unless it takes it itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np

from edge.identity import Decision, Identity, IdentityEngine, TrackletSummary

log = logging.getLogger("edge.site.node")  # the node's log lines keep their logger name

Key = tuple[str, int]


class IdsConfig(Protocol):
    """What :class:`NodeIds` reads of its node's configuration (``site:`` and ``stream:`` both have it)."""

    @property
    def node(self) -> str: ...

    @property
    def hub(self) -> str:
        """How log lines name the hub (its endpoint, or the region whose hub it is)."""

    @property
    def buffer(self) -> int: ...

    @property
    def flush_timeout_s(self) -> float: ...

    @property
    def hub_timeout_s(self) -> float: ...

    def local_id_base(self) -> int: ...


@dataclass
class NodeIdentity:
    """What a node knows of a site identity (enough for its events and snapshot)."""

    global_id: int
    cameras: set[str] = field(default_factory=set)
    last_seen: float = 0.0
    members: set[Key] = field(default_factory=set)
    embedding: Optional[np.ndarray] = None
    sealed: bool = False  # what an identity event reads; only the hub knows, and node events never say so


@dataclass
class Outage:
    """The hub away, on the wall clock (``end`` None: still away)."""

    start: float
    end: Optional[float] = None

    def row(self) -> dict[str, Any]:
        """As the run report shows it."""
        return {
            "from": _iso(self.start),
            "to": None if self.end is None else _iso(self.end),
            "seconds": round((time.time() if self.end is None else self.end) - self.start, 1),
        }


class NodeIds:
    """The node's ids and the tracklets they are for (see the module docstring)."""

    def __init__(self, cfg: IdsConfig, local: Optional[Callable[[], IdentityEngine]] = None):
        """``local``: makes a fresh identity engine with the node's settings, used while the hub is
        away; without it the node only buffers (its tracklets get no global id meanwhile)."""
        self.cfg = cfg
        self.identities: dict[int, NodeIdentity] = {}
        self.records: dict[Key, TrackletSummary] = {}  # latest summary of every tracklet not yet final
        self._ids: dict[Key, int] = {}
        self._sent: dict[Key, tuple[int, float]] = {}  # what the hub has: (n_embeddings, last floor time)
        self._decisions: list[Decision] = []
        self._final: list[tuple[Key, int]] = []
        self._lock = threading.Lock()
        self._now = 0.0
        self.connected = False
        self.stats = {
            "sent": 0,
            "coalesced": 0,
            "dropped": 0,
            "resyncs": 0,
            "hub_gaps": 0,
            "local_decisions": 0,
            "provisional_ids": 0,
            "unreconciled_dropped": 0,
            "late_ignored": 0,
        }
        self._local_factory = local
        self._local: Optional[IdentityEngine] = None  # deciding here while the hub is away
        self.local_base = cfg.local_id_base()
        self._next_local = self.local_base
        self._away = False
        self.answered = False  # the hub welcomed this node at least once
        self._outages: list[Outage] = []
        self._reconcile: dict[
            Key, tuple[TrackletSummary, int]
        ] = {}  # final here (id given), not yet decided by the hub
        self.reconciled: dict[int, set[int]] = {}  # provisional id -> the site ids the hub gave its tracklets

    def __len__(self) -> int:
        return len(self.identities)

    def reading(self) -> AbstractContextManager[Any]:
        """The lock: the hub's decisions change :attr:`identities` on the link's threads."""
        return self._lock

    def is_provisional(self, gid: int) -> bool:
        """An id this node gave while the hub was away (not a site id)."""
        return self.local_base <= gid < self._next_local

    def global_id(self, key: Key) -> Optional[int]:
        return self._ids.get(key)

    def take_final(self) -> list[tuple[Key, int]]:
        with self._lock:
            out, self._final = self._final, []
        return out

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """End of the run: wait (``flush_timeout_s``) for the hub's final ids, saying so. A hub that
        is away (or goes away meanwhile) is not waited for: the node's own engine decides what is
        left (provisional ids); without one, tracklets keep their last site id."""
        return self._flush_until(now, time.monotonic() + self.cfg.flush_timeout_s)

    def _flush_until(self, now: Optional[float], deadline: float) -> list[Decision]:
        """:meth:`flush`, waiting until ``deadline`` (monotonic)."""
        with self._lock:
            waiting = self._waiting()
            away = self._away
        if waiting and not away and deadline > time.monotonic():
            log.info(
                "site: waiting up to %.0f s for the hub %s: the final ids of %d tracklet(s)%s",
                deadline - time.monotonic(),
                self.cfg.hub,
                waiting,
                ""
                if self.connected
                else f" (it has not answered yet; away after {self.cfg.hub_timeout_s:g} s without an answer)",
            )
        while time.monotonic() < deadline and not self._stop_waiting():
            with self._lock:
                if self._away and self._local_factory is not None:
                    break
                waiting = self._waiting()
            if not waiting:
                break
            time.sleep(0.05)
        with self._lock:
            left = [k for k, s in self.records.items() if s.ended]
            if left and self._local_factory is not None:
                if not self._away:
                    log.warning(
                        "site: %d tracklet(s) without a final id from the hub %s after %.0f s: "
                        "decided here (a site id given stays, the others get provisional ids)",
                        len(left),
                        self.cfg.hub,
                        self.cfg.flush_timeout_s,
                    )
                self._finish_locally(self._now if now is None else now)
            elif left:
                kept = [(k, self._ids[k]) for k in left if k in self._ids]
                log.warning(
                    "site: %d tracklet(s) without a final id from the hub %s after %.0f s: "
                    "%d keep their last site id, %d get none",
                    len(left),
                    self.cfg.hub,
                    self.cfg.flush_timeout_s,
                    len(kept),
                    len(left) - len(kept),
                )
                self._final += kept
                for k in left:
                    self.records.pop(k, None)
            out, self._decisions = self._decisions, []
        return out  # the hub's decisions that came while waiting (or the node's own)

    def _stop_waiting(self) -> bool:
        """Whether the end of the run stops waiting for the hub at once (a node the hub refused)."""
        return False

    def _waiting(self) -> int:
        """Tracklets whose final id from the hub the end of the run waits for: the ended ones, and
        (while it is there) those decided here during an outage, for the report's mapping."""
        return sum(1 for s in self.records.values() if s.ended) + (len(self._reconcile) if self.connected else 0)

    def report(self) -> dict[str, Any]:
        """What the run report shows of the site link: the hub's outages and the provisional ids."""
        with self._lock:
            outages = [o.row() for o in self._outages]
            return {
                "node": self.cfg.node,
                "hub": self.cfg.hub,
                "answered": self.answered,
                "connected": self.connected,
                "hub_outages": outages,
                "provisional_from": self.local_base,
                "reconciled": {str(k): sorted(v) for k, v in sorted(self.reconciled.items())},
                "unreconciled": len(self._reconcile),
                **self.stats,
            }

    # --- the hub away and back (I/O thread); deciding here meanwhile (pipeline thread, under the lock)
    def hub_away(self, since: float) -> None:
        """No answer from the hub since ``since`` (monotonic): say so once, start an outage."""
        with self._lock:
            self._away = True
            self.connected = False
            self._outages.append(Outage(time.time() - (time.monotonic() - since)))
            self.stats["hub_gaps"] += 1
        meanwhile = (
            f"node {self.cfg.node} decides identities itself meanwhile (provisional ids from {self.local_base}, "
            "mapped onto site ids when it is back)"
            if self._local_factory is not None
            else "its tracklets get no global id meanwhile"
        )
        log.warning(
            "site: the hub %s %s (nothing for %.1f s): %s; up to %d summaries are kept for it",
            self.cfg.hub,
            "stopped answering" if self.answered else "does not answer",
            time.monotonic() - since,
            meanwhile,
            self.cfg.buffer,
        )

    def _hub_back(self) -> None:
        """The outage (if any) ends, the hub decides again (the caller holds the lock)."""
        if self._away:
            outage = self._outages[-1]
            outage.end = time.time()
            lasted = outage.end - outage.start
            log.info(
                "site: the hub %s answers again after %.1f s: "
                "resending %d tracklet(s) and %d decided here meanwhile, for its site ids",
                self.cfg.hub,
                lasted,
                len(self.records),
                len(self._reconcile),
            )
        self._away = False
        self._local = None
        self.connected = self.answered = True

    def _decide_locally(self, summaries: list[TrackletSummary], now: float) -> None:
        if self._local is None:
            self._local = self._start_local()
            summaries = list(self.records.values())  # everything not final, this step's summaries included
        self._apply_local(self._local.update(summaries, now))

    def _start_local(self) -> IdentityEngine:
        """A fresh engine that knows the site ids the hub gave to live tracklets (so a person keeps
        theirs) and founds new identities from the next provisional id."""
        assert self._local_factory is not None  # only called with one (see update and flush)
        engine = self._local_factory()
        told: dict[Key, int] = {k: self._ids[k] for k in self.records if k in self._ids}
        identities = []
        for gid in sorted(set(told.values())):
            members = [self.records[k] for k, g in told.items() if g == gid]
            last = max(members, key=lambda m: m.last_seen)
            identities.append(
                Identity(
                    gid,
                    min(m.first_seen for m in members),
                    last.last_seen,
                    last.camera,
                    {m.camera for m in members},
                    last_box=last.last_box,
                )
            )
        engine.restore(identities, self._next_local)
        for key, gid in told.items():
            engine.adopt(self.records[key], gid)
        return engine

    def _apply_local(self, decisions: list[Decision]) -> None:
        """The local engine's ids, decisions and finals, as :meth:`_apply` takes the hub's."""
        engine = self._local
        assert engine is not None  # started by the caller
        for key, gid in engine.assignment.items():
            if self._ids.get(key) != gid:
                self._set_id(key, gid)
        for d in decisions:
            if d.kind in ("new", "reassigned") and d.global_id >= self._next_local:
                self._next_local = d.global_id + 1
                self.stats["provisional_ids"] += 1
            ident, mine = (
                engine.identities.get(d.global_id),
                self.identities.setdefault(d.global_id, NodeIdentity(d.global_id)),
            )
            if ident is not None:
                mine.cameras |= ident.cameras
                mine.last_seen = max(mine.last_seen, ident.last_seen)
                mine.embedding = ident.embedding
            self._decisions.append(d)
        self.stats["local_decisions"] += len(decisions)
        for key, gid in engine.take_final():
            self._ids[key] = gid
            self._final.append((key, gid))
            self._sent.pop(key, None)
            s = self.records.pop(key, None)
            if s is not None:  # the hub learns of it when it is back (its people may be seen elsewhere)
                self._reconcile[key] = (s, gid)
                if len(self._reconcile) > self.cfg.buffer:
                    self._reconcile.pop(next(iter(self._reconcile)))
                    self.stats["unreconciled_dropped"] += 1
            if gid in self.identities:
                self.identities[gid].members.discard(key)

    def _finish_locally(self, now: float) -> None:
        """End of a run without the hub: the local engine makes every tracklet final."""
        if self._local is None:
            self._local = self._start_local()
            self._apply_local(self._local.update(list(self.records.values()), now))
        self._apply_local(self._local.flush(now))

    def _set_id(self, key: Key, gid: int) -> None:
        old = self._ids.get(key)
        if old is not None and old != gid:
            if old in self.identities:
                self.identities[old].members.discard(key)
            self._note_site_id(old, gid)
        self._ids[key] = gid
        ident = self.identities.setdefault(gid, NodeIdentity(gid))
        ident.members.add(key)
        ident.cameras.add(key[0])

    def _note_site_id(self, old: int, gid: int) -> None:
        """The hub gave site id ``gid`` to a tracklet that had provisional id ``old``; a provisional
        identity left without tracklets is forgotten (the site id stands for that person now)."""
        if self.is_provisional(old) and not self.is_provisional(gid):
            seen = self.reconciled.setdefault(old, set())
            if gid not in seen:
                seen.add(gid)
                log.info("site: provisional id %d is site id %d", old, gid)
            ident = self.identities.get(old)
            if ident is not None and not ident.members and not self._away:
                del self.identities[old]

    # --- the hub's ids (I/O thread) ----------------------------------------------------------------
    def _late(self, h: dict) -> None:
        """The hub's ids and finals that come while the node is not welcomed (a stalled hub
        catching up) are dropped and counted: the node decides alone until the welcome, so no
        tracklet is finalised by both, and the welcome's resync sends every tracklet the node
        holds again, those it finalised meanwhile included, for the hub's ids."""
        dropped = len(h.get("ids", [])) + len(h.get("final", []))
        with self._lock:
            self.stats["late_ignored"] += dropped
        if dropped:
            log.info(
                "site: ignored %d id(s) from the hub %s that came while it was away "
                "(it gets our state again when it answers)",
                dropped,
                self.cfg.hub,
            )

    def _apply(self, h: dict) -> None:
        for cam, lid, gid in h.get("ids", []):
            self._set_id((cam, lid), gid)
        for d in h.get("decisions", []):
            ident = self.identities.setdefault(d["global_id"], NodeIdentity(d["global_id"]))
            ident.cameras |= set(d.get("cameras", []))
            ident.last_seen = max(ident.last_seen, float(d.get("last_seen") or 0.0))
            self._decisions.append(
                Decision(
                    d["kind"],
                    d["global_id"],
                    (d["camera"], d["local_id"]),
                    d.get("previous"),
                    tuple(d.get("cameras", [])),
                )
            )
        for cam, lid, gid in h.get("final", []):
            key = (cam, lid)
            kept = self._reconcile.pop(key, None)
            if kept is not None:  # decided here while the hub was away, its rows already written
                self._note_site_id(kept[1], gid)
            self._set_id(key, gid)
            if kept is None:  # a tracklet is final once: one decided here has had its final (the report maps its id)
                self._final.append((key, gid))
            self.records.pop(key, None)
            self._sent.pop(key, None)
            self.identities[gid].members.discard(key)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
