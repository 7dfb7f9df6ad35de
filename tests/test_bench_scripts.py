"""The benchmark scripts run on a tiny configuration and write well-formed results (no timing asserts)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO


def run_script(*args):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_bench_reid_writes_json_markdown_and_plot(tmp_path):
    proc = run_script(
        "scripts/bench_reid.py",
        "--image-size",
        "64",
        "32",
        "--batches",
        "1",
        "2",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--out",
        str(tmp_path),
    )
    assert (
        "np.float" not in proc.stdout and "backend torch-fp32-cpu batch 1 images_per_s " in proc.stdout
    )  # plain numbers
    assert f"wrote {tmp_path / 'bench.json'}, {tmp_path / 'bench.md'}, {tmp_path / 'bench.png'}" in proc.stdout
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["environment"]["torch"] and {r["batch"] for r in data["results"]} == {1, 2}
    backends = {r["backend"] for r in data["results"]}
    assert {"torch-fp32-cpu", "onnxruntime-cpu"} <= backends
    assert all(
        r["images_per_s"] > 0 and r["p50_ms"] <= r["p99_ms"] and r["min_cosine_vs_fp32"] > 0.9999
        for r in data["results"]
    )
    assert (tmp_path / "bench.md").read_text().count("\n") == 2 + len(data["results"]) and (
        tmp_path / "bench.png"
    ).stat().st_size > 0


def test_bench_pipeline_writes_json_markdown_and_plot(tmp_path):
    demo = REPO / "edge" / "demo_models"
    cfg = {
        "cameras": [{"id": "c1", "source": "synthetic://tiny?camera=cam1"}],
        "detector": {"weights": str(demo / "detector.onnx"), "imgsz": 320},
        "reid": {"model": str(demo / "reid.onnx")},
    }
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_script(
        "scripts/bench_pipeline.py",
        "--config",
        str(path),
        "--cameras",
        "1",
        "2",
        "--frames",
        "8",
        "--repeats",
        "1",
        "--no-warmup",
        "--endpoint",
        "tcp://127.0.0.1:56799",
        "--out",
        str(tmp_path / "out"),
    )
    out = tmp_path / "out"
    assert f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}" in proc.stdout
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [r["cameras"] for r in data["results"]] == [1, 2]
    two = data["results"][1]["median"]
    assert two["processed"] == {"c1": 8, "c1_1": 8} and two["fps_total"] > 0 and "detect" in two["latency_ms"]
    assert (tmp_path / "out" / "bench.md").exists() and (tmp_path / "out" / "bench.png").exists()


def test_compare_methods_trains_each_and_writes_the_robustness_table(tmp_path):
    small = [
        f"data.root={tmp_path / 'data'}",
        "data.synthetic.num_train_ids=8",
        "data.synthetic.num_test_ids=6",
        "data.synthetic.images_per_id_per_camera=2",
        "data.synthetic.height=64",
        "data.synthetic.width=32",
        "model.image_size=[64,32]",
        "stage1.epochs=1",
        "stage2.epochs=1",
        "stage2.batch_size=16",
        "stage1.batch_size=16",
    ]
    proc = run_script(
        "scripts/compare_methods.py", "--methods", "baseline", "rganet", "--out", str(tmp_path / "out"), *small
    )
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["method"] for r in rows] == ["baseline", "rganet"] and all(0 <= r["mAP"] <= 100 for r in rows)
    results = json.loads((tmp_path / "out" / "robustness.json").read_text())["results"]
    assert set(results) == {"baseline", "rganet"} and [r["level"] for r in results["rganet"]["mask"]] == [
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
    ]
    assert (
        abs(results["baseline"]["mask"][0]["mAP"] - rows[0]["mAP"]) <= 0.051
    )  # level 0 = the clean evaluation (rounded to 0.1)
    assert "| rganet | distractor |" in proc.stdout and (tmp_path / "out" / "robustness.png").stat().st_size > 0


def _compare_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_methods", REPO / "scripts/compare_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_statistics_find_a_consistent_shift_and_not_noise():
    import numpy as np

    from trainer.eval.seed_stats import seed_statistics as stats_of

    rng = np.random.default_rng(0)
    base = [
        {"clean": {"ap": rng.uniform(0, 100, 60).tolist(), "r1": rng.integers(0, 2, 60).astype(float).tolist()}}
        for _ in range(3)
    ]
    shifted = [{"clean": {"ap": [v + 5 for v in s["clean"]["ap"]], "r1": s["clean"]["r1"]}} for s in base]
    stats = stats_of(shifted, base)["clean"]
    assert stats["mAP"]["diff_vs_baseline"]["mean"] == pytest.approx(5.0)
    assert stats["mAP"]["diff_vs_baseline"]["significant"] and stats["mAP"]["diff_vs_baseline"][
        "ci95"
    ] == pytest.approx([5.0, 5.0])
    assert not stats["R1"]["diff_vs_baseline"]["significant"]  # identical R1: difference 0, interval [0, 0]
    noise = [{"clean": {"ap": rng.uniform(0, 100, 60).tolist(), "r1": s["clean"]["r1"]}} for s in base]
    d = stats_of(noise, base)["clean"]["mAP"]
    assert d["diff_vs_baseline"]["ci95"][0] < 0 < d["diff_vs_baseline"]["ci95"][1]  # independent noise: not significant
    own = stats_of(base, None)["clean"]["mAP"]
    means = [np.mean(s["clean"]["ap"]) for s in base]
    assert own["mean"] == pytest.approx(np.mean(means)) and own["std"] == pytest.approx(np.std(means, ddof=1))
    assert own["ci95"][0] < own["mean"] < own["ci95"][1]


def test_compare_methods_with_seeds_writes_statistics(tmp_path):
    small = [
        f"data.root={tmp_path / 'data'}",
        "data.synthetic.num_train_ids=8",
        "data.synthetic.num_test_ids=6",
        "data.synthetic.images_per_id_per_camera=2",
        "data.synthetic.height=64",
        "data.synthetic.width=32",
        "model.image_size=[64,32]",
        "stage1.epochs=1",
        "stage2.epochs=1",
        "stage2.batch_size=16",
        "stage1.batch_size=16",
    ]
    run_script(
        "scripts/compare_methods.py",
        "--methods",
        "baseline",
        "agreid",
        "--seeds",
        "2",
        "--levels",
        "0",
        "0.3",
        "--out",
        str(tmp_path / "out"),
        "--results",
        str(tmp_path / "res"),
        *small,
    )
    data = json.loads((tmp_path / "res" / "methods.json").read_text())
    assert data["meta"]["seeds"] == 2 and set(data["results"]) == {"baseline", "agreid"}
    agreid = data["results"]["agreid"]
    assert agreid["baseline"] == "baseline" and len(agreid["runs"]) == 2
    assert set(agreid["stats"]) == {"clean", "mask@0.3", "distractor@0.3"}
    assert (
        len(agreid["stats"]["clean"]["mAP"]["per_seed"]) == 2 and "diff_vs_baseline" in agreid["stats"]["clean"]["mAP"]
    )
    assert (tmp_path / "res" / "methods.png").stat().st_size > 0
    assert agreid["epochs"] == {
        "stage1": 1,
        "stage2": 1,
        "method_stage": 0,
    }  # the budget as overridden, stated per method
    table = (tmp_path / "res" / "methods.md").read_text()
    assert "| method | clean mAP | mask@0.3 mAP |" in table and "| method | clean R1 | mask@0.3 R1 |" in table
    secs = " / ".join(f"{r['train_seconds']:.0f}" for r in agreid["runs"])
    assert f"| agreid | 1 / 1 / 0 | {agreid['train_seconds_mean']:.0f} | {secs} |" in table


@pytest.mark.slow
def test_bench_startup_times_edge_run_and_writes_json(tmp_path):
    demo = REPO / "edge" / "demo_models"
    cfg = {
        "cameras": [{"id": "c1", "source": "synthetic://tiny?camera=cam1", "realtime": False}],
        "detector": {"weights": str(demo / "detector.onnx"), "imgsz": 320},
        "reid": {"model": str(demo / "reid.onnx")},
    }
    (tmp_path / "cams.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_script(
        "scripts/bench_startup.py",
        "--cameras",
        str(tmp_path / "cams.yaml"),
        "--repeats",
        "1",
        "--out",
        str(tmp_path / "s.json"),
    )
    assert "| this checkout  |" in proc.stdout
    row = json.loads((tmp_path / "s.json").read_text())["rows"][0]
    assert row["median_wall_s"] > 0 and 0 < row["median_cpu_s"] and row["modules"] > 100


def test_compare_methods_reuses_a_finished_run_only_with_the_same_settings(tmp_path, monkeypatch):
    import argparse

    module = _compare_module()
    trained = []

    def fake_train(name, recipe, out, overrides):
        trained.append((name, tuple(overrides)))
        return {"method": name, "checkpoint": str(out / name / "model.pt"), "train_seconds": 1.0}

    monkeypatch.setattr(module, "train_one", fake_train)
    monkeypatch.setattr(
        module,
        "per_query_results",
        lambda ckpt, recipe, overrides, levels, seed: {"clean": {"ap": [float(len(trained))], "r1": [1.0]}},
    )
    (tmp_path / "seed0" / "agreid").mkdir(parents=True)
    args = argparse.Namespace(out=tmp_path, overrides=["stage2.epochs=3"], levels=[0.0, 0.2], seed=0)
    row, per_query = module.trained_run("agreid", 0, args)
    assert trained == [("agreid", ("stage2.epochs=3", "seed=0"))] and per_query["clean"]["ap"] == [1.0]
    again, kept = module.trained_run("agreid", 0, args)  # same settings: read back, not retrained
    assert len(trained) == 1 and again == row and kept == per_query
    args.levels = [0.0, 0.4]  # other corruption levels: the record does not apply
    _, redone = module.trained_run("agreid", 0, args)
    assert len(trained) == 2 and redone["clean"]["ap"] == [2.0]
    args.overrides = ["stage2.epochs=4"]
    module.trained_run("agreid", 0, args)
    assert len(trained) == 3


@pytest.mark.slow
@pytest.mark.skipif(
    not (os.access("/sys/fs/cgroup/cpu", os.W_OK) or os.access("/sys/fs/cgroup/cgroup.procs", os.W_OK)),
    reason="a CPU quota needs a writable cgroup (root)",
)
def test_bench_live_runs_the_demo_under_a_cpu_quota_and_scores_it(tmp_path):
    proc = run_script(
        "scripts/bench_live.py",
        "--seeds",
        "101",
        "--settings",
        "quota:1.0",
        "--duration",
        "3",
        "--port",
        "56797",
        "--out",
        str(tmp_path),
    )
    assert f"wrote {tmp_path / 'bench.json'}, {tmp_path / 'bench.md'} and {tmp_path / 'curve.png'}" in proc.stdout
    data = json.loads((tmp_path / "bench.json").read_text())
    (run,) = data["runs"]
    assert run["setting"] == "quota:1.0" and run["scores"]["ids_true"] == 20 and sum(run["frames"].values()) > 0
    assert data["summary"]["quota:1.0"]["n"] == 1 and (tmp_path / "curve.png").stat().st_size > 0
    assert not list(Path("/sys/fs/cgroup/cpu").glob("clipreid-bench-*"))  # the group is removed


def test_the_four_region_projection_is_n_times_one_hub_s_rate_scaled_by_what_a_message_costs_in_cpu():
    """One hub alone: 100 messages/s at 0.8 of a core (125 messages a CPU second). Four at once
    on fewer cores: each 100 messages a CPU second (a message costs 1.25x). With a core each, each
    would decide 100 * 100 / 125 = 80 a second: 3.2x one hub."""
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_stream import projected_speedup

    one = {"regions": 1, "per_s": 100.0, "hub_busy_each": [0.8], "per_cpu_s_each": [125.0]}
    four = {"regions": 4, "seconds": 10.0, "server_cpu_s": 3.0, "per_cpu_s_each": [100.0] * 4}
    got = projected_speedup([one, four])
    assert got == {"regions": 4, "projected_speedup": 3.2, "cpu_per_message_ratio": 1.25, "server_busy": 0.3}
