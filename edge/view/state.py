"""What the operator's view knows: identities, their recent sightings, cameras and stats, bounded.

:class:`ViewState` is fed raw multipart messages (:meth:`ViewState.ingest`) by a live subscriber
or a replay, decodes them with the schema's decoder (:func:`edge.wire.events.decode`) and hands
each to the book it concerns: :class:`~edge.view.identities.IdentityBook` (identities, sightings,
crops) or :class:`~edge.view.cameras.CameraBook` (previews, the runtime's stats). The web server
reads it as a full state (:meth:`ViewState.full`) or as what changed since a version
(:meth:`ViewState.delta`). Every collection has a bound (:class:`~edge.view.config.Limits`), so
a day of events, or a flood of them, holds the same memory as a few minutes.

A message of another schema (or version) is dropped with a banner and one log line per kind; a
malformed one is dropped and counted. Times shown are the publisher's (scene times for
``first_seen`` / ``last_seen``, ``publish_ts`` for latency); ``clock`` is the view's own (wall
time live, the recorded time in a replay) and decides what is live and what is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from edge.view.cameras import CameraBook
from edge.view.config import Limits
from edge.view.identities import CropStore, IdentityBook
from edge.wire.events import READABLE_VERSIONS, SCHEMA, MalformedEvent, decode, problem

log = logging.getLogger(__name__)


class ViewState:
    """Bounded, thread-safe state of the view; ``clock`` is the view's notion of now (a replay
    sets its own)."""

    def __init__(self, limits: Optional[Limits] = None, clock: Callable[[], float] = time.time):
        self.limits = limits or Limits()
        self.clock = clock
        self._lock = threading.Lock()
        self.version = 0
        self.crops = CropStore(self.limits)
        self.identity_book = IdentityBook(self.limits, self.crops, self._now, self._stamp)
        self.camera_book = CameraBook(self.limits, self._now)
        self.counters = {"received": 0, "malformed": 0, "foreign": 0, "seq_gaps": 0, "publisher_restarts": 0}
        self.schema_problem: Optional[str] = None
        self._foreign_seen: set[tuple[str, str]] = set()
        self._last_seq: Optional[int] = None
        self.last_message_at: Optional[float] = None
        self.connection: dict[str, Any] = {"state": "connecting", "since": None, "endpoint": None}
        self.mode = "live"

    def _now(self) -> float:
        return self.clock()  # looked up on each call: a replay replaces the clock after the books exist

    def _stamp(self) -> int:
        """The version the change being ingested will carry (the state bumps to it when done)."""
        return self.version + 1

    # --- input ------------------------------------------------------------------------------
    def set_connection(self, state: str, endpoint: Optional[str] = None, since: Optional[float] = None) -> None:
        """``connected`` / ``disconnected`` / ``connecting`` / ``replay`` / ``replay finished``."""
        with self._lock:
            self.connection = {
                "state": state,
                "since": self.clock() if since is None else since,
                "endpoint": endpoint or self.connection.get("endpoint"),
            }
            self._bump()

    def ingest(self, parts: list[bytes]) -> bool:
        """One raw message; False when it was dropped (malformed or of another schema)."""
        with self._lock:
            self.counters["received"] += 1
            self.last_message_at = self.clock()
            try:
                event = decode(parts)
            except MalformedEvent as exc:
                return self._malformed(exc)
            if not event.supported:
                self._foreign(event.header)
                return False
            header = event.header
            try:
                self._sequence(header.get("seq"))
                family = event.family
                if family == "identity":
                    self.identity_book.identity(header, event.jpeg)
                elif family == "track":
                    self.identity_book.track(header)
                elif family == "frame":
                    self.camera_book.frame(header, event.jpeg)
                elif family == "stats":
                    self.camera_book.take_stats(header)
                elif family == "snapshot":
                    self.identity_book.snapshot(header)
                # other topics of a known schema: ignored (a newer minor addition)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                return self._malformed(exc)
            self._bump()
            return True

    def _malformed(self, exc: Exception) -> bool:
        self.counters["malformed"] += 1
        if self.counters["malformed"] == 1:
            log.warning("malformed message dropped (%s); further ones are only counted", problem(exc))
        self._bump()
        return False

    def _foreign(self, header: dict[str, Any]) -> None:
        self.counters["foreign"] += 1
        key = (str(header.get("schema")), str(header.get("version")))
        if key not in self._foreign_seen:
            self._foreign_seen.add(key)
            self.schema_problem = (
                f"the publisher sends {key[0]} version {key[1]}; this view reads {SCHEMA} "
                f"version {', '.join(map(str, READABLE_VERSIONS))}: those messages are dropped"
            )
            log.error("%s", self.schema_problem)
        self._bump()

    def _sequence(self, seq: Any) -> None:
        if not isinstance(seq, int):
            return
        if self._last_seq is not None:
            if seq > self._last_seq + 1:
                self.counters["seq_gaps"] += seq - self._last_seq - 1
            elif seq <= self._last_seq:
                self.counters["publisher_restarts"] += 1
        self._last_seq = seq

    def _bump(self) -> None:
        self.version += 1

    # --- output -----------------------------------------------------------------------------
    def _status(self, now: float) -> dict[str, Any]:
        silent_since = None
        if (
            self.connection["state"] == "connected"
            and self.last_message_at is not None
            and now - self.last_message_at > self.limits.stale_s
        ):
            silent_since = self.last_message_at
        return {
            "clock": now,
            "mode": self.mode,
            "connection": dict(self.connection),
            "silent_since": silent_since,
            "schema_problem": self.schema_problem,
            "counters": dict(self.counters),
            "stats": dict(self.camera_book.stats),
            "crops_held": len(self.crops),
            "crop_bytes": self.crops.bytes,
            "identities_held": len(self.identity_book.identities),
        }

    def full(self) -> dict[str, Any]:
        """Everything the page shows: every card, camera and the status."""
        with self._lock:
            now = self.clock()
            return {
                "version": self.version,
                "full": True,
                "identities": [i.card(self.limits.live_s) for i in self.identity_book.identities.values()],
                "cameras": self.camera_book.views(now),
                "status": self._status(now),
            }

    def delta(self, since: int) -> dict[str, Any]:
        """What changed after version ``since``: changed cards, forgotten ids, cameras, the
        status; the full state instead when ``since`` is too old to list what was forgotten."""
        if since < self.identity_book.removed_horizon:
            return self.full()
        with self._lock:
            now = self.clock()
            book = self.identity_book
            return {
                "version": self.version,
                "full": False,
                "removed": book.removed_after(since),
                "identities": [i.card(self.limits.live_s) for i in book.identities.values() if i.version > since],
                "cameras": self.camera_book.views(now),
                "status": self._status(now),
            }

    def journey(self, gid: int) -> Optional[dict[str, Any]]:
        """One identity's card and its sightings in order (camera, time span, crop, floor track)."""
        with self._lock:
            ident = self.identity_book.identities.get(gid)
            if ident is None:
                return None
            return {"card": ident.card(self.limits.live_s), "sightings": [s.as_dict() for s in ident.sightings]}

    def crop(self, crop_id: int) -> Optional[bytes]:
        with self._lock:
            return self.crops.get(crop_id)

    def frame(self, cam_id: str) -> Optional[bytes]:
        with self._lock:
            return self.camera_book.jpeg(cam_id)
