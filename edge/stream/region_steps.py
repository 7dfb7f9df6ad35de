"""A region's steps: the summaries stream's messages in, decision messages out. No I/O.

What every hub of a region computes the same from the same stream (:class:`RegionSteps`): one
engine step per node message, exactly as a tracklet log is replayed
(:class:`~edge.site.tracklet_log.StepReader`), or, in lockstep, one per step of all the listed
nodes together (``edge/stream/lockstep.py``); a node session's ``bye`` ends its tracklets; a
person handed over by a neighbouring region is welcomed into the engine, and one who leaves through
a boundary camera is handed on (``edge/stream/handover.py``); a session the active hub said went
silent ends its live tracklets (``edge/stream/silent_nodes.py``). Its whole state is what a checkpoint
keeps (``edge/stream/checkpoint.py``). The lease, publishing and the stream are the hub's
(``edge/stream/region_hub.py``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from edge.identity import Decision, Identity, IdentityEngine
from edge.identity.records import Key, TrackletSummary
from edge.identity.settings import EngineSettings
from edge.site.gallery import Gallery, faiss_build
from edge.site.nearest import follow_engine, index_identities, nearest_candidates, resync
from edge.site.tracklet_log import StepReader
from edge.stream.checkpoint import HubState, fingerprint, numpy_build
from edge.stream.handover import Outgoing, handover_message, read_handover
from edge.stream.lockstep import Held, Lockstep
from edge.stream.names import GONE_HEADER, HANDOVER_HEADER, NODE_HEADER, SESSION_HEADER, Region
from edge.wire.site_protocol import ProtocolError

log = logging.getLogger("edge.stream")


@dataclass
class _Made:
    """What one message of the stream let a hub decide: its decision message's content."""

    decisions: list[Decision] = field(default_factory=list)
    final: list[tuple[Key, int]] = field(default_factory=list)
    ids: list[tuple[Key, int]] = field(default_factory=list)
    gone: list[tuple[str, str]] = field(default_factory=list)

    def add(self, decisions: list[Decision], final: list[tuple[Key, int]], ids: list[tuple[Key, int]]) -> None:
        self.decisions += decisions
        self.final += final
        self.ids += ids


@dataclass(frozen=True)
class Decided:
    """A decision message to publish, and the hand-overs to publish before it."""

    body: bytes
    outgoing: list[Outgoing]


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
    gone: Optional[list[tuple[str, str]]] = None,
    part: int = 0,
) -> bytes:
    """One step's decisions as the decision stream carries them (JSON): each names the engine key
    and, through ``origin``, the node, its session and the node's own local id (what a subscriber
    or the node itself maps the site id onto). ``ids``: every tracklet whose site id this step
    changed (a merge moves tracklets no decision names), ``final``: those that will not change again;
    with ``identities``, each decision says its identity's cameras and when it was last seen;
    ``gone``: the (node, session) said gone at this step (its node starts a new session on reading it);
    ``part``: in lockstep, this message's place among those of one stream position (0: the first)."""

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
    if gone:  # only then: every other message's bytes stay as they were
        body["gone"] = [{"node": n, "session": s} for n, s in gone]
    if part:  # as gone
        body["part"] = part
    return json.dumps(body, separators=(",", ":")).encode()


class RegionSteps:
    """See the module docstring."""

    def __init__(
        self,
        region: Region,
        settings: EngineSettings,
        embedding_dim: Optional[int] = None,
        gallery: Optional[GallerySettings] = None,
        hand_over: Optional[Mapping[str, str]] = None,
        id_base: int = 0,
        model_id: str = "",
        lockstep: Sequence[str] = (),
    ):
        """``embedding_dim``: its model's (a node with another model is refused); ``gallery``: past
        identities searched with FAISS (as ``edge.hub`` does: ``edge/site/nearest.py``) rather than
        each scored (needs ``embedding_dim``); ``hand_over``: boundary camera -> the region a person
        leaving through it is handed to; ``id_base``: this region's ids start above it (regions
        that hand over need ranges apart); ``model_id``: the ReID model's (with the rest, what a
        checkpoint's ``fingerprint`` says it was made with); ``lockstep``: the region's nodes whose
        steps are decided together (the hub YAML's ``lockstep``: ``edge/stream/lockstep.py``; others
        are refused), none: each message as it comes."""
        self.region = region
        self.lockstep = Lockstep(lockstep) if lockstep else None
        self.gallery: Optional[Gallery] = None
        self.search = gallery
        if gallery is not None and embedding_dim is not None:
            self.gallery = Gallery(embedding_dim, gallery.approximate_above)
        self.engine = IdentityEngine(settings, candidates=self._candidates if self.gallery is not None else None)
        if id_base:
            self.engine.restore([], id_base + 1)
        self.hand_over = dict(hand_over or {})
        self.outgoing: list[Outgoing] = []  # the hand-overs of the step just decided
        self.reader = StepReader(embedding_dim)
        self.position = 0  # the last stream position read (in lockstep, some may be held)
        self.told: dict[Key, int] = {}  # the site id the decision stream last gave each tracklet not final
        self.now = -float("inf")  # the region's scene clock: the latest time any message carried
        self.counters = dict.fromkeys(
            ("steps", "malformed", "failed_steps", "handed_over", "handed_in", "handovers_refused"), 0
        )
        self._refused: set[tuple[str, str]] = set()  # sessions a skipped message was said for
        self.read_span: list[float] = []  # wall clock of the first and the last message read (throughput)
        self.cpu_span: list[float] = []  # and the process's CPU time then (its cost, whatever the cores)
        self._made = _Made()
        self._decided: list[Decided] = []  # the decision messages of the stream message being taken
        self._emitted_outgoing = 0  # how many of its hand-overs went with them
        build: tuple[Any, ...] = (faiss_build(),) if self.gallery is not None else ()
        build += (("lockstep", self.lockstep.nodes),) if self.lockstep else ()  # (none: the fingerprint of before)
        self.fingerprint = fingerprint(
            settings, embedding_dim, gallery, sorted(self.hand_over.items()), id_base, model_id, numpy_build(), *build
        )

    # --- one message of the stream ----------------------------------------------------------------
    def take(self, position: int, parts: list[bytes], headers: Mapping[str, str]) -> list[Decided]:
        """One message of the region's stream (a node's, the active hub's ``gone``, or a hand-over
        from a neighbouring region: :meth:`welcome`): the decision messages of what it let this hub
        decide, in order. Free running that is one engine step per node message, so at most one
        message; in lockstep, one per step of all the listed nodes it let this hub decide
        (``edge/stream/lockstep.py``), each a part of this position."""
        return [d for d in self.take_stepwise(position, parts, headers) if d is not None]

    def take_stepwise(
        self, position: int, parts: list[bytes], headers: Mapping[str, str]
    ) -> Iterator[Optional[Decided]]:
        """:meth:`take`, an engine step at a time: after each, its decision message or None. A hub
        runs the rest of its loop between them (its lease), as a ``bye`` of the node a lockstep
        region waited for may let it decide thousands of held steps. Run it to its end before
        the next message."""
        self.position = position
        self.outgoing, self._decided, self._made, self._emitted_outgoing = [], [], _Made(), 0
        if HANDOVER_HEADER in headers:
            self.welcome(position, parts)
            return
        node, session, gone = headers.get(NODE_HEADER, "?"), headers.get(SESSION_HEADER, "?"), GONE_HEADER in headers
        if not gone:
            for span, clock in ((self.read_span, time.time), (self.cpu_span, time.process_time)):
                span[1:] = [clock()]
                if len(span) == 1:
                    span.insert(0, span[0])
        if self.lockstep is None:
            self._one(node, Held(position, parts, session, gone))
        elif self.lockstep.lists(node):
            self.lockstep.hold(node, Held(position, parts, session, gone))
            yield from self._turns()
        else:
            self._refuse(node, session, f"node {node} is not one of region {self.region.name}'s lockstep nodes")
        yield self._emit()

    def decide(self, position: int, parts: list[bytes], node: str, session: str) -> Optional[bytes]:
        """Free running: the decision message of ``node``'s message at ``position`` (:meth:`take`
        with its headers), None when it decided nothing."""
        if self.lockstep is not None:
            raise ValueError("a lockstep region's message may decide several steps: use take()")
        decided = self.take(position, parts, {NODE_HEADER: node, SESSION_HEADER: session})
        return decided[0].body if decided else None

    def _one(self, node: str, held: Held) -> None:
        """A node message on its own: an engine step of its summaries, its session's end (``bye``,
        ``gone``), or a ``hello``."""
        if held.gone:
            self._gone(node, held.session)
            return
        step = self._read(held, node)
        if step is not None:
            self._step(*step, f"message {held.position} of node {node}")

    def _turns(self) -> Iterator[Optional[Decided]]:
        """In lockstep: every message the listed nodes' queues let this hub read now, each step of
        all of them together as one engine step at the latest of their scene times, and each its
        own decision message (None after what decided nothing)."""
        assert self.lockstep is not None
        for turn in self.lockstep.turns(self._live, self._would_step):
            if isinstance(turn, tuple):
                self._one(*turn)
            else:
                now, summaries = -float("inf"), list[TrackletSummary]()
                for node, held in turn:
                    step = self._read(held, node)
                    if step is not None:
                        now, summaries = max(now, step[0]), summaries + step[1]
                if now > -float("inf"):
                    self._step(now, summaries, f"message {self.position} (a step of {', '.join(n for n, _ in turn)})")
            yield self._emit()

    def _live(self, node: str) -> bool:
        """In lockstep, the others wait for this node: its latest session goes on, or it was never
        heard (a node whose every session was refused, or said absent, is not waited for)."""
        session = self.reader.sessions.get(node)
        if session is None:
            return self.lockstep is None or not self.lockstep.excused(node)
        return not self.reader.ended(node, session)

    def _would_step(self, node: str, held: Held) -> bool:
        """A held ``summaries`` message its node's session would make a step of (a duplicate, one
        of a refused or ended session, or one saying ``more``, is read on its own and takes no
        step's turn)."""
        return self.reader.would_step(held.parts, node, held.session)

    def _read(self, held: Held, node: str) -> Optional[tuple[float, list[TrackletSummary]]]:
        """A node message read: ``(scene time, summaries)`` of a step; a ``bye`` ends its session
        here; None for what is no step (counted and said once per session when it is malformed)."""
        try:
            step = self.reader.read(held.parts, node, held.session)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            if self.lockstep is not None and node not in self.reader.sessions:
                self.lockstep.refused.add(node)
            self._refuse(node, held.session, f"message {held.position} of node {node} skipped: {exc}")
            return None
        if step is None:
            self._session_ends(self.reader.take_byes())
        return step

    def _refuse(self, node: str, session: str, why: str) -> None:
        self.counters["malformed"] += 1
        said = (node, session) in self._refused
        self._refused.add((node, session))
        (log.debug if said else log.warning)("stream: %s", why)

    def _step(self, now: float, summaries: list[TrackletSummary], what: str) -> None:
        """One engine step: its decisions, finals, changed ids and hand-overs to publish."""
        self.now = max(self.now, now)  # a node replaying its buffer after an outage sends older times
        self.counters["steps"] += 1
        decisions = self._engine_step(summaries, what)
        if decisions is None:
            return
        final: list[tuple[Key, int]] = self.engine.take_final()
        if self.gallery is not None:
            follow_engine(self.gallery, self.engine, decisions, final)
        self._made.add(decisions, final, self._changed_ids())
        self.outgoing += self._hand_overs(self._step_id(), summaries)

    def _gone(self, node: str, session: str) -> None:
        """The active hub said this node session went silent (``edge/stream/silent_nodes.py``): its
        live tracklets end in an engine step now, and all of its tracklets are final. The decision
        message says the session is gone, for its node, which may only have been cut off: it starts
        a new session (``edge/stream/site_ids.py``)."""
        if not session and self.lockstep is not None:
            self._absent(node)
            return
        ended = self.reader.end_session(node, session)
        if ended is None:  # unknown, or ended already
            return
        log.warning("stream: node %s's session %s went silent: its %d live tracklets end", node, session, len(ended))
        self._made.gone.append((node, session))  # its node must hear it, whatever else this step does
        what = f"message {self.position}, ending node {node}'s tracklets"
        decisions = self._engine_step(ended, what) if ended else []
        if decisions is None:
            return
        if self.gallery is not None:
            follow_engine(self.gallery, self.engine, decisions, [])
        self._made.add(decisions, [], [])
        self._session_ends([(node, session)], gone=True)

    def _absent(self, node: str) -> None:
        """In lockstep, the active hub said this listed node absent (never heard while the others'
        steps were held: ``RegionHub._watch_absent``, ``_say_gone``): the others go on without it
        until its hello is read. Said for a node whose hello was read meanwhile, or again, it
        changes nothing."""
        assert self.lockstep is not None
        if node in self.reader.sessions or node in self.lockstep.absent:
            return
        self.lockstep.absent.add(node)
        log.warning("stream: region %s goes on without node %s (lockstep): never heard, said absent",
                    self.region.name, node)  # fmt: skip

    def never_heard(self, node: str) -> bool:
        """In lockstep: a listed node the region waits for though no session of it was ever read
        or held (not refused, not said absent): one the active hub may say absent."""
        lockstep = self.lockstep
        if lockstep is None or not lockstep.lists(node) or lockstep.queues[node] or node in self.reader.sessions:
            return False
        return not lockstep.excused(node)

    def _engine_step(self, summaries: list[TrackletSummary], what: str) -> Optional[list[Decision]]:
        """The engine's step on ``summaries``, None when it raised: counted and logged, and the
        gallery made to hold the engine's identities again. Every hub fails at this very message,
        so dying would stop the region for good: it goes on."""
        try:
            return self.engine.update(summaries, self.now)
        except Exception:  # noqa: BLE001 - see the docstring
            self.counters["failed_steps"] += 1
            log.exception("stream: the engine failed at %s: its decisions are lost", what)
        if self.gallery is not None:
            try:
                resync(self.gallery, self.engine)
            except Exception:  # noqa: BLE001 - as above: the region must go on
                log.exception("stream: the gallery could not be made the engine's again at %s", what)
        return None

    def _session_ends(self, ending: list[tuple[str, str]], gone: bool = False) -> None:
        """After a node message that made no step: the sessions that said bye (or, ``gone``, the
        one said gone) have their ended tracklets made final, and any site id the engine changed
        since the last message (a step that failed midway) is told."""
        keys = [k for k, (node, session, _) in self.reader.origin.items() if (node, session) in ending]
        self.engine.finalise(keys)
        final = self.engine.take_final()
        ids = self._changed_ids()
        if not (final or ids or gone):
            return
        if self.gallery is not None:
            follow_engine(self.gallery, self.engine, [], final)
        self._made.add([], final, ids)

    def _step_id(self) -> str:
        """This decision message's place: its stream position, and its part after the first (lockstep)."""
        part = len(self._decided)
        return f"{self.position}" if not part else f"{self.position}.{part}"

    def _emit(self) -> Optional[Decided]:
        """The decision message of what was decided since the last one, None when nothing was; the
        final tracklets forgotten (nothing more is decided about them)."""
        made, outgoing, decided = self._made, self.outgoing[self._emitted_outgoing :], None
        if made.decisions or made.final or made.ids or outgoing or made.gone:
            origin = self.reader.origin
            body = decision_message(
                self.region, self.position, self.now, made.decisions, made.final, origin, made.ids,
                self.engine.identities, outgoing, made.gone, len(self._decided),
            )  # fmt: skip
            for key, _ in made.final:
                origin.pop(key, None)
                self.told.pop(key, None)
            decided = Decided(body, outgoing)
            self._decided.append(decided)
        self._made, self._emitted_outgoing = _Made(), len(self.outgoing)
        return decided

    def _hand_overs(self, step: str, summaries: list[TrackletSummary]) -> list[Outgoing]:
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
            out.append(Outgoing(region, f"{self.region.name}-handover-{step}-{gid}-{region}", parts))
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
        return HubState(self.position, self.now, self.engine, self.reader, self.gallery, self.told, self.lockstep)

    def load(self, state: HubState) -> None:
        """Continue from ``state`` (read the stream from ``state.position + 1``)."""
        self.position, self.now, self.engine, self.reader = state.position, state.now, state.engine, state.reader
        self.gallery, self.told = state.gallery, state.told
        if self.lockstep is not None and getattr(state, "lockstep", None) is not None:  # the same nodes (fingerprint)
            self.lockstep = state.lockstep
        self.engine.candidates = self._candidates if self.gallery is not None else None

    def heard_of(self, node: str, session: str) -> bool:
        """A node session this hub has read the hello of, or one of a lockstep node whose hello may
        still be held (not refused): the active hub watches whether it goes silent."""
        if (node, session) in self.reader.dims:
            return True
        return self.lockstep is not None and self.lockstep.lists(node) and (node, session) not in self._refused

    def session_over(self, node: str, session: str) -> bool:
        """The session was read and has ended (``bye``, said gone, its node's next session)."""
        return (node, session) in self.reader.dims and self.reader.ended(node, session)

    def live_sessions(self) -> set[tuple[str, str]]:
        """The sessions not over (a hub that starts from a checkpoint watches them): read, or held in
        lockstep queues, without a ``bye`` or ``gone`` held."""
        queues = self.lockstep.queues if self.lockstep else {}
        held = {(n, h.session) for n, q in queues.items() for h in q}
        said_bye = {(n, h.session) for n, q in queues.items() for h in q if h.gone or h.parts[1:2] == [b"bye"]}
        return {key for key in {*self.reader.dims, *held} - said_bye if not self.session_over(*key)}

    def lockstep_stats(self) -> dict[str, Any]:
        """In lockstep: the messages held, the nodes the region waits for and those said absent and
        not heard since (none free running)."""
        if self.lockstep is None:
            return {}
        absent = sorted(n for n in self.lockstep.absent if n not in self.reader.sessions)
        return {"held": self.lockstep.held, "waiting_for": self.lockstep.waiting_for(self._live), "absent": absent}

    def _candidates(self, waiting: list[TrackletSummary]) -> Optional[list[Iterable[int]]]:
        assert self.gallery is not None and self.search is not None
        return nearest_candidates(self.engine, self.gallery, waiting, self.search.exact_below, self.search.k)
