"""ReID dataset parsers: each turns a standard folder layout into (path, pid, camid) lists.

Conventions (as torchreid and the benchmarks use them):

- file lists are sorted, so label order is deterministic;
- camera ids are 0-based;
- Market-1501 style pid ``-1`` (junk) is dropped everywhere; pid ``0`` (distractors) is kept
  in the gallery and never matches a query;
- training pids are relabelled to ``0..N-1`` (:attr:`ReIDData.train`), query/gallery keep the
  dataset's own ids;
- Occluded-ReID has no camera ids: query images get camera 0 and gallery images camera 1, so
  the same-camera filter of the protocol never removes a true match;
- P-DukeMTMC-reID: camera from ``_c<N>`` in the file name when present, otherwise the same
  occluded=0 / whole=1 convention.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
_PID_CAM = re.compile(r"([-\d]+)_c(\d+)")


class DatasetLayoutError(FileNotFoundError):
    """A dataset root that does not have the layout its parser expects."""


class BadImagesError(DatasetLayoutError):
    """Image files whose header cannot be read (truncated downloads, zero-byte or foreign files)."""


class Sample(NamedTuple):
    path: str
    pid: int
    camid: int


@dataclass
class ReIDData:
    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    train_pid_map: dict[int, int] = field(default_factory=dict)  # dataset pid -> label
    skipped: list[str] = field(default_factory=list)  # unreadable files left out (data.skip_bad_images)
    val_query: list[Sample] = field(default_factory=list)  # validation split carved from training ids (data.val_ids)
    val_gallery: list[Sample] = field(default_factory=list)

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_cameras(self) -> int:
        cams = {s.camid for s in (*self.train, *self.query, *self.gallery)}
        return max(cams) + 1 if cams else 0

    def summary(self) -> str:
        rows = [f"{self.name}: subset | ids | images | cameras"]
        splits = [("train", self.train), ("query", self.query), ("gallery", self.gallery)]
        if self.val_query:
            splits += [("val q", self.val_query), ("val g", self.val_gallery)]
        for label, split in splits:
            rows.append(f"  {label:7s} | {len({s.pid for s in split}):5d} | {len(split):6d} | {len({s.camid for s in split}):3d}")
        return "\n".join(rows)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def relabel(samples: Sequence[Sample]) -> tuple[list[Sample], dict[int, int]]:
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [Sample(s.path, mapping[s.pid], s.camid) for s in samples], mapping


def find_root(root: Path, names: Sequence[str], required: Sequence[str], dataset: str) -> Path:
    """The folder under ``root`` (``root`` itself or ``root/<name>``) that has ``required`` inside."""
    candidates = [root] + [root / n for n in names]
    for c in candidates:
        if all((c / r).exists() for r in required):
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetLayoutError(f"{dataset} not found: expected {', '.join(required)} inside one of: {tried}")


def parse_pid_cam_folder(folder: Path, drop_junk: bool = True) -> list[Sample]:
    """Market/Duke file names ``<pid>_c<cam>...``; camera ids become 0-based."""
    samples = []
    for path in list_images(folder):
        match = _PID_CAM.search(path.name)
        if match is None:
            raise DatasetLayoutError(f"{path}: file name does not start with <pid>_c<camera>")
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid == -1 and drop_junk:
            continue
        samples.append(Sample(str(path), pid, cam - 1))
    return samples


def _market_like(dataset: str, dir_names: Sequence[str]) -> Callable[[Path], ReIDData]:
    def parse(root: Path) -> ReIDData:
        base = find_root(root, dir_names, ("bounding_box_train", "query", "bounding_box_test"), dataset)
        train, mapping = relabel(parse_pid_cam_folder(base / "bounding_box_train"))
        return ReIDData(dataset, train, parse_pid_cam_folder(base / "query"), parse_pid_cam_folder(base / "bounding_box_test"), mapping)

    return parse


parse_market1501 = _market_like("Market-1501", ("Market-1501-v15.09.15", "Market-1501", "market1501"))
parse_dukemtmc = _market_like("DukeMTMC-reID", ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc"))
parse_occluded_duke = _market_like("Occluded-Duke", ("Occluded_Duke", "Occluded-Duke", "occluded_duke"))


def _read_msmt_list(base: Path, image_dir: str, list_name: str) -> list[Sample]:
    samples = []
    list_path = base / list_name
    for n, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rel, label = line.split()
            camid = int(Path(rel).name.split("_")[2]) - 1
        except (ValueError, IndexError) as exc:
            raise DatasetLayoutError(f"{list_path}:{n}: expected '<pid>/<pid>_<idx>_<cam>_... <pid>', got {line!r}") from exc
        samples.append(Sample(str(base / image_dir / rel), int(label), camid))
    return samples


def parse_msmt17(root: Path) -> ReIDData:
    """MSMT17 V1 (train/, test/) or V2 (mask_train_v2/, mask_test_v2/) with its list files."""
    lists = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
    layouts = ((("MSMT17_V2", "MSMT17", "msmt17"), "mask_train_v2", "mask_test_v2"), (("MSMT17_V1", "MSMT17", "msmt17"), "train", "test"))
    errors = []
    for names, train_dir, test_dir in layouts:
        try:
            base = find_root(root, names, (train_dir, test_dir, *lists), "MSMT17")
        except DatasetLayoutError as exc:
            errors.append(str(exc))
            continue
        train = _read_msmt_list(base, train_dir, "list_train.txt") + _read_msmt_list(base, train_dir, "list_val.txt")
        train, mapping = relabel(train)
        query = _read_msmt_list(base, test_dir, "list_query.txt")
        gallery = _read_msmt_list(base, test_dir, "list_gallery.txt")
        return ReIDData("MSMT17", train, query, gallery, mapping)
    raise DatasetLayoutError("MSMT17 not found (neither V2 nor V1 layout):\n  " + "\n  ".join(errors))


def _parse_pid_folders(folder: Path, default_cam: int) -> list[Sample]:
    """``<folder>/<pid>/<image>`` layouts (Occluded-ReID, P-DukeMTMC-reID)."""
    samples = []
    for pid_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not pid_dir.name.isdigit():
            raise DatasetLayoutError(f"{pid_dir}: expected a numeric person-id folder")
        for path in list_images(pid_dir):
            match = _PID_CAM.search(path.name)
            cam = int(match.group(2)) - 1 if match else default_cam
            samples.append(Sample(str(path), int(pid_dir.name), cam))
    return samples


def parse_occluded_reid(root: Path) -> ReIDData:
    """Test-only set: train on another dataset (usually Market-1501)."""
    base = find_root(root, ("Occluded_REID", "Occluded-REID", "occluded_reid"), ("occluded_body_images", "whole_body_images"), "Occluded-ReID")
    query = [Sample(s.path, s.pid, 0) for s in _parse_pid_folders(base / "occluded_body_images", 0)]
    gallery = [Sample(s.path, s.pid, 1) for s in _parse_pid_folders(base / "whole_body_images", 1)]
    return ReIDData("Occluded-ReID", [], query, gallery)


def parse_p_dukemtmc(root: Path) -> ReIDData:
    required = ("train/occluded_body_images", "train/whole_body_images", "test/occluded_body_images", "test/whole_body_images")
    base = find_root(root, ("P-DukeMTMC-reID", "P-DukeMTMC-reid", "p_dukemtmc"), required, "P-DukeMTMC-reID")
    train = _parse_pid_folders(base / "train/occluded_body_images", 0) + _parse_pid_folders(base / "train/whole_body_images", 1)
    train, mapping = relabel(train)
    query = _parse_pid_folders(base / "test/occluded_body_images", 0)
    gallery = _parse_pid_folders(base / "test/whole_body_images", 1)
    return ReIDData("P-DukeMTMC-reID", train, query, gallery, mapping)


PARSERS: dict[str, Callable[[Path], ReIDData]] = {
    "market1501": parse_market1501,
    "dukemtmc": parse_dukemtmc,
    "msmt17": parse_msmt17,
    "occluded_duke": parse_occluded_duke,
    "occluded_reid": parse_occluded_reid,
    "p_dukemtmc": parse_p_dukemtmc,
    "synthetic": parse_market1501,  # the synthetic generator writes Market-1501 layout
}


def unreadable_images(samples: Sequence[Sample]) -> dict[str, str]:
    """``{path: reason}`` for the images whose header cannot be read. Fast: PIL reads the header
    and checks the file's structure without decoding the pixels."""
    bad = {}
    for s in samples:
        try:
            with Image.open(s.path) as im:
                im.verify()
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a broken file
            bad[s.path] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return bad


def check_images(data: ReIDData, skip: bool = False, shown: int = 5) -> ReIDData:
    """Refuse a dataset with unreadable images (one line: the first few and the count), or with
    ``skip`` leave them out (logged, listed in :attr:`ReIDData.skipped`)."""
    t0 = time.perf_counter()
    splits = {"train": data.train, "query": data.query, "gallery": data.gallery}
    bad = unreadable_images([s for split in splits.values() for s in split])
    log.info("checked %d images of %s in %.1f s: %d unreadable", sum(map(len, splits.values())), data.name, time.perf_counter() - t0, len(bad))
    if not bad:
        return data
    first = "; ".join(f"{path} ({why})" for path, why in list(bad.items())[:shown])
    listing = f"{len(bad)} unreadable image(s) in {data.name}: {first}" + ("; ..." if len(bad) > shown else "")
    if not skip:
        raise BadImagesError(f"{listing}. Remove or replace them, or set data.skip_bad_images=true to leave them out")
    log.warning("leaving out %s", listing)
    kept = [s for s in data.train if s.path not in bad]
    train, inner = relabel(kept)  # an identity can lose its only images: labels stay 0..N-1
    pid_map = {pid: inner[label] for pid, label in data.train_pid_map.items() if label in inner}
    return replace(data, train=train, train_pid_map=pid_map, skipped=sorted(bad),
                   query=[s for s in data.query if s.path not in bad],
                   gallery=[s for s in data.gallery if s.path not in bad])


def load_dataset(name: str, root: str | Path) -> ReIDData:
    if name not in PARSERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(PARSERS))}")
    root = Path(root)
    if not root.exists():
        raise DatasetLayoutError(f"dataset root {root} does not exist")
    data = PARSERS[name](root)
    if name == "synthetic":
        data.name = "synthetic"
    return data
