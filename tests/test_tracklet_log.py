"""The tracklet log: a run writes what its identity engine was given; replayed into a fresh engine
with the run's settings it makes the run's decisions again, and its last summaries are the
tracklets the run saw."""

import gzip
import json

import pytest
import yaml
from test_edge_run import cams_yaml, ids_the_files_hold

from edge.identity import IdentityEngine
from edge.reid.factory import build_backend
from edge.runtime import build
from edge.runtime.capture_loop import run_pipeline
from edge.runtime.config import load_edge_config
from edge.site.tracklet_log import final_summaries, replay_steps
from sim.scene import World, resolve_scene
from sim.writers import floor_calibration


def test_a_replayed_tracklet_log_makes_the_run_s_decisions_again(tmp_path):
    cams = [{"id": f"cam{i}", "source": f"synthetic://demo?camera=cam{i}", "realtime": False} for i in (1, 2, 3)]
    log_path = tmp_path / "run.jsonl.gz"
    path = cams_yaml(
        tmp_path,
        cams,
        56801,
        publisher={"enabled": False},
        run={"max_frames": 60},
        outputs={"tracklet_log": str(log_path)},
        matching={"threshold": None},
    )
    cfg_dict = yaml.safe_load(path.read_text())
    cfg_dict["calibration"] = floor_calibration(World(resolve_scene("demo")))  # floor tracks travel too
    path.write_text(yaml.safe_dump(cfg_dict))
    cfg = load_edge_config(path)
    run_pipeline(cfg)
    run_ids = ids_the_files_hold(tmp_path / "mot", ["cam1", "cam2", "cam3"])
    assert len(set(run_ids.values())) >= 3

    reid = build_backend(cfg.reid)
    settings = build.engine_settings(cfg, reid, len(cfg.calibration))
    engine = IdentityEngine(settings)
    final, now, floors = {}, 0.0, 0
    for now, step in replay_steps(log_path):
        engine.update(step, now)
        final.update(engine.take_final())
        floors += sum(s.floor is not None and len(s.floor) > 0 for s in step)
    engine.flush(now)
    final.update(engine.take_final())
    assert floors > 0
    assert {k: final[k] for k in run_ids} == run_ids  # every tracklet that wrote rows, the same id

    tracklets = final_summaries(log_path)
    assert {s.key for s in tracklets} == set(final) and all(s.ended for s in tracklets)
    assert all(
        s.appearance is not None and s.appearance.dim == reid.meta.embedding_dim for s in tracklets if s.n_embeddings
    )


def test_a_file_that_is_not_a_tracklet_log_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "events.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({"t": 0.0, "parts": ["aGVsbG8="]}) + "\n")
    with pytest.raises(ValueError, match=r"events.jsonl.gz: not a tracklet log"):
        list(replay_steps(bad))


DECIDE = """
import numpy as np
from core.embeddings import Embeddings
from edge.identity import EngineSettings, IdentityEngine, TrackletSummary
rng = np.random.default_rng(0)
look = rng.normal(size=256)
box = np.array([100, 100, 140, 200.0])
e = IdentityEngine(EngineSettings(threshold=0.5, scale=0.1))
for i in range(8):  # one person in eight cameras at once: one identity of eight tracklets
    app = Embeddings.normalized((look + rng.normal(scale=0.5, size=256))[None].astype(np.float32))
    s = TrackletSummary(f"cam{i}", i, 0.0, 1.0, app, 4, float(rng.uniform(1, 5)), box, box, None, False)
    e.update([s], 1.0)
print(e.appearance(e.identities[1]).global_.tobytes().hex(), sorted(e.assignment.values()))
"""


def test_the_engine_decides_the_same_whatever_python_s_hash_seed():
    """Identities keep their tracklets in sets, whose order follows string hashes, randomised per
    process: summed in that order, an identity's appearance differed in its last bits from one
    process to the next, enough to flip a borderline decision between a live run and its replay."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    outs = {
        subprocess.run(
            [sys.executable, "-c", DECIDE],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout  # fmt: skip
        for seed in (1, 2, 3, 4)
    }
    assert len(outs) == 1 and "[1, 1, 1, 1, 1, 1, 1, 1]" in outs.pop()


def test_the_step_reader_drops_duplicates_ends_a_restarted_node_s_tracklets_and_refuses_another_model():
    """What a region hub reads from a stream: a message sent twice gives one step, a hello sent
    twice changes nothing, a node's new session ends the old one's live tracklets in the next step,
    a node announcing another embedding size (another model) or another node's camera is refused."""
    import numpy as np

    from core.embeddings import Embeddings
    from edge.site.tracklet_log import StepReader
    from edge.wire.site_protocol import ProtocolError, WireTracklet, encode, encode_tracklets

    def hello(node, session, cams=("cam1",), dim=8):
        return encode("hello", {"node": node, "session": session, "cameras": list(cams), "embedding_dim": dim})

    def summaries(seq, local_id, ended=False):
        box = np.array([0, 0, 10, 20.0])
        look = Embeddings.normalized(np.ones((1, 8), np.float32))
        w = WireTracklet("cam1", local_id, 1.0, 2.0, 3, 3.0, box, box, ended, 0.9, 1, look)
        return encode_tracklets(seq, 2.0 + seq, [w])

    reader = StepReader(embedding_dim=8)
    assert reader.read(hello("n1", "a"), "n1", "a") is None
    assert len(reader.read(summaries(1, 5), "n1", "a")[1]) == 1
    assert reader.read(summaries(1, 5), "n1", "a") is None  # the same message again
    assert reader.read(hello("n1", "a"), "n1", "a") is None and reader.mirror.bases == {"cam1": 0}
    reader.read(hello("n1", "b"), "n1", "b")  # the node restarted: session a's tracklet 5 ends
    step = reader.read(summaries(1, 1), "n1", "b")[1]
    assert [(s.local_id, s.ended) for s in step] == [(5, True), (6, False)]  # 6: b's id 1 above a's ids
    with pytest.raises(ProtocolError, match="16-d embeddings"):
        reader.read(hello("n2", "c", ("cam2",), dim=16), "n2", "c")
    with pytest.raises(ProtocolError, match="without an accepted hello"):
        reader.read(summaries(1, 1), "n2", "c")
    with pytest.raises(ProtocolError, match=r"cameras \['cam1'\] are another node's"):
        reader.read(hello("n3", "d"), "n3", "d")
