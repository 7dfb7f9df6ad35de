"""A region's hub on its stream: the unchanged identity engine, one active hub, hot standbys.

Every hub of a region reads the region's summaries stream from its start, in the stream's one
order (an ordered consumer), one engine step per message, exactly as a tracklet log is replayed
(:class:`~edge.site.tracklet_log.StepReader`). The engine is deterministic, so every hub makes
the same decisions at the same stream position. The hub that holds the region's lease (a key in
the lease bucket, created only when absent and renewed every third of its time to live) publishes
each step's decisions to the region's decision stream, with the step's stream position as the
message id, and the others keep theirs for a while. When the active hub stops (killed, its machine
gone, cut off), its key expires and a standby creates it: it reads the position of the last
decision published and publishes its own from the next one on. The server drops a second message
with an id it has, so nothing is published twice even when two hubs overlap for a moment, and
nothing is lost: the standby computed every step itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from edge.identity import Decision, Identity, IdentityEngine
from edge.identity.records import Key, TrackletSummary
from edge.identity.settings import EngineSettings
from edge.site.fanout import publish_decisions
from edge.site.gallery import Gallery
from edge.site.nearest import follow_engine, index_identities, nearest_candidates
from edge.site.tracklet_log import StepReader
from edge.stream.checkpoint import HubState, checkpoint_store, dump, fingerprint, read_checkpoint
from edge.stream.frames import pack, unpack
from edge.stream.handover import Outgoing, handover_message, read_handover
from edge.stream.names import HANDOVER_HEADER, HUB_HEADER, LEASE_S, NODE_HEADER, SESSION_HEADER, STEP_HEADER, Region
from edge.stream.streams import connect, ensure_streams, lease_bucket
from edge.wire.publisher import EventPublisher
from edge.wire.site_protocol import ProtocolError

log = logging.getLogger("edge.stream")

STATS_EVERY_S = 5.0
PUBLISH_TIMEOUT_S = 0.5  # well inside a lease renewal (a third of LEASE_S): a slow publish does not let it lapse
KEEP_STEPS = 100_000  # decided steps a standby keeps to publish should it take over


@dataclass(frozen=True)
class GallerySettings:
    """The hub YAML's ``gallery_*``: exact scoring below ``exact_below`` identities, else the ``k``
    nearest; an approximate index past ``approximate_above``."""

    exact_below: int = 2000
    k: int = 64
    approximate_above: int = 50000


def decision_message(
    region: Region,
    step: int,
    now: float,
    decisions: list[Decision],
    final: list[tuple[Key, int]],
    origin: Mapping[Key, tuple[str, str, int]],
    ids: Optional[list[tuple[Key, int]]] = None,
    identities: Optional[Mapping[int, Identity]] = None,
    handed_over: Optional[list[Outgoing]] = None,
) -> bytes:
    """One step's decisions as the decision stream carries them (JSON): each names the engine key
    and, through ``origin``, the node, its session and the node's own local id (what a subscriber
    or the node itself maps the site id onto). ``ids``: every tracklet whose site id this step
    changed (a merge moves tracklets no decision names), ``final``: those that will not change again;
    with ``identities``, each decision says its identity's cameras and when it was last seen."""

    def node_of(key: Optional[Key]) -> dict[str, Any]:
        found = origin.get(key) if key is not None else None
        return {} if found is None else {"node": found[0], "session": found[1], "local_id": found[2]}

    def seen(gid: int) -> dict[str, Any]:
        found = identities.get(gid) if identities is not None else None
        return {} if found is None else {"cameras": sorted(found.cameras), "last_seen": found.last_seen}

    body = {
        "region": region.name,
        "step": step,
        "now": now,
        "decisions": [
            {
                "kind": d.kind,
                "global_id": d.global_id,
                "key": list(d.key) if d.key else None,
                "previous": d.previous,
                **node_of(d.key),
                **seen(d.global_id),
            }
            for d in decisions
        ],
        "ids": [{"key": [c, int(i)], "global_id": int(g), **node_of((c, i))} for (c, i), g in ids or []],
        "handed_over": [{"region": o.region, "message": o.msg_id} for o in handed_over or []],
        "final": [{"key": [c, int(i)], "global_id": int(g), **node_of((c, i))} for (c, i), g in final],
    }
    return json.dumps(body, separators=(",", ":")).encode()


class RegionHub:
    """See the module docstring. ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        servers: list[str],
        region: Region,
        settings: EngineSettings,
        name: str,
        lease_s: float = LEASE_S,
        replicas: int = 1,
        events: Optional[EventPublisher] = None,
        embedding_dim: Optional[int] = None,
        gallery: Optional[GallerySettings] = None,
        checkpoint_every_s: float = 30.0,
        hand_over: Optional[Mapping[str, str]] = None,
        id_base: int = 0,
        model_id: str = "",
    ):
        """``events``: the ZeroMQ publisher subscribers (the view, ``edge.listen``) read the active
        hub's identity events on, as from ``edge.hub``; ``embedding_dim``: its model's (a node with
        another model is refused); ``gallery``: past identities searched with FAISS (as ``edge.hub``
        does: ``edge/site/nearest.py``) rather than each scored (needs ``embedding_dim``);
        ``checkpoint_every_s``: how often the active hub writes its state to the checkpoint store
        (``edge/stream/checkpoint.py``), what a hub that starts continues from (0: never; a hub
        then reads the region from its start); ``hand_over``: boundary camera -> the region a
        person leaving through it is handed to (``edge/stream/handover.py``); ``id_base``: this
        region's ids start above it (regions that hand over need ranges apart); ``model_id``: the
        ReID model's (a checkpoint made with another model is not used)."""
        self.servers, self.region, self.name = servers, region, name
        self.events = events
        self.lease_s, self.replicas = lease_s, replicas
        self.gallery: Optional[Gallery] = None
        self.search = gallery
        if gallery is not None and embedding_dim is not None:
            self.gallery = Gallery(embedding_dim, gallery.approximate_above)
        self.engine = IdentityEngine(settings, candidates=self._candidates if self.gallery is not None else None)
        if id_base:
            self.engine.restore([], id_base + 1)
        self.hand_over = dict(hand_over or {})
        self._outgoing: list[Outgoing] = []  # the hand-overs of the step just decided
        self.reader = StepReader(embedding_dim)
        self.leader = False
        self.position = 0  # the last stream position decided
        self.told: dict[Key, int] = {}  # the site id the decision stream last gave each tracklet not final
        self.published_upto = 0  # the last step the region's decision stream has (as far as this hub knows)
        # decided steps not known published, each with its hand-overs
        self.recent: deque[tuple[int, bytes, list[Outgoing]]] = deque(maxlen=KEEP_STEPS)
        self.counters = dict.fromkeys(
            (
                "steps",
                "published",
                "malformed",
                "failed_steps",
                "takeovers",
                "lost_lease",
                "checkpoints",
                "handed_over",
                "handed_in",
                "handovers_refused",
            ),
            0,
        )
        self.now = -float("inf")  # the region's scene clock: the latest time any message carried
        self._refused: set[tuple[str, str]] = set()  # sessions a skipped message was said for
        self.read_span: list[float] = []  # wall clock of the first and the last message read (throughput)
        self._revision = 0
        self._renewed = 0.0
        self._next_try = 0.0
        self.fingerprint = fingerprint(
            settings, embedding_dim, gallery, sorted(self.hand_over.items()), id_base, model_id
        )
        self.checkpoint_every_s = checkpoint_every_s
        self.checkpointed = 0  # the position of the last checkpoint written or loaded
        self._checkpoint_at = time.monotonic()
        self._saving: Optional[asyncio.Task] = None
        self._dumping = False
        self._stream_made = ""  # when the region's summaries stream was made (a checkpoint names it)

    # --- one step -----------------------------------------------------------------------------
    def decide(self, position: int, parts: list[bytes], node: str, session: str) -> Optional[bytes]:
        """The engine step of the message at ``position``: its decision message, None when it
        decided nothing (or was no step)."""
        self.position = position
        self._outgoing = []
        self.read_span[1:] = [time.time()]
        if len(self.read_span) == 1:
            self.read_span.insert(0, self.read_span[0])
        try:
            step = self.reader.read(parts, node, session)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            self.counters["malformed"] += 1
            said = (node, session) in self._refused
            self._refused.add((node, session))
            (log.debug if said else log.warning)("stream: message %d of node %s skipped: %s", position, node, exc)
            return None
        if step is None:
            return self._session_ends(self.reader.take_byes(), position)
        self.now = max(self.now, step[0])  # a node replaying its buffer after an outage sends older times
        self.counters["steps"] += 1
        try:
            decisions = self.engine.update(step[1], self.now)
        except Exception:  # every hub fails at this very message: dying would stop the region for good
            self.counters["failed_steps"] += 1
            log.exception("stream: the engine failed at message %d of node %s: its decisions are lost", position, node)
            return None
        final: list[tuple[Key, int]] = self.engine.take_final()
        if self.gallery is not None:
            follow_engine(self.gallery, self.engine, decisions, final)
        ids = self._changed_ids()
        self._outgoing = self._hand_overs(position, step[1])
        if not decisions and not final and not ids and not self._outgoing:
            return None
        return self._message(position, decisions, final, ids)

    def _session_ends(self, byes: list[tuple[str, str]], position: int) -> Optional[bytes]:
        """A node session said bye: its ended tracklets are final now (its decision message), None
        when it had none left."""
        keys = [k for k, (node, session, _) in self.reader.origin.items() if (node, session) in set(byes)]
        self.engine.finalise(keys)
        final = self.engine.take_final()
        if not final:
            return None
        if self.gallery is not None:
            follow_engine(self.gallery, self.engine, [], final)
        return self._message(position, [], final, [])

    def _message(
        self, position: int, decisions: list[Decision], final: list[tuple[Key, int]], ids: list[tuple[Key, int]]
    ) -> bytes:
        """The step's decision message; the final tracklets forgotten (nothing more is decided about them)."""
        origin = self.reader.origin
        body = decision_message(
            self.region, position, self.now, decisions, final, origin, ids, self.engine.identities, self._outgoing
        )
        for key, _ in final:
            origin.pop(key, None)
            self.told.pop(key, None)
        return body

    def _hand_overs(self, position: int, summaries: list[TrackletSummary]) -> list[Outgoing]:
        """The identities of the tracklets that ended at a boundary camera this step, for the regions
        those cameras lead to."""
        out = []
        for s in summaries:
            region = self.hand_over.get(s.camera)
            gid = self.engine.global_id(s.key) if region is not None and s.ended else None
            ident = self.engine.identities.get(gid) if gid is not None else None
            if region is None or ident is None or ident.sealed:
                continue
            members = [self.engine.records[k].weight for k in ident.members if k in self.engine.records]
            parts = handover_message(
                self.region.name, ident, self.engine.appearance(ident), ident.past_weight + sum(members)
            )
            out.append(Outgoing(region, f"{self.region.name}-handover-{position}-{gid}-{region}", parts))
            self.counters["handed_over"] += 1
        return out

    def welcome(self, position: int, parts: list[bytes]) -> None:
        """A person handed over by a neighbouring region (a message of this region's stream): an
        identity of this engine from now on, which its tracklets may join."""
        self.position = position
        try:
            source, ident = read_handover(parts)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            self.counters["malformed"] += 1
            log.warning("stream: hand-over at message %d skipped: %s", position, exc)
            return
        if not self.engine.welcome(ident):
            self.counters["handovers_refused"] += 1
            log.warning(
                "stream: region %s handed over id %d, one region %s founded itself: give each region its own "
                "id range (--id-base)", source, ident.global_id, self.region.name,
            )  # fmt: skip
            return
        self.counters["handed_in"] += 1
        if self.gallery is not None:
            index_identities(self.gallery, [self.engine.identities[ident.global_id]])

    def take(self, position: int, parts: list[bytes], headers: Mapping[str, str]) -> Optional[bytes]:
        """One message of the region's stream: a node's (:meth:`decide`) or a hand-over (:meth:`welcome`)."""
        if HANDOVER_HEADER in headers:
            self.welcome(position, parts)
            return None
        return self.decide(position, parts, headers.get(NODE_HEADER, "?"), headers.get(SESSION_HEADER, "?"))

    def _changed_ids(self) -> list[tuple[Key, int]]:
        """Tracklets whose site id is not the one the decision stream last gave them."""
        changed = []
        for key in self.reader.origin:
            gid = self.engine.global_id(key)
            if gid is not None and self.told.get(key) != gid:
                self.told[key] = gid
                changed.append((key, gid))
        return changed

    def decide_all(self, messages: list[list[bytes]], node: str, session: str) -> dict[int, dict]:
        """Each decision message (as JSON) by position, for a stream holding just ``messages`` of one
        node session from position 1: what an active hub publishes for it (a reference to compare with)."""
        out = {}
        for position, parts in enumerate(messages, start=1):
            body = self.decide(position, parts, node, session)
            if body is not None:
                out[position] = json.loads(body)
        return out

    # --- the state a checkpoint keeps ---------------------------------------------------------
    def state(self) -> HubState:
        """What this hub decides from, after the message at :attr:`position`."""
        return HubState(self.position, self.now, self.engine, self.reader, self.gallery, self.told)

    def load(self, state: HubState) -> None:
        """Continue from ``state`` (read the stream from ``state.position + 1``)."""
        self.position, self.now, self.engine, self.reader = state.position, state.now, state.engine, state.reader
        self.gallery, self.told = state.gallery, state.told
        self.engine.candidates = self._candidates if self.gallery is not None else None
        self.checkpointed = state.position

    def _candidates(self, waiting: list[TrackletSummary]) -> Optional[list[Iterable[int]]]:
        assert self.gallery is not None and self.search is not None
        return nearest_candidates(self.engine, self.gallery, waiting, self.search.exact_below, self.search.k)

    # --- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> dict[str, Any]:
        asyncio.run(self._run(stop))
        return self.stats()

    async def _run(self, stop: threading.Event) -> None:
        nc = await connect(self.servers, f"hub {self.name}")
        js = nc.jetstream()
        kv, store = await self._retry(lambda: self._setup(js))
        start = await self._resume(js, store)
        sub = await self._retry(lambda: self._subscribe(js, start))
        log.info(
            "stream: hub %s reads region %s from position %d (%s)",
            self.name, self.region.name, start, ",".join(self.servers),
        )  # fmt: skip
        stats_at = time.monotonic()
        while not stop.is_set():
            await self._lease(js, kv)
            self._maybe_checkpoint(store)
            if self._dumping:  # the state is being pickled: decide nothing until it is (the lease is kept)
                await asyncio.sleep(0.02)
                continue
            if time.monotonic() - stats_at >= STATS_EVERY_S:
                stats_at = time.monotonic()
                log.info("stream: hub %s: %s", self.name, json.dumps(self.stats()))
            try:
                msg = await sub.next_msg(timeout=0.05)
            except NatsTimeout:
                if self.leader and self.recent:  # a publish that failed: try again while the stream is quiet
                    await self._publish_recent(js)
                continue
            try:
                parts = unpack(msg.data)
            except ValueError:
                parts = []
            out = self.take(msg.metadata.sequence.stream, parts, msg.headers or {})
            if out is not None:
                self.recent.append((self.position, out, self._outgoing))
                if self.leader:
                    await self._publish_recent(js)
        if self.leader:  # hand over at once rather than after the lease runs out (only a lease still ours)
            await self._last_checkpoint(store)
            try:
                await kv.delete(self.region.name, last=self._revision)
            except Exception:  # noqa: BLE001 - the key expires by itself
                pass
        try:
            await sub.unsubscribe()
            await nc.close()
        except Exception:  # noqa: BLE001 - the servers gone meanwhile: nothing left to say to them
            pass
        if self.events is not None:
            self.events.close()

    async def _setup(self, js: Any) -> tuple[Any, Any]:
        for name in sorted({self.region.name, *self.hand_over.values()}):  # a neighbour's, to hand over into
            await ensure_streams(js, Region(name), self.replicas)
        return await lease_bucket(js, self.lease_s, self.replicas), await checkpoint_store(js, self.replicas)

    async def _subscribe(self, js: Any, start: int) -> Any:
        if start <= 1:
            return await js.subscribe(self.region.summaries_subject(), ordered_consumer=True)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        return await js.subscribe(self.region.summaries_subject(), ordered_consumer=True, config=config)

    # --- checkpoints --------------------------------------------------------------------------
    async def _resume(self, js: Any, store: Any) -> int:
        """Load the region's checkpoint when there is one this hub may use: the position to read from."""
        if self.checkpoint_every_s <= 0:
            return 1
        info = await self._retry(lambda: js.stream_info(self.region.summaries_stream))
        self._stream_made = str(info.created or "")
        state = await read_checkpoint(store, self.region, self.fingerprint, self._stream_made)
        if state is None:
            return 1
        kept = info.state
        if kept.last_seq < state.position:
            log.warning(
                "stream: region %s's checkpoint is at position %d but its stream ends at %d (a stream made anew?): "
                "reading from the start", self.region.name, state.position, kept.last_seq,
            )  # fmt: skip
            return 1
        if kept.first_seq > state.position + 1:
            log.warning(
                "stream: region %s's messages %d-%d after its checkpoint are gone (past the stream's age): "
                "decisions may differ from the hub that wrote it", self.region.name, state.position + 1,
                kept.first_seq - 1,
            )  # fmt: skip
        self.load(state)
        log.info(
            "stream: hub %s continues region %s from its checkpoint at position %d (%d identities)",
            self.name, self.region.name, state.position, len(self.engine.identities),
        )  # fmt: skip
        return state.position + 1

    def _maybe_checkpoint(self, store: Any) -> None:
        """The active hub, every ``checkpoint_every_s``: its state, once every decided step is published
        (so a hub that continues from it has nothing older to publish), written in the background."""
        due = time.monotonic() - self._checkpoint_at >= self.checkpoint_every_s > 0
        if not (due and self.leader and not self.recent and self.position > self.checkpointed):
            return
        if self._saving is not None and not self._saving.done():
            return
        self._checkpoint_at = time.monotonic()
        self._dumping = True  # the loop decides nothing until the state is pickled (a second at 30 000 identities)
        self._saving = asyncio.ensure_future(self._save(store, self.position))

    async def _save(self, store: Any, position: int) -> None:
        started = time.monotonic()
        try:
            blob = await asyncio.to_thread(dump, self.region, self.state(), self.fingerprint, self._stream_made)
        finally:
            self._dumping = False
        try:
            await store.put(self.region.name, blob)
        except Exception as exc:  # noqa: BLE001 - the servers away: the next one will do
            log.warning("stream: hub %s could not write its checkpoint at position %d (%s)", self.name, position, exc)
            return
        self.checkpointed = max(self.checkpointed, position)
        self.counters["checkpoints"] += 1
        log.info(
            "stream: hub %s wrote region %s's checkpoint at position %d (%.1f MB, %.2f s)",
            self.name, self.region.name, position, len(blob) / 1e6, time.monotonic() - started,
        )  # fmt: skip

    async def _last_checkpoint(self, store: Any) -> None:
        """On a clean stop of the active hub: its state as it ends, so its successor replays nothing."""
        if self._saving is not None and not self._saving.done():
            await asyncio.wait([self._saving], timeout=5.0)
        self._checkpoint_at = -float("inf")
        self._maybe_checkpoint(store)
        if self._saving is not None and not self._saving.done():
            await asyncio.wait([self._saving], timeout=5.0)

    async def _retry(self, make: Any) -> Any:
        while True:
            try:
                return await make()
            except Exception as exc:  # noqa: BLE001 - a cluster still electing its leader
                log.debug("stream: not ready yet (%s)", exc)
                await asyncio.sleep(0.25)

    # --- the lease ----------------------------------------------------------------------------
    async def _lease(self, js: Any, kv: Any) -> None:
        now = time.monotonic()
        if self.leader:
            if now - self._renewed < self.lease_s / 3:
                return
            try:
                self._revision = await kv.update(self.region.name, self.name.encode(), last=self._revision)
                self._renewed = now
            except Exception as exc:  # noqa: BLE001 - taken over or unreachable: stop publishing
                self.leader = False
                self.counters["lost_lease"] += 1
                log.warning("stream: hub %s lost region %s's lease (%s): standing by", self.name, self.region.name, exc)
            return
        if now < self._next_try:
            return
        self._next_try = now + 0.25
        try:
            self._revision = await kv.create(self.region.name, self.name.encode())
        except Exception:  # noqa: BLE001 - another hub holds it (or the servers are away)
            return
        try:
            published_upto = await self._last_published(js)
        except Exception as exc:  # noqa: BLE001 - not knowing what was published, publishing could repeat it
            log.warning("stream: hub %s could not read the last published step (%s): lease given back", self.name, exc)
            try:
                await kv.delete(self.region.name, last=self._revision)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
            return
        self.leader, self._renewed = True, now
        self.counters["takeovers"] += 1
        self.published_upto = published_upto
        log.info(
            "stream: hub %s is region %s's active hub at position %d (decisions published up to %d)",
            self.name, self.region.name, self.position, self.published_upto,
        )  # fmt: skip
        await self._publish_recent(js)

    async def _last_published(self, js: Any) -> int:
        try:
            last = await js.get_last_msg(self.region.decisions_stream, self.region.decisions_subject)
        except NotFoundError:
            return 0
        return int((last.headers or {}).get(STEP_HEADER, 0))

    async def _publish_recent(self, js: Any) -> None:
        """Publish the decided steps after the last published one, in order (a failure leaves them for the next try)."""
        while self.recent and self.leader:
            step, body, outgoing = self.recent[0]
            if step > self.published_upto:
                if not await self._publish_hand_overs(js, outgoing):
                    return
                headers = {"Nats-Msg-Id": f"{self.region.name}-{step}", STEP_HEADER: str(step), HUB_HEADER: self.name}
                try:
                    ack = await js.publish(
                        self.region.decisions_subject, body, timeout=PUBLISH_TIMEOUT_S, headers=headers
                    )
                except Exception as exc:  # noqa: BLE001 - the servers are away: the step waits
                    log.warning("stream: hub %s could not publish step %d (%s)", self.name, step, exc)
                    return
                self.published_upto = step
                self.counters["published"] += 1
                if self.events is not None and not ack.duplicate:  # another hub told the subscribers
                    self._tell_subscribers(body)
            self.recent.popleft()

    async def _publish_hand_overs(self, js: Any, outgoing: list[Outgoing]) -> bool:
        """A step's hand-overs into their regions' streams, before its decision message (False: try again)."""
        for o in outgoing:
            headers = {"Nats-Msg-Id": o.msg_id, HANDOVER_HEADER: self.region.name}
            subject = Region(o.region).summaries_subject(f"from-{self.region.name}")
            try:
                await js.publish(subject, pack(o.parts), timeout=PUBLISH_TIMEOUT_S, headers=headers)
            except Exception as exc:  # noqa: BLE001 - the servers away, or the region's stream not made yet
                log.warning("stream: hub %s could not hand %s over (%s)", self.name, o.msg_id, exc)
                return False
        return True

    def _tell_subscribers(self, body: bytes) -> None:
        """A published step's decisions as identity events (the identities as they stand now)."""
        assert self.events is not None
        step = json.loads(body)
        decisions = [
            Decision(d["kind"], d["global_id"], tuple(d["key"]) if d["key"] else None, d["previous"])
            for d in step["decisions"]
        ]
        publish_decisions(self.events, decisions, self.reader.mirror.by_engine_key, self.engine.identities, False)

    def stats(self) -> dict[str, Any]:
        return {
            "hub": self.name,
            "region": self.region.name,
            "active": self.leader,
            "position": self.position,
            "published_upto": self.published_upto,
            "checkpointed": self.checkpointed,
            "identities": len(self.engine.identities),
            "read_span": [round(t, 3) for t in self.read_span],
            **self.counters,
        }
