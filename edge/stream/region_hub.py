"""A region's hub on its stream: the unchanged identity engine, one active hub, hot standbys.

Every hub of a region reads the region's summaries stream (from its start, or from the last
checkpoint), in the stream's one order (an ordered consumer), one engine step per message
(:class:`~edge.stream.region_steps.RegionSteps`, where the steps are). The engine is deterministic, so every hub makes
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
import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from nats.js.errors import NotFoundError

from edge.identity import Decision, IdentityEngine
from edge.identity.settings import EngineSettings
from edge.site.clock_watch import ClockWatch
from edge.site.fanout import publish_decisions
from edge.site.steps import WaitingSaid
from edge.stream.checkpoint import checkpoint_store, dump, read_checkpoint
from edge.stream.frames import pack, unpack
from edge.stream.handover import Outgoing
from edge.stream.names import (
    GONE_HEADER,
    HANDOVER_HEADER,
    HUB_HEADER,
    LEASE_BUCKET,
    LEASE_S,
    LIVE_HEADER,
    MSG_ID_HEADER,
    NODE_HEADER,
    PART_HEADER,
    SESSION_HEADER,
    STEP_HEADER,
    Region,
    lease_holder,
    lease_value,
)
from edge.stream.ordered_reader import OrderedReader
from edge.stream.region_steps import Decided, GallerySettings, RegionSteps
from edge.stream.silent_nodes import NODE_TIMEOUT_S, SilentNodes
from edge.stream.streams import connect, ensure_streams, lease_bucket, retry
from edge.wire.publisher import EventPublisher

log = logging.getLogger("edge.stream")

STATS_EVERY_S = 5.0
PUBLISH_TIMEOUT_S = 0.5  # well inside a lease renewal (a third of LEASE_S): a slow publish does not let it lapse
KEEP_STEPS = 100_000  # decided steps a standby keeps to publish should it take over
TRIM_EVERY_S = 2.0  # how often a standby drops the steps its active hub has published from those it keeps


class HubRefused(RuntimeError):
    """This hub must not run beside the region's active one (said in the message)."""


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
        node_timeout_s: float = NODE_TIMEOUT_S,
        lockstep: Sequence[str] = (),
    ):
        """``events``: the ZeroMQ publisher subscribers (the view, ``edge.listen``) read the active
        hub's identity events on, as from ``edge.hub``; ``checkpoint_every_s``: how often the
        active hub writes its state to the checkpoint store (``edge/stream/checkpoint.py``), what a
        hub that starts continues from (0: never; a hub then reads the region from its start);
        ``embedding_dim``, ``gallery``, ``hand_over``, ``id_base``, ``model_id``, ``lockstep``: its
        steps' (:class:`~edge.stream.region_steps.RegionSteps`); ``node_timeout_s``: a node session
        silent this long without bye is said gone by the active hub (0: never;
        ``edge/stream/silent_nodes.py``)."""
        self.servers, self.region, self.name = servers, region, name
        self.events = events
        self.lease_s, self.replicas = lease_s, replicas
        self.steps = RegionSteps(region, settings, embedding_dim, gallery, hand_over, id_base, model_id, lockstep)
        self.leader = False
        self.published_upto = 0  # the last step the region's decision stream has (as far as this hub knows)
        self.published_part = 0  # and its part (lockstep: several decision messages at one position)
        # decided steps not known published, each with its hand-overs
        self.recent: deque[tuple[int, int, Decided]] = deque(maxlen=KEEP_STEPS)  # (step, part, message)
        self.counters = dict.fromkeys(
            ("published", "takeovers", "lost_lease", "checkpoints", "said_gone", "said_absent", "never_published"), 0
        )
        self.silent = SilentNodes(node_timeout_s)
        self.clock = ClockWatch(f"region {region.name}")  # a live node's clock far ahead: said
        self._trimmed_at = 0.0
        self._dropped: tuple[int, int] = (0, 0)  # the last (step, part) `recent` dropped when full
        self._revision = 0
        self._renewed = 0.0
        self._next_try = 0.0
        self._lease_value = lease_value(name, self.steps.fingerprint)
        self._checked_holder: Optional[bytes] = None  # the last lease value (holder, settings) compared
        self.checkpoint_every_s = checkpoint_every_s
        self.checkpointed = 0  # the position of the last checkpoint written or loaded
        self._checkpoint_at = time.monotonic()
        self._saving: Optional[asyncio.Task] = None
        self._dumping = False
        self._stream_made = ""  # when the region's summaries stream was made (a checkpoint names it)
        self._waiting = WaitingSaid(
            log,
            f"stream: region {region.name}",
            "a node cut off, or not started: silent or never heard for --node-timeout-s, it is said gone or absent",
        )

    @property
    def engine(self) -> IdentityEngine:
        return self.steps.engine

    @property
    def position(self) -> int:
        return self.steps.position

    # --- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> dict[str, Any]:
        asyncio.run(self._run(stop))
        return self.stats()

    async def _run(self, stop: threading.Event) -> None:
        nc = await connect(self.servers, f"hub {self.name}")
        js = nc.jetstream()
        kv, store = await retry(lambda: self._setup(js))
        start = await self._resume(js, store)
        live = sorted(self.steps.live_sessions())
        self.silent.seed(live, time.time(), self.position)  # a checkpoint's sessions: heard as of now
        reader = OrderedReader(js, self.region.summaries_stream, self.region.summaries_subject(), after=start - 1,
                               what=f"region {self.region.name}'s summaries")  # fmt: skip
        await retry(reader.subscribe)
        lockstep = self.steps.lockstep
        log.info(
            "stream: hub %s reads region %s from position %d (%s)%s",
            self.name, self.region.name, start, ",".join(self.servers),
            f", in lockstep: a step of {', '.join(lockstep.nodes)} together" if lockstep else "",
        )  # fmt: skip
        stats_at = time.monotonic()
        while not stop.is_set():
            await self._lease(js, kv)
            self._maybe_checkpoint(store)
            if self._dumping:  # the state is being pickled: decide nothing until it is (the lease is kept)
                await asyncio.sleep(0.02)
                continue
            if not self.leader and time.monotonic() - self._trimmed_at >= TRIM_EVERY_S:
                self._trimmed_at = time.monotonic()
                await self._trim_recent(js)
            if time.monotonic() - stats_at >= STATS_EVERY_S:
                stats_at = time.monotonic()
                log.info("stream: hub %s: %s", self.name, json.dumps(self.stats()))
                self._say_waiting()
            msg = await reader.next(timeout=0.05)
            if msg is None:
                if self.leader and self.recent:  # a publish that failed: try again while the stream is quiet
                    await self._publish_recent(js)
                if self.leader:
                    self._watch_absent(time.time(), self.position)  # (a checkpoint's held steps: watched from now)
                    await self._say_gone(js)
                continue
            await self._take(js, kv, msg)
        if self.leader:  # hand over at once rather than after the lease runs out (only a lease still ours)
            await self._last_checkpoint(store)
            try:
                await kv.delete(self.region.name, last=self._revision)
            except Exception:  # noqa: BLE001 - the key expires by itself
                pass
        await reader.close()
        try:
            await nc.close()
        except Exception:  # noqa: BLE001 - the servers gone meanwhile: nothing left to say to them
            pass
        if self.events is not None:
            self.events.close()

    async def _take(self, js: Any, kv: Any, msg: Any) -> None:
        """One message of the summaries stream: what it lets this hub decide (published at once by
        the active hub), and the silence watch of its node's sessions."""
        try:
            parts = unpack(msg.data or b"")
        except ValueError:
            parts = []
        headers = msg.headers or {}
        part, sessions = 0, dict(self.steps.reader.sessions)
        for decided in self.steps.take_stepwise(msg.metadata.sequence.stream, parts, headers):
            if decided is not None:
                if len(self.recent) == self.recent.maxlen:
                    self._dropped = self.recent[0][:2]
                self.recent.append((self.position, part, decided))
                part += 1
                if self.leader:
                    await self._publish_recent(js)
            if self.steps.lockstep is not None:  # a release of many held steps: the lease kept meanwhile
                await self._lease(js, kv)
                await asyncio.sleep(0)
        self._note_node(msg, headers, parts)
        for node, session in self.steps.reader.sessions.items():  # a hello read now (in lockstep, maybe held)
            if sessions.get(node) != session:
                self.silent.ended_others(node, session)
        at = msg.metadata.timestamp
        self._watch_absent(at.timestamp() if at is not None else time.time(), msg.metadata.sequence.stream)

    def _watch_absent(self, at: float, position: int) -> None:
        """In lockstep: the listed nodes never heard that held steps wait for go on the silence
        watch from ``at`` (``_say_gone`` says them absent when due); the others come off it."""
        if self.steps.lockstep is None:
            return
        held = self.steps.lockstep_stats()
        waiting = held["waiting_for"] if held["held"] else []
        for node in self.steps.lockstep.nodes:
            if node in waiting and self.steps.never_heard(node):
                self.silent.awaited(node, at, position)
            else:
                self.silent.ended(node, "")

    async def _setup(self, js: Any) -> tuple[Any, Any]:
        for name in sorted({self.region.name, *self.steps.hand_over.values()}):  # a neighbour's, to hand over into
            await ensure_streams(js, Region(name), self.replicas)
        kv, ttl = await lease_bucket(js, self.lease_s, self.replicas)
        if abs(ttl - self.lease_s) > 1e-3:  # else renewed at a third of a lease the bucket does not keep
            log.warning(
                "stream: the site's lease bucket keeps a lease %g s (made so by the first hub): hub %s renews "
                "within that, not --lease-s %g (start every hub with one value, or delete bucket %s first)",
                ttl, self.name, self.lease_s, LEASE_BUCKET,
            )  # fmt: skip
            self.lease_s = ttl
        return kv, await checkpoint_store(js, self.replicas)

    # --- checkpoints --------------------------------------------------------------------------
    async def _resume(self, js: Any, store: Any) -> int:
        """Load the region's checkpoint when there is one this hub may use: the position to read from."""
        if self.checkpoint_every_s <= 0:
            return 1
        info = await retry(lambda: js.stream_info(self.region.summaries_stream))
        self._stream_made = str(info.created or "")
        state = await read_checkpoint(store, self.region, self.steps.fingerprint, self._stream_made)
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
        self.steps.load(state)
        self.checkpointed = state.position
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
            steps = self.steps
            blob = await asyncio.to_thread(dump, self.region, steps.state(), steps.fingerprint, self._stream_made)
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

    # --- the lease ----------------------------------------------------------------------------
    async def _lease(self, js: Any, kv: Any) -> None:
        now = time.monotonic()
        if self.leader:
            if now - self._renewed < self.lease_s / 3:
                return
            try:
                self._revision = await kv.update(self.region.name, self._lease_value, last=self._revision)
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
            self._revision = await kv.create(self.region.name, self._lease_value)
        except Exception:  # noqa: BLE001 - another hub holds it (or the servers are away)
            await self._check_holder(kv)
            return
        try:
            published = await self._last_published(js)
        except Exception as exc:  # noqa: BLE001 - not knowing what was published, publishing could repeat it
            log.warning("stream: hub %s could not read the last published step (%s): lease given back", self.name, exc)
            try:
                await kv.delete(self.region.name, last=self._revision)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
            return
        self.leader, self._renewed = True, now
        self.counters["takeovers"] += 1
        self.published_upto, self.published_part = published
        log.info(
            "stream: hub %s is region %s's active hub at position %d (decisions published up to %d)",
            self.name, self.region.name, self.position, self.published_upto,
        )  # fmt: skip
        if self._dropped > published:
            self.counters["never_published"] += 1
            log.warning(
                "stream: hub %s takes over region %s %d+ steps behind its decisions: those after step %d up to "
                "step %d were never published and are no longer kept (the decision stream misses them)",
                self.name, self.region.name, KEEP_STEPS, published[0], self._dropped[0],
            )  # fmt: skip
        await self._publish_recent(js)

    async def _check_holder(self, kv: Any) -> None:
        """A standby whose settings are not the active hub's would decide otherwise once it took
        over (the nodes' ids would change under them): it stops here, saying why. Each lease value
        is checked once; this hub's own name in the lease (a lease left by this hub's previous
        run, not yet expired) is not another hub."""
        try:
            value = (await kv.get(self.region.name)).value
        except Exception:  # noqa: BLE001 - gone meanwhile, or the servers away: the next try
            return
        holder, theirs = lease_holder(value)
        if holder is None or holder == self.name or value == self._checked_holder:
            return
        self._checked_holder = value
        if theirs and theirs != self.steps.fingerprint:
            raise HubRefused(
                f"region {self.region.name}'s active hub {holder} decides with other settings (the hub YAML's "
                f"matching, gallery or lockstep, the model, --hand-over or --id-base): hub {self.name} would decide "
                "otherwise after a takeover; start it with the same ones"
            )

    def _note_node(self, msg: Any, headers: Mapping[str, str], parts: list[bytes]) -> None:
        """When each node session was last heard (the server's clock), until it ended: said bye (in
        lockstep, as the bye comes, though it may be held) or was said gone. A node's next session
        ends its others when its hello is read (the loop)."""
        node, session = headers.get(NODE_HEADER), headers.get(SESSION_HEADER)
        if node is None or session is None or not self.steps.heard_of(node, session):
            return  # a hand-over, or a session refused
        said_bye = len(parts) > 1 and parts[1] == b"bye" and GONE_HEADER not in headers  # maybe held (lockstep)
        if said_bye or self.steps.session_over(node, session):
            self.silent.ended(node, session)
        elif GONE_HEADER not in headers:
            at = msg.metadata.timestamp
            self.silent.heard(node, session, at, msg.metadata.sequence.stream)
            if headers.get(LIVE_HEADER) == "1" and at is not None and parts[1:2] == [b"summaries"]:
                self._check_clock(node, session, parts, at.timestamp())

    def _check_clock(self, node: str, session: str, parts: list[bytes], arrived: float) -> None:
        """A live node's scene time against the servers' timestamp (a replayable node's runs as
        fast as it computes, and says no ``Clipreid-Live``): one far ahead moves the region's clock
        (:class:`ClockWatch`)."""
        try:
            scene_time = float(json.loads(parts[2])["now"])
        except (ValueError, KeyError, TypeError, IndexError, RecursionError):
            return  # malformed: the steps count it
        if not math.isfinite(scene_time):
            return
        self.clock.check(node, session, scene_time, arrived)

    def _say_waiting(self) -> None:
        """In lockstep, once per change: the listed nodes the region waits for while others' steps are held."""
        held = self.steps.lockstep_stats()
        self._waiting.say(held.get("waiting_for", []) if held.get("held") else [], held.get("held", 0))

    async def _say_gone(self, js: Any) -> None:
        """The sessions silent past the timeout, said gone in the region's stream (each hub ends
        their tracklets when it reads that; a second hub's saying it is stored once). Only once this
        hub has read the whole stream: a session's later messages may be still unread."""
        due = self.silent.due(time.time())
        if not due:
            return
        try:
            last = (await js.stream_info(self.region.summaries_stream)).state.last_seq
        except Exception:  # noqa: BLE001 - the servers away: the next quiet moment
            return
        if last > self.position:
            return
        for node, session, position in due:
            if not session:  # lockstep: a listed node never heard, waited for (``_watch_absent``)
                over = not self.steps.never_heard(node)
            else:
                over = self.steps.session_over(node, session) or not self.steps.heard_of(node, session)  # (refused)
            if over:
                self.silent.ended(node, session)
                continue
            headers = {
                MSG_ID_HEADER: f"{node}-{session}-gone-{position}",
                NODE_HEADER: node,
                SESSION_HEADER: session,
                GONE_HEADER: self.name,
            }
            try:
                await js.publish(self.region.summaries_subject(node), b"", timeout=PUBLISH_TIMEOUT_S, headers=headers)
            except Exception as exc:  # noqa: BLE001 - the servers away: said at the next quiet moment
                log.warning("stream: hub %s could not say node %s gone (%s)", self.name, node, exc)
                return
            if session:
                log.warning(
                    "stream: node %s (session %s) silent for over %g s without bye: hub %s ends its tracklets",
                    node, session, self.silent.timeout_s, self.name,
                )  # fmt: skip
            else:
                log.warning(
                    "stream: node %s never heard while the others' steps waited for it over %g s: hub %s says "
                    "it absent (lockstep: region %s goes on without it until its hello)",
                    node, self.silent.timeout_s, self.name, self.region.name,
                )  # fmt: skip
            self.silent.ended(node, session)
            self.counters["said_gone" if session else "said_absent"] += 1

    async def _last_published(self, js: Any) -> tuple[int, int]:
        """The (step, part) of the decision stream's last message; (0, 0) when it has none."""
        try:
            last = await js.get_last_msg(self.region.decisions_stream, self.region.decisions_subject)
        except NotFoundError:
            return 0, 0
        headers = last.headers or {}
        return int(headers.get(STEP_HEADER, 0)), int(headers.get(PART_HEADER, 0))

    async def _trim_recent(self, js: Any) -> None:
        """A standby: forget the decided steps the active hub has published (it keeps the rest to
        publish should it take over), so that it keeps any at all after a long run (``KEEP_STEPS``)."""
        if not self.recent:
            return
        try:  # (not the client's 5 s default: a standby keeps trying for the lease meanwhile)
            published = await asyncio.wait_for(self._last_published(js), PUBLISH_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the servers away or slow: the next try
            return
        while self.recent and self.recent[0][:2] <= published:
            self.recent.popleft()

    async def _publish_recent(self, js: Any) -> None:
        """Publish the decided steps after the last published one, in order (a failure leaves them for the next try)."""
        while self.recent and self.leader:
            step, part, decided = self.recent[0]
            if (step, part) > (self.published_upto, self.published_part):
                if not await self._publish_hand_overs(js, decided.outgoing):
                    return
                msg_id = f"{self.region.name}-{step}" + (f"-{part}" if part else "")
                headers = {MSG_ID_HEADER: msg_id, STEP_HEADER: str(step), HUB_HEADER: self.name}
                if part:  # only then: a free-running region's messages are as they were
                    headers[PART_HEADER] = str(part)
                try:
                    ack = await js.publish(
                        self.region.decisions_subject, decided.body, timeout=PUBLISH_TIMEOUT_S, headers=headers
                    )
                except Exception as exc:  # noqa: BLE001 - the servers are away: the step waits
                    log.warning("stream: hub %s could not publish step %s (%s)", self.name, msg_id, exc)
                    return
                self.published_upto, self.published_part = step, part
                self.counters["published"] += 1
                if self.events is not None and not ack.duplicate:  # another hub told the subscribers
                    self._tell_subscribers(decided.body)
            self.recent.popleft()

    async def _publish_hand_overs(self, js: Any, outgoing: list[Outgoing]) -> bool:
        """A step's hand-overs into their regions' streams, before its decision message (False: try again)."""
        for o in outgoing:
            headers = {MSG_ID_HEADER: o.msg_id, HANDOVER_HEADER: self.region.name}
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
        by_key = self.steps.reader.mirror.by_engine_key
        publish_decisions(self.events, decisions, by_key, self.engine.identities, False)

    def stats(self) -> dict[str, Any]:
        return {
            "hub": self.name,
            "region": self.region.name,
            "active": self.leader,
            "position": self.position,
            "published_upto": self.published_upto,
            "checkpointed": self.checkpointed,
            "identities": len(self.engine.identities),
            "read_span": [round(t, 3) for t in self.steps.read_span],
            "cpu_span": [round(t, 3) for t in self.steps.cpu_span],
            **self.steps.counters,
            **self.counters,
            **self.steps.lockstep_stats(),
            "clock_ahead": dict(self.clock.ahead),
        }
