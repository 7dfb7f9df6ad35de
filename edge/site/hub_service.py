"""The identity hub: one identity engine over every edge node's cameras.

Nodes send tracklet summaries (:mod:`edge.site.sessions`: the ROUTER socket, sessions, sequence
numbers, heartbeats and gaps); the hub keeps a mirror of their live tracklets
(:mod:`edge.site.mirror`), feeds them to the same :class:`~edge.identity.IdentityEngine` the
single-box runtime uses, free running or in lockstep (:mod:`edge.site.steps`), commits each step
(:mod:`edge.site.persistence`: the FAISS gallery and the SQLite store) *before* telling the nodes
their tracklets' site ids and publishing the site's identity events (:mod:`edge.site.fanout`).
A restarted hub reloads its identities from the store; a node that comes back resends its live
tracklets.

One thread: a poll loop over the ROUTER socket, with the publisher's own sender thread. This
module is that loop, the engine step and the stats.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Optional

import numpy as np
import zmq

from edge.identity import Decision, IdentityEngine, TrackletSummary
from edge.identity.settings import settings_from_config
from edge.site.fanout import node_messages, publish_decisions
from edge.site.gallery import Gallery
from edge.site.hub_config import HubConfig
from edge.site.mirror import HubTracklet, Mirror
from edge.site.nearest import nearest_candidates
from edge.site.persistence import Persistence
from edge.site.report import summary_line
from edge.site.sessions import Sessions
from edge.site.steps import Batch, WaitingSaid, all_done, take_steps, waiting_for
from edge.site.store import Store, StoreError, store_error
from edge.wire.curve import Guard, check_bind
from edge.wire.publisher import EventPublisher
from edge.wire.site_protocol import model_id

log = logging.getLogger(__name__)


class Hub:
    """The hub's state and its poll loop (:meth:`run`, or :meth:`poll_once` for tests)."""

    def __init__(self, cfg: HubConfig, context: Optional[zmq.Context] = None):
        from core.model_card import read_onnx_metadata

        self.cfg = cfg
        meta = read_onnx_metadata(cfg.reid_model)
        if meta is None or not meta.embedding_dim:
            raise ValueError(f"{cfg.reid_model}: no clipreid-edge metadata (embedding size unknown)")
        self.model_id = model_id(cfg.reid_model)
        self.dim = int(meta.embedding_dim)
        settings = settings_from_config(cfg.matching, meta.similarity, cfg.reid_model, self.dim)
        self.gallery = Gallery(self.dim, cfg.gallery_approximate_above)
        self.engine = IdentityEngine(settings, candidates=self._candidates)
        self.session = uuid.uuid4().hex[:12]
        context = context or zmq.Context.instance()
        check_bind(cfg.bind, cfg.curve is not None, cfg.insecure, "the hub")
        self.guard = Guard(context)
        self.mirror = Mirror()
        # malformed, replayed, refused, unknown_sender, summaries, published, steps, match_ms_total
        self.counters: defaultdict[str, float] = defaultdict(int)
        try:
            self.sessions = Sessions(
                cfg, context, self.guard, self.session, self.model_id, self.dim, self.mirror, self.counters
            )
        except RuntimeError:  # the bind failed (the ROUTER socket is closed)
            self.guard.stop()
            raise
        p = cfg.publisher
        self.publisher: Optional[EventPublisher] = (
            EventPublisher(p.endpoint, p.high_water_mark, curve=p.curve, insecure=p.insecure, guard=self.guard)
            if p.enabled
            else None
        )
        self._now = -np.inf
        self._stats_at = self._beat_at = time.monotonic()
        self._waiting = WaitingSaid(log, "hub:", "not connected yet, or silent")
        self.absent: set[str] = set()  # lockstep: listed nodes never connected, no longer waited for
        self._awaited: dict[str, float] = {}  # lockstep: listed nodes never connected, waited for since
        self.persistence = Persistence(self.engine, self.gallery, None)
        if cfg.store:
            self._open_store(cfg.store)

    def _open_store(self, path: str) -> None:
        """Open the store and reload what it holds; a file that is no hub store ends the start
        with one line naming the ``store`` field and the file (sockets closed)."""
        try:
            self.persistence.store = Store(path)
            self.persistence.reload(self.mirror)
        except StoreError:
            self.close()
            raise
        except sqlite3.Error as exc:  # a database of another program: tables without the hub's columns
            self.close()
            raise store_error(path, exc) from exc

    # --- the gallery seam -------------------------------------------------------------------
    def _candidates(self, waiting: list[TrackletSummary]) -> Optional[list[Iterable[int]]]:
        """The engine's nearest-identity seam (``edge/site/nearest.py``)."""
        return nearest_candidates(self.engine, self.gallery, waiting, self.cfg.gallery_exact_below, self.cfg.gallery_k)

    # --- engine steps -----------------------------------------------------------------------
    def step(self) -> int:
        """Run the engine over what arrived; returns the number of engine updates."""
        steps = take_steps(self.sessions.nodes, self.cfg.lockstep, bool(self.mirror.dirty), self.absent)
        for now, items in steps:
            self._update(now, items)
        if all_done(self.sessions.nodes, self.cfg.lockstep, self.absent) and self.engine.records:
            # every node said bye: everything is final, as at the end of a single run
            last = self.engine.flush(self._now)
            self._update(self._now, [], flushed=last)
        return len(steps)

    def _update(self, now: float, items: Batch, flushed: Optional[list[Decision]] = None) -> None:
        """One engine step over ``items`` (or, at the end, the engine's ``flushed`` decisions): the
        mirror absorbs the summaries, the engine decides, the step is committed, then told."""
        t0 = time.perf_counter()
        engine, mirror = self.engine, self.mirror
        touched: list[HubTracklet] = mirror.take_dirty()
        adopted: list[Decision] = []
        for node, w, full in items:
            t, pinned = mirror.absorb(node.name, node.session, w, full)
            touched.append(t)
            if pinned is not None:
                d = engine.adopt(t.summary(), pinned)
                if d is not None:
                    adopted.append(d)
        if np.isfinite(now):
            self._now = max(self._now, now)
        unique = list({id(t): t for t in touched}.values())
        decisions = adopted + (
            flushed if flushed is not None else engine.update([t.summary() for t in unique], self._now)
        )
        finals = engine.take_final()
        self.counters["steps"] += 1
        self.counters["match_ms_total"] += (time.perf_counter() - t0) * 1000
        changed = [
            t
            for t in mirror.by_engine_key.values()
            if t.told != engine.global_id((t.camera, t.engine_id))
            and engine.global_id((t.camera, t.engine_id)) is not None
        ]
        for t in changed:
            t.told = engine.global_id((t.camera, t.engine_id))
        final_t = [(mirror.by_engine_key.get(k), gid) for k, gid in finals]
        for ft, gid in final_t:
            if ft is not None:
                ft.told = gid
        self.persistence.save(
            decisions,
            finals,
            list({id(t): t for t in (*unique, *changed, *(t for t, _ in final_t if t is not None))}.values()),
            mirror.bases,
        )
        for name, body in node_messages(decisions, changed, final_t, mirror.by_engine_key, engine.identities).items():
            state = self.sessions.nodes.get(name)
            if state is not None:
                self.sessions.send(state.routing_id, "ids", body)
        if self.publisher is not None:
            self.counters["published"] += publish_decisions(
                self.publisher, decisions, mirror.by_engine_key, engine.identities, self.cfg.publisher.send_embeddings
            )
        for ft, _ in final_t:  # final: the hub forgets the tracklet (its identity keeps the evidence)
            if ft is not None:
                mirror.forget(ft)

    # --- the loop ---------------------------------------------------------------------------
    def housekeeping(self) -> None:
        now = time.monotonic()
        self._watch_absent(now)
        if now - self._beat_at >= self.cfg.heartbeat_s:
            self._beat_at = now
            self.sessions.heartbeat(now)
        if now - self._stats_at >= self.cfg.stats_interval_s:
            self._stats_at = now
            report = self.stats()
            log.info("hub: %s", summary_line(report))
            if self.publisher is not None:
                self.publisher.publish("stats", {"event": "stats", **report})
            self._say_waiting()

    def _watch_absent(self, now: float) -> None:
        """In lockstep: a listed node never connected that the others' held steps waited for
        ``absent_after_s`` is said absent (the next :meth:`step` goes on without it)."""
        self.absent -= self.sessions.nodes.keys()  # connected: waited for again (refused later: from now)
        waiting = waiting_for(self.sessions.nodes, self.cfg.lockstep, self.absent)
        never = [n for n in waiting if n not in self.sessions.nodes]
        self._awaited = {n: self._awaited.get(n, now) for n in never}
        limit = self.cfg.absent_after_s
        for name, since in list(self._awaited.items()):
            if limit > 0 and now - since >= limit:
                del self._awaited[name]
                self.absent.add(name)
                log.warning(
                    "hub: node %s never connected while the others' steps waited for it over %g s: said absent "
                    "(lockstep: the others go on without it until it connects)", name, limit,
                )  # fmt: skip

    def _say_waiting(self) -> None:
        """In lockstep, once per change: the listed nodes the others' steps wait for."""
        waiting = waiting_for(self.sessions.nodes, self.cfg.lockstep, self.absent)
        self._waiting.say(waiting, sum(len(n.pending) for n in self.sessions.nodes.values()))

    def stats(self) -> dict:
        """The hub's stats: its log line, the ``stats`` event and the ``--report`` file."""
        now = time.monotonic()
        c = self.counters
        allow = self.sessions.node_allow
        return {
            "hub_session": self.session,
            "gallery": len(self.engine),
            "index": self.gallery.kind,
            "live_tracklets": len(self.engine.records),
            "nodes": self.sessions.stats(now),
            "summaries": c["summaries"],
            "steps": c["steps"],
            "malformed": c["malformed"],
            "replayed": c["replayed"],
            "refused": c["refused"],
            "refusals": dict(self.sessions.refusals),
            "refused_keys": dict(allow.refused) if allow else {},
            "published": c["published"],
            "events_dropped": self.publisher.dropped if self.publisher else 0,
            "match_ms_mean": round(c["match_ms_total"] / max(c["steps"], 1), 3),
            "clock_ahead": dict(self.sessions.clock.ahead),
            **({"absent": sorted(self.absent)} if self.cfg.lockstep else {}),
        }

    def poll_once(self, timeout_ms: int = 50, max_messages: int = 1000) -> None:
        router = self.sessions.router
        if router.poll(timeout_ms):
            for _ in range(max_messages):
                try:
                    frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self.sessions.handle(frames)
        self.step()
        self.housekeeping()

    def run(self, stop: threading.Event) -> dict:
        log.info(
            "hub: session %s, nodes on %s%s, events on %s, model %s (%d-d), %d identities",
            self.session,
            self.cfg.bind,
            " (CURVE)" if self.cfg.curve else "",
            self.publisher.endpoint if self.publisher else "off",
            self.model_id,
            self.dim,
            len(self.engine),
        )
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            report = self.stats()
            self.close()
        return report

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        self.sessions.close()
        self.guard.stop()
        self.persistence.close()
