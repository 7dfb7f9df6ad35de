"""The CPU budget: affinity and cgroup quotas (v1 and v2) with known answers, and a real cgroup."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.cpu_budget import CpuBudget, limit_threads, read_cpu_budget, session_threads

REPO = Path(__file__).resolve().parents[1]
CORES = len(os.sched_getaffinity(0))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_of_the_process_group(tmp_path):
    _write(tmp_path / "app" / "cpu.max", "60000 100000\n")
    b = read_cpu_budget(tmp_path, "0::/app\n")
    assert b.quota == pytest.approx(0.6)
    assert b.cpus == pytest.approx(min(CORES, 0.6))
    assert b.threads == 1
    assert b.quota_source.endswith("app/cpu.max")


def test_v2_unlimited_and_a_stricter_parent_binds(tmp_path):
    _write(tmp_path / "cpu.max", "max 100000\n")
    assert read_cpu_budget(tmp_path, "0::/\n").quota is None
    _write(tmp_path / "parent" / "cpu.max", "150000 100000\n")
    _write(tmp_path / "parent" / "child" / "cpu.max", "max 100000\n")
    b = read_cpu_budget(tmp_path, "0::/parent/child\n")
    assert b.quota == pytest.approx(1.5)
    assert b.threads == 1  # floor(min(cores, 1.5))


def test_v1_cfs_quota_as_docker_cpus_sets_it(tmp_path):
    group = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    _write(group / "cpu.cfs_quota_us", "100000\n")
    _write(group / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    b = read_cpu_budget(tmp_path, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    assert b.quota == pytest.approx(1.0)
    assert b.threads == 1
    assert b.limited == (CORES > 1)


def test_inside_a_container_the_mount_root_is_the_group(tmp_path):
    """The path /proc/self/cgroup prints may not exist in the container's mount namespace."""
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "25000\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    b = read_cpu_budget(tmp_path, "1:cpu:/kubepods/pod1/ctr\n")
    assert b.quota == pytest.approx(0.25)


def test_no_cgroup_files_means_the_affinity():
    b = CpuBudget(affinity=4)
    assert (b.cpus, b.threads, b.limited) == (4.0, 4, False)
    assert CpuBudget(affinity=4, quota=2.5).threads == 2
    assert CpuBudget(affinity=1, quota=3.0).threads == 1


def test_session_threads_spin_only_with_spare_whole_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert session_threads(0, CpuBudget(4)) == (0, True)  # the whole machine: ONNX Runtime's own default
    assert session_threads(0, CpuBudget(4, quota=1.0)) == (1, False)
    assert session_threads(0, CpuBudget(2)) == (2, True)  # taskset to 2 of 4 cores
    assert session_threads(0, CpuBudget(1)) == (1, False)
    assert session_threads(3, CpuBudget(4, quota=1.0)) == (3, False)  # a configured count wins
    assert not CpuBudget(4, quota=6.0).restricted and CpuBudget(3).restricted


def test_thread_pools_are_left_alone_on_a_process_that_may_use_the_whole_machine(monkeypatch):
    import cv2

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    saved_env, saved_cv2 = dict(os.environ), cv2.getNumThreads()
    torch = sys.modules.get("torch")
    saved_torch = torch.get_num_threads() if torch is not None else None
    try:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.pop(var, None)
        assert limit_threads(CpuBudget(4)) == {}
        assert "OMP_NUM_THREADS" not in os.environ
        expected = {
            "OMP_NUM_THREADS": 1,
            "OPENBLAS_NUM_THREADS": 1,
            "MKL_NUM_THREADS": 1,
            "cv2": 1,
            **({"torch": 1} if torch else {}),
        }
        assert limit_threads(CpuBudget(4, quota=1.5)) == expected
        assert os.environ["OMP_NUM_THREADS"] == "1" and cv2.getNumThreads() == 1
    finally:  # the rest of the suite keeps this process's pools
        os.environ.clear()
        os.environ.update(saved_env)
        cv2.setNumThreads(saved_cv2)
        if torch is not None:
            torch.set_num_threads(saved_torch)


def _v1_cpu_dir() -> Path:
    return Path("/sys/fs/cgroup/cpu")


@pytest.mark.skipif(
    not (_v1_cpu_dir() / "cpu.cfs_quota_us").exists() or not os.access(_v1_cpu_dir(), os.W_OK),
    reason="needs a writable cgroup v1 cpu hierarchy (root on these machines)",
)
def test_a_process_in_a_real_cgroup_reads_its_quota():
    group = _v1_cpu_dir() / f"clipreid-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("40000")
        # the child moves itself into the group before it reads its budget, as a container's process starts in it
        code = (
            "import os,sys; open(sys.argv[1]+'/cgroup.procs','w').write(str(os.getpid()));"
            "from core.cpu_budget import read_cpu_budget; b=read_cpu_budget(); print(b.quota, b.threads)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(group)], capture_output=True, text=True, cwd=REPO, timeout=60
        )
        assert out.returncode == 0, out.stderr
        quota, threads = out.stdout.split()
        assert float(quota) == pytest.approx(0.4)
        assert threads == "1"
    finally:
        if group.exists():
            group.rmdir()


def test_the_reid_session_is_sized_to_the_quota_and_does_not_spin(monkeypatch):
    import core.cpu_budget as cpu_budget
    from edge.reid.onnxruntime_backend import OnnxRuntimeBackend

    monkeypatch.setattr(cpu_budget, "read_cpu_budget", lambda: CpuBudget(affinity=8, quota=1.0))
    backend = OnnxRuntimeBackend(str(REPO / "edge" / "demo_models" / "reid.onnx"))
    options = backend.session.get_session_options()
    assert backend.threads == 1 and options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.setattr(cpu_budget, "read_cpu_budget", lambda: CpuBudget(affinity=os.cpu_count() or 1))
    free = OnnxRuntimeBackend(str(REPO / "edge" / "demo_models" / "reid.onnx")).session.get_session_options()
    assert free.intra_op_num_threads == 0  # the whole machine: ONNX Runtime's own default
    with pytest.raises(RuntimeError, match="does not have configuration"):  # left at ONNX Runtime's default (spinning)
        free.get_session_config_entry("session.intra_op.allow_spinning")


@pytest.mark.slow
@pytest.mark.skipif(
    not (_v1_cpu_dir() / "cpu.cfs_quota_us").exists() or not os.access(_v1_cpu_dir(), os.W_OK),
    reason="needs a writable cgroup v1 cpu hierarchy (root on these machines)",
)
def test_edge_run_in_a_container_sized_quota_says_so_and_sizes_its_pools(tmp_path):
    from conftest import demo_camera_file

    demo_camera_file(
        tmp_path,
        "{id: c1, source: 'synthetic://tiny?camera=cam1', realtime: false}",
        rest="publisher: {enabled: false}\noutputs: {mot_dir: null}\nrun: {max_frames: 3}\n",
    )
    group = _v1_cpu_dir() / f"clipreid-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")  # docker run --cpus=1
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        }
        shell = f'echo $$ > "{group}/cgroup.procs" && exec "$@"'
        out = subprocess.run(
            ["sh", "-c", shell, "sh", sys.executable, "-m", "edge.run", "--cameras", str(tmp_path / "cams.yaml")],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=240,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        line = next(x for x in out.stderr.splitlines() if "compute:" in x)
        assert line.endswith(
            f"compute: 1 CPU ({CORES} core(s) in affinity, "
            f"cgroup quota 1 CPU in {line.split(' in ')[-1].split(')')[0]}): "
            "1 thread(s) per pool"
        )
        assert (
            line.split(" in ")[-1].split(")")[0].endswith(f"{group.name}/cpu.cfs_quota_us")
        )  # cpu or cpu,cpuacct mount
    finally:
        if group.exists():
            group.rmdir()
