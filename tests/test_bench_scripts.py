"""The benchmark scripts run on a tiny configuration and write well-formed results (no timing asserts)."""
import json
import subprocess
import sys

import yaml

from conftest import REPO


def run_script(*args):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_bench_reid_writes_json_markdown_and_plot(tmp_path):
    proc = run_script("scripts/bench_reid.py", "--image-size", "64", "32", "--batches", "1", "2", "--iters", "2", "--warmup", "1", "--out", str(tmp_path))
    assert "np.float" not in proc.stdout and "backend torch-fp32-cpu batch 1 images_per_s " in proc.stdout  # plain numbers
    assert f"wrote {tmp_path / 'bench.json'}, {tmp_path / 'bench.md'}, {tmp_path / 'bench.png'}" in proc.stdout
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["environment"]["torch"] and {r["batch"] for r in data["results"]} == {1, 2}
    backends = {r["backend"] for r in data["results"]}
    assert {"torch-fp32-cpu", "onnxruntime-cpu"} <= backends
    assert all(r["images_per_s"] > 0 and r["p50_ms"] <= r["p99_ms"] and r["min_cosine_vs_fp32"] > 0.9999 for r in data["results"])
    assert (tmp_path / "bench.md").read_text().count("\n") == 2 + len(data["results"]) and (tmp_path / "bench.png").stat().st_size > 0


def test_bench_pipeline_writes_json_markdown_and_plot(tmp_path):
    demo = REPO / "edge" / "demo_models"
    cfg = {"cameras": [{"id": "c1", "source": "synthetic://tiny?camera=cam1"}],
           "detector": {"weights": str(demo / "detector.pt"), "imgsz": 320},
           "reid": {"model": str(demo / "reid.onnx")}}
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_script("scripts/bench_pipeline.py", "--config", str(path), "--cameras", "1", "2", "--frames", "8", "--repeats", "1",
                      "--no-warmup", "--endpoint", "tcp://127.0.0.1:56799", "--out", str(tmp_path / "out"))
    out = tmp_path / "out"
    assert f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}" in proc.stdout
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [r["cameras"] for r in data["results"]] == [1, 2]
    two = data["results"][1]["median"]
    assert two["processed"] == {"c1": 8, "c1_1": 8} and two["fps_total"] > 0 and "detect" in two["latency_ms"]
    assert (tmp_path / "out" / "bench.md").exists() and (tmp_path / "out" / "bench.png").exists()


def test_compare_methods_trains_each_and_writes_the_robustness_table(tmp_path):
    small = [f"data.root={tmp_path / 'data'}", "data.synthetic.num_train_ids=8", "data.synthetic.num_test_ids=6",
             "data.synthetic.images_per_id_per_camera=2", "data.synthetic.height=64", "data.synthetic.width=32",
             "model.image_size=[64,32]", "stage1.epochs=1", "stage2.epochs=1", "stage2.batch_size=16", "stage1.batch_size=16"]
    proc = run_script("scripts/compare_methods.py", "--methods", "baseline", "rganet", "--out", str(tmp_path / "out"), *small)
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["method"] for r in rows] == ["baseline", "rganet"] and all(0 <= r["mAP"] <= 100 for r in rows)
    results = json.loads((tmp_path / "out" / "robustness.json").read_text())["results"]
    assert set(results) == {"baseline", "rganet"} and [r["level"] for r in results["rganet"]["mask"]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert abs(results["baseline"]["mask"][0]["mAP"] - rows[0]["mAP"]) <= 0.051  # level 0 = the clean evaluation (rounded to 0.1)
    assert "| rganet | distractor |" in proc.stdout and (tmp_path / "out" / "robustness.png").stat().st_size > 0
