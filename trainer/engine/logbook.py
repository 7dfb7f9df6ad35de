"""Per-epoch training log: one CSV row and one JSON line per epoch, in the run folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class EpochLog:
    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.csv_path = out_dir / "log.csv"
        self.jsonl_path = out_dir / "log.jsonl"
        self.enabled = enabled
        self.fields = ["stage", "epoch", "lr", "loss", "seconds"]

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.jsonl_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def rows(self) -> list[dict[str, Any]]:
        if not self.jsonl_path.exists():
            return []
        return [json.loads(line) for line in self.jsonl_path.read_text().splitlines() if line.strip()]
