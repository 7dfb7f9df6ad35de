"""The hub's memory across restarts: identities and what the site was told, in SQLite (WAL).

What is kept: every identity's final-tracklet summary (appearance with parts, weight, time spans
per camera, last floor track, where it was last seen, cameras, times) and its current event
embedding; for every tracklet the hub has heard of, its node, node session, camera, node-local
id, engine id and the site id last told; counters (next global id, per-camera engine id bases).
Live tracklets' evidence is not kept: nodes resend it when they find a new hub session. Each
engine step is one transaction, committed *before* the step's events are published, so nothing
the site was told is lost.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from core.embeddings import Embeddings
from edge.identity import FloorTrack, Identity

SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
  gid INTEGER PRIMARY KEY, created REAL, last_seen REAL, last_camera TEXT, cameras TEXT, spans TEXT,
  past_weight REAL, past BLOB, embedding BLOB, floor BLOB, last_box TEXT);
CREATE TABLE IF NOT EXISTS tracklets (
  node TEXT, session TEXT, camera TEXT, local_id INTEGER, engine_id INTEGER, site_id INTEGER, final INTEGER,
  PRIMARY KEY (node, session, camera, local_id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass
class TrackletRow:
    node: str
    session: str
    camera: str
    local_id: int
    engine_id: int
    site_id: Optional[int]
    final: bool = False


def _array_bytes(a: np.ndarray) -> bytes:
    """An array as bytes: a JSON header ([dtype, shape]) after its length, then the raw data."""
    a = np.ascontiguousarray(a)
    header = json.dumps([a.dtype.str, list(a.shape)]).encode()
    return len(header).to_bytes(4, "little") + header + a.tobytes()


def _bytes_array(b: bytes) -> np.ndarray:
    n = int.from_bytes(b[:4], "little")
    dtype, shape = json.loads(b[4 : 4 + n])
    return np.frombuffer(b[4 + n :], np.dtype(dtype)).reshape(shape).copy()


def _blob(a: Optional[np.ndarray]) -> Optional[bytes]:
    return None if a is None else _array_bytes(a)


def _unblob(b: Optional[bytes]) -> Optional[np.ndarray]:
    return None if b is None else _bytes_array(b)


def _pack_embeddings(e: Optional[Embeddings]) -> Optional[bytes]:
    if e is None:
        return None
    parts = [e.global_]
    if e.parts is not None and e.part_conf is not None:  # they come together
        parts += [e.parts.reshape(len(e), -1), e.part_conf]
    flat = np.concatenate([p.reshape(len(e), -1).astype(np.float32) for p in parts], axis=1)
    meta = json.dumps({"dim": e.dim, "parts": None if e.parts is None else list(e.parts.shape[1:])}).encode()
    return len(meta).to_bytes(4, "little") + meta + _array_bytes(flat)


def _unpack_embeddings(b: Optional[bytes]) -> Optional[Embeddings]:
    if b is None:
        return None
    n = int.from_bytes(b[:4], "little")
    meta = json.loads(b[4 : 4 + n])
    flat = _bytes_array(b[4 + n :])
    d = meta["dim"]
    if meta["parts"] is None:
        return Embeddings(flat[:, :d])
    p, dp = meta["parts"]
    return Embeddings(flat[:, :d], flat[:, d : d + p * dp].reshape(-1, p, dp), flat[:, d + p * dp :])


class StoreError(RuntimeError):
    """The hub's store cannot be opened or read; one line naming the ``store`` field and the file."""


def store_error(path: str, exc: BaseException) -> StoreError:
    """An SQLite or file-system error as one line an operator can act on (SQLite's own messages,
    ``unable to open database file`` or ``file is not a database``, name neither field nor file)."""
    if Path(path).is_dir():
        return StoreError(f"store: {path} is a directory; store names the hub's SQLite file (e.g. hub.sqlite)")
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return StoreError(f"store: {path} is not an SQLite database (is it the hub's store?)")
    return StoreError(f"store: {path}: cannot use it as the hub's SQLite store: {exc}")


def _connect(path: str) -> sqlite3.Connection:
    """The store's connection, in WAL mode with the hub's tables; what cannot be opened raises
    :class:`StoreError` (whatever was opened closed)."""
    db: Optional[sqlite3.Connection] = None
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if path != ":memory:" and mode.lower() != "wal":
            raise StoreError(f"store: {path}: SQLite refused WAL mode ({mode})")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(identities)")}
        if "last_box" not in columns:  # a store written before transitions had doors
            db.execute("ALTER TABLE identities ADD COLUMN last_box TEXT")
        return db
    except (OSError, sqlite3.Error) as exc:
        if db is not None:
            db.close()
        raise store_error(path, exc) from exc
    except StoreError:
        if db is not None:
            db.close()
        raise


class Store:
    """One SQLite file in WAL mode (readers never block the hub; a crash loses no committed step)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.db = _connect(self.path)

    def close(self) -> None:
        self.db.close()

    # --- writing --------------------------------------------------------------------------
    def save(
        self,
        identities: Iterable[Identity],
        removed: Iterable[int],
        tracklets: Iterable[TrackletRow],
        meta: dict[str, object],
    ) -> None:
        """One engine step in one transaction."""
        rows = []
        for i in identities:
            floor = None
            if i.past_floor is not None and len(i.past_floor):
                t, p = i.past_floor.arrays()
                floor = _blob(np.column_stack([t, p]))
            rows.append(
                (
                    i.global_id,
                    i.created,
                    i.last_seen,
                    i.last_camera,
                    json.dumps(sorted(i.cameras)),
                    json.dumps({c: [list(s) for s in spans] for c, spans in i.spans.items()}),
                    i.past_weight,
                    _pack_embeddings(i.past),
                    _blob(None if i.embedding is None else np.asarray(i.embedding, np.float32)),
                    floor,
                    None if i.last_box is None else json.dumps([float(v) for v in i.last_box]),
                )
            )
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO identities VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.executemany("DELETE FROM identities WHERE gid = ?", [(int(g),) for g in removed])
            self.db.executemany(
                "INSERT OR REPLACE INTO tracklets VALUES (?,?,?,?,?,?,?)",
                [(t.node, t.session, t.camera, t.local_id, t.engine_id, t.site_id, int(t.final)) for t in tracklets],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
            )

    # --- reading --------------------------------------------------------------------------
    def identities(self) -> list[Identity]:
        out = []
        for (
            gid,
            created,
            last_seen,
            last_camera,
            cameras,
            spans,
            past_weight,
            past,
            emb,
            floor,
            last_box,
        ) in self.db.execute(
            "SELECT gid, created, last_seen, last_camera, cameras, spans, past_weight, past, embedding, floor, "
            "last_box FROM identities ORDER BY gid"
        ):
            ident = Identity(
                gid,
                created,
                last_seen,
                last_camera,
                set(json.loads(cameras)),
                last_box=None if last_box is None else np.array(json.loads(last_box), float),
            )
            ident.spans = {c: [tuple(s) for s in v] for c, v in json.loads(spans).items()}
            ident.past, ident.past_weight = _unpack_embeddings(past), past_weight
            e = _unblob(emb)
            ident.embedding = None if e is None else e
            f = _unblob(floor)
            if f is not None:
                ident.past_floor = FloorTrack()
                for t, x, y in f:
                    ident.past_floor.add(t, np.array([x, y]))
            out.append(ident)
        return out

    def tracklets(self) -> list[TrackletRow]:
        return [
            TrackletRow(n, s, c, lid, eid, sid, bool(fin))
            for n, s, c, lid, eid, sid, fin in self.db.execute("SELECT * FROM tracklets")
        ]

    def meta(self) -> dict[str, object]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
