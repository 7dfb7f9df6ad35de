"""A synthetic publisher of the event schema: scripted people walking past cameras, with preview
frames, crops, hand-overs between cameras and merges, on a real :class:`~edge.wire.publisher.EventPublisher`.

For the view's browser test and load benchmark, and to look at the page without the runtime:
``python -m edge.view.feed --endpoint tcp://127.0.0.1:5555 --rate 100``. Each person is a
coloured figure: a ``new`` identity in one camera (with its crop), track updates with floor
positions, then an ``assigned`` sighting in a second camera; every ``merge_every`` people, the
newest identity is merged into the one before it.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Optional

import cv2
import numpy as np

from edge.runtime.preview import crop_jpeg, preview_jpeg
from edge.wire.publisher import EventPublisher

CAMERAS = ("cam1", "cam2", "cam3")


def person_colour(gid: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(gid)
    b, g, r = (int(v) for v in rng.integers(40, 255, 3))
    return b, g, r


def draw_scene(
    camera: str, t: float, people: dict[int, tuple[float, float, float, float]], size=(640, 360)
) -> np.ndarray:
    """A camera image: floor, a moving marker (so consecutive previews differ) and the people."""
    w, h = size
    img = np.full((h, w, 3), 60, np.uint8)
    img[h // 2 :] = (70, 90, 80)
    x = int((t * 80) % w)
    cv2.circle(img, (x, 30), 12, (0, 200, 255), -1)
    cv2.putText(img, f"{camera} {t:.1f}", (10, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    for gid, (x0, y0, x1, y1) in people.items():
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), person_colour(gid), -1)
        cv2.circle(img, (int((x0 + x1) / 2), int(y0) - 8), 8, (180, 200, 230), -1)
    return img


class Feed:
    """Publishes on ``endpoint``: ``rate`` identity events per second, previews at ``preview_fps``."""

    def __init__(
        self,
        endpoint: str,
        rate: float = 2.0,
        preview_fps: float = 2.0,
        merge_every: int = 5,
        cameras: tuple[str, ...] = CAMERAS,
        crops: bool = True,
        stats_every_s: float = 1.0,
    ):
        self.publisher = EventPublisher(endpoint, high_water_mark=100000)
        self.rate, self.preview_fps, self.merge_every = rate, preview_fps, merge_every
        self.cameras, self.crops, self.stats_every_s = cameras, crops, stats_every_s
        self.stop = threading.Event()
        self.next_gid = 1
        self.next_local = {c: 1 for c in cameras}
        self.visible: dict[str, dict[int, tuple]] = {c: {} for c in cameras}  # camera -> gid -> (box, local id, floor)
        self.published = {"identity": 0, "frame": 0, "merged": 0}
        self.paused_cameras: set[str] = set()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> Feed:
        self._thread = threading.Thread(target=self.run, name="feed", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.publisher.close()

    def _identity(self, kind: str, gid: int, camera: str, now: float, cameras: list[str]) -> None:
        local = self.next_local[camera]
        self.next_local[camera] += 1
        slot = gid % 5
        box = (40.0 + 110 * slot, 150.0, 90.0 + 110 * slot, 300.0)
        floor = (2.0 * slot + (0 if camera == "cam1" else 12), 3.0 + self.cameras.index(camera))
        self.visible[camera] = dict(list(self.visible[camera].items())[-4:])
        self.visible[camera][gid] = (box, local, floor)
        jpeg = None
        if self.crops:
            img = draw_scene(camera, now, {gid: box})
            jpeg = crop_jpeg(img, box, 128, 16000)
        header = {
            "event": kind,
            "global_id": gid,
            "cameras": cameras,
            "last_seen": now,
            "camera": camera,
            "local_id": local,
            "bbox": list(box),
            "score": 0.9,
            "capture_ts": now,
            "frame": int(now * 10),
        }
        self.publisher.publish(f"identity/{gid}", header, jpeg=jpeg)
        self.publisher.publish(
            f"track/{camera}",
            {
                "event": "update",
                "camera": camera,
                "local_id": local,
                "global_id": gid,
                "bbox": list(box),
                "score": 0.9,
                "capture_ts": now,
                "frame": int(now * 10),
                "floor": [floor[0], floor[1]],
            },
        )
        self.published["identity"] += 1

    def person(self, now: float) -> None:
        """One more person: new in one camera, then seen in a second one; some get merged."""
        gid = self.next_gid
        self.next_gid += 1
        first = self.cameras[gid % len(self.cameras)]
        second = self.cameras[(gid + 1) % len(self.cameras)]
        self._identity("new", gid, first, now, [first])
        self._identity("assigned", gid, second, now + 0.01, sorted({first, second}))
        if self.merge_every and gid % self.merge_every == 0 and gid > 1:
            self.publisher.publish(
                f"identity/{gid - 1}",
                {
                    "event": "merged",
                    "global_id": gid - 1,
                    "from": gid,
                    "into": gid - 1,
                    "cameras": sorted(set(self.cameras)),
                    "last_seen": now,
                },
            )
            self.published["merged"] += 1

    def frames(self, now: float) -> None:
        for camera in self.cameras:
            if camera in self.paused_cameras:
                continue
            people = {gid: box for gid, (box, _, _) in self.visible[camera].items()}
            jpeg, scale = preview_jpeg(draw_scene(camera, now, people), 320, 70)
            boxes = [
                [*(round(v * scale, 1) for v in box), local, gid]
                for gid, (box, local, _) in self.visible[camera].items()
            ]
            self.publisher.publish(
                f"frame/{camera}",
                {
                    "event": "frame",
                    "camera": camera,
                    "frame": int(now * 10),
                    "capture_ts": now,
                    "width": 320,
                    "height": 180,
                    "scale": scale,
                    "boxes": boxes,
                },
                jpeg=jpeg,
            )
            self.published["frame"] += 1

    def stats(self, now: float) -> None:
        lat = {
            s: {"p50": 1.0 + i, "p95": 2.0 + i, "p99": 3.0 + i, "mean": 1.5 + i}
            for i, s in enumerate(("decode", "detect", "track", "embed", "match", "publish"))
        }
        down = {c: 30.0 for c in self.paused_cameras}
        self.publisher.publish(
            "stats",
            {
                "event": "stats",
                "fps": {c: 10.0 for c in self.cameras if c not in self.paused_cameras},
                "latency_ms": lat,
                "end_to_end_ms": {"p50": 40.0, "p95": 60.0, "p99": 80.0, "mean": 45.0},
                "dropped": {c: 0 for c in self.cameras},
                "down": down,
                "events_dropped": self.publisher.dropped,
                "gallery": self.next_gid - 1,
            },
        )

    def run(self) -> None:
        t0 = time.monotonic()
        people = frames = stats = 0
        while not self.stop.is_set():
            elapsed = time.monotonic() - t0
            now = time.time()
            # two identity events per person: rate events/s -> rate/2 people/s
            while people < elapsed * self.rate / 2:
                self.person(now)
                people += 1
            while self.preview_fps and frames < elapsed * self.preview_fps:
                self.frames(now)
                frames += 1
            while stats < elapsed / self.stats_every_s:
                self.stats(now)
                stats += 1
            self.stop.wait(0.01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.view.feed", description=__doc__)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--rate", type=float, default=2.0, help="identity events per second")
    parser.add_argument("--preview-fps", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: until Ctrl-C)")
    args = parser.parse_args(argv)
    feed = Feed(args.endpoint, args.rate, args.preview_fps).start()
    try:
        if args.duration:
            time.sleep(args.duration)
        else:
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
    print(feed.published)


if __name__ == "__main__":
    main()
