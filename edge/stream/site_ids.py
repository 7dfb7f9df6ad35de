"""A streaming node's site ids: the region's decisions, back onto the node's own tracklets.

The node publishes its summaries to the region's stream (:class:`~edge.stream.node_stream.StreamOutput`)
and follows the region's decision stream (:class:`DecisionFollower`): each decision message names
the node, its session and its own local id for every tracklet it decided, re-labelled (``ids``) or
made final, so the node's MOT files and events carry the site's ids, as a ZeroMQ site node's do
(``edge/site/node.py``). What a node does with them is :class:`~edge.site.node_ids.NodeIds`', shared
with that node: while the region has no active hub (no lease holder for two leases) it decides with
its own engine and provisional ids, and maps each onto the site id the hub gives when one is back.

Nothing has to be sent again when a hub comes back, unlike the ZeroMQ site: every summary is in
the stream, the hub that takes over decides every one of them in order, and the follower reads
every decision message published since the node started, so each tracklet gets its site id and
its final id from the hub in the end (the end of a run waits ``flush_timeout_s`` for the finals).

A node silent past the hub's node timeout (cut off that long) is said gone
(``edge/stream/silent_nodes.py``), and the hub refuses the session's later messages. The node
reads that in the decision stream once its link is back and carries on in a new session, every
tracklet the hub has not made final for it sent again in full (:meth:`StreamSiteIds._new_session`).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

from nats.js.api import ConsumerConfig, DeliverPolicy

from edge.identity import Decision, IdentityEngine, TrackletSummary
from edge.site.node_ids import NodeIds
from edge.stream.config import StreamConfig
from edge.stream.names import Region
from edge.stream.node_stream import CLOSE_WAIT_S, StreamOutput
from edge.stream.ordered_reader import OrderedReader
from edge.stream.streams import connect, retry

log = logging.getLogger("edge.stream")

CLOCK_SLACK_S = 60.0  # decisions are read from this long before the node started (the servers' clock may differ)


class DecisionFollower:
    """Every decision message of a region published since ``since`` (wall clock; None: all of
    them), each body to ``deliver`` on this follower's own thread; messages not naming ``session``
    are skipped unread."""

    def __init__(
        self, servers: list[str], region: Region, session: str, since: Optional[float], deliver: Callable[[dict], None]
    ):
        self.servers, self.region, self.session, self.since = servers, region, session, since
        self.deliver = deliver
        self.read = 0
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),), daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._loop.close()

    async def _run(self) -> None:
        stopping = lambda: self._stopping  # noqa: E731
        nc = await connect(self.servers, f"{self.session} decisions", give_up=stopping)
        if nc is None:
            return
        js = nc.jetstream()
        if self.since is None:  # a resumed session: its decisions began before this run
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        else:
            start = datetime.datetime.fromtimestamp(self.since - CLOCK_SLACK_S, datetime.timezone.utc)
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)
        reader = OrderedReader(js, self.region.decisions_stream, self.region.decisions_subject, config,
                               what=f"region {self.region.name}'s decisions")  # fmt: skip
        subscribed = await retry(lambda: _subscribed(reader), stopping) is not None  # no stream made yet: wait
        while subscribed and not self._stopping:
            msg = await reader.next(timeout=0.2)
            if msg is None:
                continue
            self.read += 1
            if self.session.encode() in msg.data:  # the session may change (said gone: a new one)
                try:
                    self.deliver(json.loads(msg.data))
                except Exception:  # noqa: BLE001 - one bad message must not stop the node's ids
                    log.exception("stream: a decision message of region %s could not be applied", self.region.name)
        if subscribed:
            await reader.close()
        try:
            await nc.close()
        except Exception:  # noqa: BLE001 - the servers gone meanwhile
            pass


async def _subscribed(reader: OrderedReader) -> bool:
    await reader.subscribe()
    return True


class StreamSiteIds(NodeIds):
    """The identity service of a node with ``stream: {site_ids: true}`` (see the module docstring)."""

    def __init__(
        self,
        cfg: StreamConfig,
        cameras: list[str],
        embedding_dim: int,
        local: Optional[Callable[[], IdentityEngine]] = None,
        since: Optional[float] = None,
        replay: str = "",
    ):
        """``local``: the node's own engine while no hub decides; ``since``: the wall clock this
        node's decisions can be no older than (now); ``replay``: see :class:`StreamOutput` (a
        resumed session's decisions are read from its killed run's start, and applied once the
        replay has made the tracklets they name again)."""
        super().__init__(cfg, local)
        self.stats["new_sessions"] = 0  # said gone, carried on in a new session
        self._pending: list[dict] = []  # the hub's decisions for this node, until they may apply (_drain)
        self._replay_over = False  # the run's end: a replay that stopped early will make nothing more
        self.output = StreamOutput(cfg, cameras, embedding_dim, self._on_hub, replay)
        self.session = self.output.session
        self._said_gone = False  # the region's hub said this session gone: a new one at the next step
        self._flushing = False  # the run's end: a session said gone from now on takes the gone step's finals
        self._flush_deadline: Optional[float] = None  # the run's end (monotonic): close waits no longer
        resumed = self.output.resumed
        start = resumed.epoch if resumed else time.time() if since is None else since
        self.follower = DecisionFollower(cfg.servers, Region(cfg.region), self.session, start, self._receive)

    # --- what the pipeline calls (IdentityService) ------------------------------------------------
    def update(self, summaries: Iterable[TrackletSummary], now: float) -> list[Decision]:
        """Publish the changed tracklets; return the region's decisions about them received since
        (or, while no hub decides, the node's own)."""
        summaries = list(summaries)
        with self._lock:  # recorded before it is published: the hub's final cannot come first
            self._now = max(self._now, now)
            for s in summaries:
                self.records[s.key] = s
            if self._away and self._local_factory is not None:
                self._decide_locally(summaries, now)
            out, self._decisions = self._decisions, []
        if self._said_gone:
            self.output.write_again(now, self._new_session())
        else:
            self.output.write(now, summaries)
        if self._pending:
            with self._lock:
                self._drain()
        return out

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """End of the run: a bye after the last summaries (the hub makes this session's tracklets
        final), everything into the stream, then the hub's final ids (:meth:`NodeIds.flush`).

        All of it within one ``flush_timeout_s``. Unlike a ZeroMQ node's, a region hub away at the
        end is waited for too: every summary is in the durable stream, so a hub back meanwhile, or a
        link just restored, still makes this session's ids final."""
        deadline = self._flush_deadline = time.monotonic() + self.cfg.flush_timeout_s
        with self._lock:  # a replay that ended before its killed run had: what it made again
            self._replay_over = self._flushing = True
            self._drain()
        if self._said_gone:
            self.output.write_again(self._now, self._new_session())
        self.output.writer.bye()
        self.output.publisher.flush(max(0.0, deadline - time.monotonic()))
        if self._away and time.monotonic() < deadline:
            log.info(
                "site: the hub %s is away at the end: waiting up to %.0f s for one (the summaries are in the stream)",
                self.cfg.hub, deadline - time.monotonic(),
            )  # fmt: skip
        while self._away and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._flush_until(now, deadline)

    def report(self) -> dict[str, Any]:
        return {**super().report(), "decision_messages": self.follower.read}

    def _new_session(self) -> list[TrackletSummary]:
        """Said gone: a new session (pipeline thread), and every tracklet the hub has not made final
        for it, to send in full: the live and ended ones, and those decided here meanwhile (each
        gets its site id from the new session's decisions; the old session's finals were not
        taken, :meth:`_receive`). Those the old session made final before it was said gone, in
        decisions still held, are not: they get that final."""
        with self._lock:
            self._said_gone = False
            final = {(cam, lid) for h in self._pending for cam, lid, _ in h["final"]}
            again = [s for s in self.records.values() if s.key not in final]
            again += [s for s, _ in self._reconcile.values() if s.key not in final]
        self.session = self.follower.session = self.output.new_session()
        self.stats["new_sessions"] += 1
        return again

    def close(self) -> None:
        """With the link down after :meth:`flush`, what is left of its ``flush_timeout_s`` and no
        more: flush already waited for the stream, and the output's own wait would come on top.
        With the link up, that wait as ever: the last messages and the ``bye`` (without it the
        next run of the same files carries this session on) are on their way."""
        down = self.output.publisher.down_since is not None
        left = None if self._flush_deadline is None else max(0.0, self._flush_deadline - time.monotonic())
        self.output.close(left if down and left is not None else CLOSE_WAIT_S)
        self.follower.close()

    # --- the region's hub and its decisions (the publisher's and the follower's threads) ------------
    def _on_hub(self, away: bool, since: float) -> None:
        """The region's lease says whether a hub decides (it alone ends an outage: decisions that
        come meanwhile, a backlog from a hub that died, wait until it does)."""
        if away:
            self.hub_away(since)
            return
        with self._lock:
            self._hub_back()
            self._drain()

    def _receive(self, body: dict) -> None:
        """One decision message: what it says of this node session's tracklets, applied."""
        node, session = self.cfg.node, self.session

        def ours(items: list[dict]) -> list[dict]:
            return [e for e in items if e.get("node") == node and e.get("session") == session]

        if ours(body.get("gone", [])):  # its finals are the ended session's: the new one gets its own
            with self._lock:
                if not self._flushing:
                    self._said_gone = True
                    return
            # said gone while the run ends (its link back during the last wait): no new session, the
            # gone step's finals are the hub's last word on this run's tracklets

        h = {
            "ids": [[e["key"][0], e["local_id"], e["global_id"]] for e in ours(body.get("ids", []))],
            "decisions": [
                {**e, "camera": e["key"][0], "local_id": e["local_id"]} for e in ours(body.get("decisions", []))
            ],
            "final": [[e["key"][0], e["local_id"], e["global_id"]] for e in ours(body.get("final", []))],
        }
        if not (h["ids"] or h["decisions"] or h["final"]):
            return
        with self._lock:
            self._pending.append(h)
            self._drain()

    def _drain(self) -> None:
        """The held decisions applied, in order, once they may be (the caller holds the lock): a
        hub decides (while this node decides alone, the lease saying no hub does, the hub's ids
        would cross its provisional ones), and a carried-on session's replay has made again the
        tracklets they name (else a final would find none, and the tracklet replayed after it
        would wait for a final that never comes)."""
        if not self._pending or self._away or (self.output.replaying and not self._replay_over):
            return
        if not self.connected:  # the first decisions may come before the lease is read
            self._hub_back()
        pending, self._pending = self._pending, []
        for h in pending:  # each taken off first: one that cannot be applied is said, not applied again
            try:
                self._apply(h)
            except Exception:  # noqa: BLE001 - a message of another version: the others still apply
                log.exception("stream: a decision message of region %s could not be applied", self.follower.region.name)
