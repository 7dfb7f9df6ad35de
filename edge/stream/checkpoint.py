"""A region hub's checkpoint: its whole deterministic state at a stream position.

The engine (identities, live tracklets, camera centering, id counters), the stream's reader (the
nodes' sessions, their tracklets under engine keys, the last sequence number of each), the
region's scene clock and the FAISS gallery, as they stand after the message at ``position``.
A hub that loads it and reads the summaries stream from ``position + 1`` makes the decisions the
hub that wrote it would have made (``tests/test_stream_checkpoint.py``), so a hub that starts
(a restart, a new machine, a cold standby) replays from the checkpoint, not from the stream's
start: what it replays is bounded by how often the active hub writes one.

Stored in a JetStream object store (``clipreid_checkpoints``, one object per region, replicated
like the streams). Format: one JSON line (format, region, position, the settings' fingerprint,
when the region's summaries stream was made) then the state pickled. Loading unpickles only the
classes a hub's state is made of, numpy's arrays and plain containers, by exact name
(:class:`_StateUnpickler`): a checkpoint is state, never code. A checkpoint written with other
matching, gallery, lockstep, hand-over or model settings, for another incarnation of the stream, or that
this code cannot load, is not used (said in a log line): the hub reads the region from its start
instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge.stream.names import Region

log = logging.getLogger("edge.stream")

CHECKPOINT_BUCKET = "clipreid_checkpoints"
FORMAT = 1
READ_TIMEOUT_S = 120.0  # reading a checkpoint that the active hub replaces meanwhile may never end
_STATE = {  # module -> the names a hub's state is pickled with (tests/test_stream_checkpoint.py loads them all)
    "builtins": {"set", "frozenset", "dict", "list", "tuple", "int", "float", "complex", "bool", "str", "bytes"},
    "collections": {"defaultdict", "OrderedDict", "deque"},
    "copyreg": {"_reconstructor"},
    "numpy": {"dtype", "ndarray"},
    "numpy._core.numeric": {"_frombuffer"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "core.embeddings": {"Embeddings"},
    "edge.identity.centering": {"CameraCentering"},
    "edge.identity.engine": {"IdentityEngine"},
    "edge.identity.geometry": {"FloorRules", "FloorTrack"},
    "edge.identity.records": {"Identity", "TrackletSummary", "Decision"},
    "edge.identity.rules": {"Rules"},
    "edge.identity.settings": {"EngineSettings"},
    "edge.identity.state": {"Count"},
    "edge.identity.topology": {"Transition"},
    "edge.site.gallery": {"Gallery", "ExactRows"},
    "edge.site.mirror": {"Mirror", "HubTracklet"},
    "edge.site.tracklet_log": {"StepReader"},
    "edge.stream.checkpoint": {"HubState"},
    "edge.stream.lockstep": {"Held", "Lockstep"},
    "edge.wire.site_protocol": {"WireTracklet"},
}


@dataclass
class HubState:
    """What a region hub decides from (``RegionSteps.state``/``RegionSteps.load``)."""

    position: int  # the last summaries stream position decided
    now: float  # the region's scene clock
    engine: Any  # IdentityEngine (its candidates search dropped: the loader sets its own)
    reader: Any  # StepReader
    gallery: Any  # Gallery or None
    told: dict  # engine key -> the site id the decision stream last gave it
    lockstep: Any = None  # Lockstep (its nodes' messages not decided yet), None free running


def numpy_build() -> str:
    """The numpy a hub scores with and the BLAS kernel its matrix products dispatch to on this CPU
    (threadpoolctl reads OpenBLAS's: e.g. "Haswell" here, "SkylakeX" on a newer CPU). Another kernel
    may sum a dot product in another order and break a near-tie otherwise, so it is in the
    fingerprint that a region's hubs, which must decide alike, check. Only numpy's own BLAS (the one
    in its wheel's ``numpy.libs``): OpenCV, SciPy and FAISS load theirs too, as the process happens
    to import them; a numpy built against a system BLAS has none there, and then all are named."""
    from threadpoolctl import threadpool_info

    home = Path(np.__file__).parent
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    own = [i for i in blas if Path(i.get("filepath", "")).parent in (home, home.with_name("numpy.libs"))]
    kernels = sorted(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in own or blas)
    return f"numpy {np.__version__} " + (", ".join(kernels) or "no BLAS found")


def fingerprint(*settings: Any) -> str:
    """The settings a checkpoint's decisions depend on (matching, embedding size, gallery), hashed:
    a hub started with other ones must not continue from it."""
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


def dump(region: Region, state: HubState, settings_fingerprint: str, stream_made: str = "") -> bytes:
    """``stream_made``: when the region's summaries stream was made (a checkpoint of a stream made anew is no use)."""
    head = {
        "format": FORMAT, "region": region.name, "position": state.position, "fingerprint": settings_fingerprint,
        "stream": stream_made,
    }  # fmt: skip
    return json.dumps(head).encode() + b"\n" + pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load(data: bytes, region: Region, settings_fingerprint: str, stream_made: str = "") -> Optional[HubState]:
    """The state in ``data``, or None (said why) when this hub must not or cannot continue from it."""
    line, _, body = data.partition(b"\n")
    try:
        head = json.loads(line)
    except ValueError:
        log.warning("stream: region %s's checkpoint is not one (no header): reading from the start", region.name)
        return None
    if head.get("format") != FORMAT or head.get("region") != region.name:
        log.warning("stream: region %s's checkpoint has format %s of region %s: not used", region.name,
                    head.get("format"), head.get("region"))  # fmt: skip
        return None
    if head.get("stream", "") != stream_made:
        log.warning(
            "stream: region %s's checkpoint is of its stream made %s, not of the one made %s: reading from the start",
            region.name, head.get("stream") or "?", stream_made or "?",
        )  # fmt: skip
        return None
    if head.get("fingerprint") != settings_fingerprint:
        log.warning(
            "stream: region %s's checkpoint (position %s) was written with other matching, gallery or lockstep "
            "settings: this hub reads the region from the start",
            region.name, head.get("position"),
        )  # fmt: skip
        return None
    try:
        state = _StateUnpickler(io.BytesIO(body)).load()
    except Exception as exc:  # noqa: BLE001 - another code version, a truncated object: replay instead
        log.warning("stream: region %s's checkpoint cannot be loaded (%s): reading from the start", region.name, exc)
        return None
    if not isinstance(state, HubState):
        log.warning("stream: region %s's checkpoint holds a %s: not used", region.name, type(state).__name__)
        return None
    return state


class _StateUnpickler(pickle.Unpickler):
    """Only this project's classes, numpy and plain containers: a checkpoint cannot name a function to run."""

    def find_class(self, module: str, name: str) -> Any:
        if name in _STATE.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not state")


async def checkpoint_store(js: Any, replicas: int = 1) -> Any:
    """The checkpoints' object store (made on first use)."""
    from nats.js.api import ObjectStoreConfig, StorageType
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.object_store(CHECKPOINT_BUCKET)
    except BucketNotFoundError:
        config = ObjectStoreConfig(bucket=CHECKPOINT_BUCKET, replicas=replicas, storage=StorageType.FILE)
        return await js.create_object_store(CHECKPOINT_BUCKET, config=config)


async def read_checkpoint(
    store: Any, region: Region, settings_fingerprint: str, stream_made: str = "", tries: int = 3
) -> Optional[HubState]:
    """The region's latest checkpoint, None when it has none, one this hub must not use, or none
    could be read in ``tries`` (each bounded: a read that the active hub's next write overlaps may
    never end; a digest that does not match is tried again)."""
    from nats.js.errors import NotFoundError

    for attempt in range(1, tries + 1):
        into = io.BytesIO()  # the client's own buffer grows by concatenation: quadratic in the size
        try:
            await asyncio.wait_for(store.get(region.name, writeinto=into), READ_TIMEOUT_S)
        except NotFoundError:  # none yet (or deleted)
            return None
        except Exception as exc:  # noqa: BLE001 - a timeout, a digest mismatch, the servers away
            log.warning("stream: region %s's checkpoint not read (try %d of %d): %s", region.name, attempt, tries,
                        exc or type(exc).__name__)  # fmt: skip
            await asyncio.sleep(1.0)
            continue
        return load(into.getvalue(), region, settings_fingerprint, stream_made)
    log.warning("stream: region %s's checkpoint could not be read: reading the region from its start", region.name)
    return None
