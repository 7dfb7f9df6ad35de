"""An edge node's link to the site hub, standing in for the in-process identity engine.

:class:`SiteEngine` is an :class:`~edge.identity.service.IdentityService`, as the single-box
:class:`~edge.identity.IdentityEngine` is: :class:`~edge.runtime.pipeline.EdgePipeline` holds
either. It sends the tracklet summaries to the hub and applies the site ids it returns. The
pipeline thread never waits for the network: summaries go into a bounded outbox
(:mod:`edge.site.outbox`), one I/O thread owns the DEALER socket (:mod:`edge.site.link`).

While the hub is away the node decides with its own engine and provisional ids
(:mod:`edge.site.node_ids`). When the hub answers again (or a restarted hub shows a new session),
the node resends the latest state of every tracklet the hub has not finalised, those decided
here included, and maps each provisional id onto the site id the hub gives (:meth:`SiteEngine.report`);
the hub decides from then on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Optional

import zmq

from edge.identity import Decision, IdentityEngine, TrackletSummary
from edge.site.config import SiteConfig
from edge.site.link import HubLink
from edge.site.node_ids import Key, NodeIds
from edge.site.outbox import Outbox
from edge.wire.curve import load_public, load_secret
from edge.wire.site_protocol import HUB_KINDS, WireTracklet, decode, model_id
from edge.wire.summary_stream import SummaryStream

log = logging.getLogger(__name__)


class HubRefused(RuntimeError):
    """The hub refused this node (model, embedding size, cameras): the reason in one line."""


class SiteEngine(NodeIds):
    """The node side of the site (see the module docstring)."""

    def __init__(
        self,
        cfg: SiteConfig,
        cameras: list[str],
        model_id: str,
        embedding_dim: int,
        describe: Optional[Callable[[Key], tuple[float, int]]] = None,
        context: Optional[zmq.Context] = None,
        local: Optional[Callable[[], IdentityEngine]] = None,
        live: bool = False,
    ):
        """``local``: makes a fresh identity engine with the node's settings, used while the hub is
        away; without it the node only buffers (its tracklets get no global id meanwhile). ``live``:
        the node's scene time is its wall clock (not every camera on files in lockstep): the hub
        says when it runs far ahead of its own (``edge/site/clock_watch.py``)."""
        super().__init__(cfg, local)
        self.describe = describe  # key -> (detection score, frame index) for the hub's events
        self.session = uuid.uuid4().hex[:12]
        self.outbox = Outbox()
        self._stream = SummaryStream()
        self._sent = self._stream.sent  # what the hub has (NodeIds forgets final tracklets in it)
        self.refused: Optional[str] = None
        self.hub_session: Optional[str] = None
        self.bye_pending = False
        # keys are read here, on the caller's thread, so a bad key file stops edge.run with one line
        keys = None if cfg.curve is None else (load_secret(cfg.curve.secret_key), load_public(cfg.curve.server_key))
        hello = {
            "node": cfg.node,
            "session": self.session,
            "model_id": model_id,
            "embedding_dim": int(embedding_dim),
            "cameras": list(cameras),
            "live": live,
        }
        routing_id = f"{cfg.node}.{uuid.uuid4().hex}".encode()  # never published (stats show the session)
        self.link = HubLink(
            cfg, context or zmq.Context.instance(), hello, keys, routing_id, self._lock, self.outbox, self
        )
        self.link.start()

    # --- what the pipeline calls (IdentityService) ------------------------------------------------
    def update(self, summaries: Iterable[TrackletSummary], now: float) -> list[Decision]:
        """Queue the changed tracklets for the hub; return the hub's decisions received since (or,
        while the hub is away, the node's own)."""
        if self.refused:
            raise HubRefused(f"the site hub refused node {self.cfg.node}: {self.refused}")
        summaries = list(summaries)
        with self._lock:
            self._now = max(self._now, now)
            items = [self._wire(s) for s in summaries]
            self.outbox.add(now, items)
            self.outbox.bound(self.cfg.buffer, self._sent, self.stats)
            if self._away and self._local_factory is not None:
                self._decide_locally(summaries, now)
            out, self._decisions = self._decisions, []
        return out

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """End of the run: say bye, then wait for the hub's final ids (:meth:`NodeIds.flush`)."""
        with self._lock:
            self.bye_pending = True
        return super().flush(now)

    def _stop_waiting(self) -> bool:
        return bool(self.refused)

    def close(self, timeout: float = 2.0) -> None:
        self.link.close(timeout)

    # --- what the link reads (LinkOwner; it also calls hub_away and receive) --------------------------
    @property
    def scene_now(self) -> float:
        return self._now

    @property
    def away(self) -> bool:
        return self._away

    # --- summaries on the wire ------------------------------------------------------------------
    def _wire(self, s: TrackletSummary, full: bool = False, track: bool = True) -> WireTracklet:
        if track:  # a tracklet decided here and already final is sent, not tracked
            self.records[s.key] = s
        return self._stream.wire(s, self.describe, full)

    def _resync(self) -> None:
        """The hub (re)welcomed us: it gets the latest full state of every unfinished tracklet
        (the caller holds the lock)."""
        items = [self._wire(s, full=True) for s in self.records.values()]
        items += [self._wire(s, full=True, track=False) for s, _ in self._reconcile.values()]
        self.outbox.refill(self._now, items)
        self.stats["resyncs"] += 1

    def _welcome(self, ids: list) -> None:
        """Welcomed: the hub's ids for our tracklets, the outage (if any) ends, everything the hub
        has not finalised is queued again. One critical section: were the lock released between
        these steps while still away, :meth:`update` could decide locally in the gap and put
        provisional ids over the hub's, with nothing to send them again."""
        with self._lock:
            for cam, lid, gid in ids:
                self._set_id((cam, lid), gid)
            self._hub_back()
            self._resync()

    # --- messages from the hub (I/O thread) -----------------------------------------------------------
    def receive(self, frames: list[bytes], welcomed: bool) -> bool:
        """One message from the hub (the link's thread); returns whether the node is welcomed now."""
        try:
            msg = decode(frames, HUB_KINDS)
        except ValueError as exc:
            log.warning("site: dropped a malformed message from the hub: %s", exc)
            return welcomed
        h = msg.header
        if msg.kind == "refused":
            if h.get("retry"):
                return False
            self.refused = str(h.get("reason"))
            log.error("site: the hub refused node %s: %s", self.cfg.node, self.refused)
            self.link.stop.set()
            return False
        if msg.kind == "welcome":
            if self.hub_session is not None and self.hub_session != h.get("hub_session"):
                log.info("site: the hub restarted (session %s): resending our tracklets", h.get("hub_session"))
            self.hub_session = h.get("hub_session")
            self._welcome(h.get("ids", []))
            log.info("site: welcomed by the hub %s (session %s)", self.cfg.hub, self.hub_session)
            return True
        if msg.kind == "heartbeat" and welcomed and h.get("hub_session") != self.hub_session:
            return False  # a restarted hub: hello again, then resync
        if msg.kind == "heartbeat" and not welcomed:
            return False
        if msg.kind == "ids" and not welcomed:  # late, from a hub we gave up on (or before its welcome): see _late
            self._late(h)
        elif msg.kind == "ids":
            with self._lock:
                self._apply(h)
        return welcomed


def site_engine(
    cfg,
    reid,
    describe: Optional[Callable[[Key], tuple[float, int]]] = None,
    local: Optional[Callable[[], IdentityEngine]] = None,
) -> SiteEngine:
    """The node side for an :class:`~edge.runtime.config.EdgeConfig` with a ``site:`` section; ``local``
    makes the engine that decides while the hub is away."""
    if reid is None:
        raise ValueError("site: a node needs a reid section (the hub matches appearance)")
    return SiteEngine(
        cfg.site, [c.id for c in cfg.cameras], model_id(cfg.reid.model), reid.meta.embedding_dim, describe, local=local,
        live=not cfg.replayable,
    )  # fmt: skip


def outage_line(site: dict, rows: int, provisional_rows: int) -> Optional[str]:
    """The end-of-run warning when the hub was away: what the global MOT rows and events hold."""
    outages = site["hub_outages"]
    if not outages:
        return None
    if not site["answered"]:
        what = "never answered"
    elif outages[-1]["to"] is None:
        what = f"was away at the end (since {outages[-1]['from']})"
    else:
        what = f"was away {len(outages)} time(s), {sum(o['seconds'] for o in outages):.0f} s in all"
    mapped = sum(len(v) for v in site["reconciled"].values())
    return (
        f"site: the hub {site['hub']} {what}: {provisional_rows} of {rows} global MOT rows carry "
        f"node {site['node']}'s own provisional ids (from {site['provisional_from']}), not site ids; "
        f"{site['provisional_ids']} provisional id(s), "
        f"{len(site['reconciled'])} mapped onto {mapped} site id(s) since (report: site)"
    )
