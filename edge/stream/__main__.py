"""``python -m edge.stream server | hub | publish``: the site on NATS JetStream (docs/site.md).

    python -m edge.stream server --store runs/nats [--cluster 3] [--port 4222]
    python -m edge.stream hub --config hub.yaml --region hall --servers nats://127.0.0.1:4222 [--name hub-a]
    python -m edge.stream publish --log day1.jsonl.gz --region hall --node node1 --servers nats://127.0.0.1:4222
    python -m edge.stream demo [--frames 300]     # all of it on this machine, one hub killed midway

``server`` runs the real nats-server binary (one, or a cluster on loopback) until Ctrl-C.
``hub`` runs a region's hub (the active one, or a standby when another holds the lease) with the
hub YAML's model and matching. ``publish`` sends a tracklet log (``outputs.tracklet_log``) into a
region's stream as a node would, at the pace it was recorded (``--pace``) or at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import time
import uuid

from core.cli import fail, setup_console_logging, stop_on_signals

log = logging.getLogger("edge.stream")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m edge.stream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run nats-server (JetStream) on loopback")
    server.add_argument("--store", required=True, help="folder for the streams' files")
    server.add_argument("--port", type=int, default=4222)
    server.add_argument("--cluster", type=int, default=1, help="servers in the cluster (ports --port, +1, ...)")
    hub = sub.add_parser("hub", help="a region's hub (active or standby)")
    hub.add_argument("--config", required=True, help="hub YAML (reid_model, matching; see configs/site.demo/hub.yaml)")
    _stream_args(hub)
    hub.add_argument("--name", default=None, help="this hub's name (default: host and a random suffix)")
    hub.add_argument("--lease-s", type=float, default=None, help="an active hub silent this long is replaced (2)")
    hub.add_argument(
        "--checkpoint-every", type=float, default=30.0,
        help="seconds between the active hub's checkpoints, what a starting hub continues from (0: never)",
    )  # fmt: skip
    hub.add_argument(
        "--hand-over", action="append", default=[], metavar="REGION:CAMERA[,CAMERA]",
        help="people leaving through these cameras are handed to that region's hubs (repeat per region)",
    )  # fmt: skip
    hub.add_argument("--id-base", type=int, default=0, help="this region's ids start above this (ranges apart)")
    hub.add_argument(
        "--node-timeout-s", type=float, default=None,
        help="a node session silent this long without bye has its tracklets ended; in lockstep, a listed node "
        "never heard this long while the others' steps wait is said absent (900; 0: never)",
    )  # fmt: skip
    hub.add_argument("--report", default=None, help="write the final stats as JSON here")
    hub.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the hub YAML, e.g. publisher.endpoint=...")
    publish = sub.add_parser("publish", help="send a tracklet log into a region's stream as a node")
    publish.add_argument("--log", required=True, help="a tracklet log (outputs.tracklet_log of edge.run)")
    publish.add_argument("--node", required=True, help="the node's name")
    publish.add_argument("--pace", type=float, default=0.0, help="seconds between messages (0: at once)")
    _stream_args(publish)
    demo = sub.add_parser("demo", help="a local server, two hubs (one killed midway) and a demo node")
    demo.add_argument("--out", default="runs/stream_demo", help="logs and the server's files (replaced)")
    demo.add_argument("--frames", type=int, default=None, help="frames per camera (default: all)")
    demo.add_argument("--kill-after", type=int, default=20, help="hub-a is killed once this many steps are published")
    args = parser.parse_args(argv)
    setup_console_logging()
    return {"server": _server, "hub": _hub, "publish": _publish, "demo": _demo}[args.command](args)


def _demo(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from edge.stream.demo import run_demo

    try:
        return run_demo(Path(args.out), args.frames, args.kill_after)
    except (TimeoutError, RuntimeError, subprocess.TimeoutExpired) as exc:
        fail(str(exc))


def _stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", required=True, help="the region (cameras people walk between)")
    p.add_argument("--servers", required=True, help="comma-separated NATS URLs")
    p.add_argument("--replicas", type=int, default=1, help="copies of each stream (3 on a 3-server cluster)")


def _server(args: argparse.Namespace) -> dict:
    from edge.stream.server import NatsServer, ServerError, cluster

    servers = cluster(args.cluster, args.port, args.store) if args.cluster > 1 else [NatsServer(args.port, args.store)]
    stop = stop_on_signals()
    try:
        for s in servers:
            s.start()
    except ServerError as exc:
        for s in servers:
            s.stop()
        fail(str(exc))
    print("nats-server with JetStream: " + ",".join(s.url for s in servers), flush=True)
    stop.wait()
    for s in servers:
        s.stop()
    return {"servers": [s.url for s in servers]}


# hub YAML keys of edge.hub's own transport and state, which a region hub does not read
EDGE_HUB_ONLY = frozenset(
    {"bind", "curve", "insecure", "store", "heartbeat_s", "node_timeout_s", "absent_after_s", "stats_interval_s"}
)


def _hub(args: argparse.Namespace) -> dict:
    from core.configio import ConfigError
    from core.model_card import read_onnx_metadata
    from edge.identity.settings import settings_from_config
    from edge.site.hub_config import load_hub_config
    from edge.stream.handover import parse_hand_over
    from edge.stream.names import LEASE_S, Region
    from edge.stream.region_hub import HubRefused, RegionHub
    from edge.stream.region_steps import GallerySettings
    from edge.stream.silent_nodes import NODE_TIMEOUT_S
    from edge.wire.publisher import EventPublisher
    from edge.wire.site_protocol import model_id

    try:
        cfg = load_hub_config(args.config, args.overrides)
        region = Region(args.region)
        hand_over = parse_hand_over(args.hand_over)
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    if hand_over and not args.id_base:
        fail("--hand-over needs --id-base: each region founds ids in its own range (e.g. 1000000 apart)")
    meta = read_onnx_metadata(cfg.reid_model)
    if meta is None or not meta.embedding_dim:
        fail(f"{cfg.reid_model}: no clipreid-edge metadata (embedding size unknown)")
    settings = settings_from_config(cfg.matching, meta.similarity, cfg.reid_model, int(meta.embedding_dim))
    name = args.name or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    ignored = sorted(cfg.model_fields_set & EDGE_HUB_ONLY)
    if ignored:
        log.warning(
            "%s: %s %s edge.hub's: a region hub ignores %s (its nodes' silence: --node-timeout-s; its state: "
            "checkpoints in the stream)", args.config, ", ".join(ignored), "is" if len(ignored) == 1 else "are",
            "it" if len(ignored) == 1 else "them",
        )  # fmt: skip
    p = cfg.publisher
    try:
        events = (
            EventPublisher(p.endpoint, p.high_water_mark, curve=p.curve, insecure=p.insecure) if p.enabled else None
        )
    except RuntimeError as exc:  # two hubs of one machine on one hub.yaml: the second's events port is taken
        fail(f"{exc} (another hub on this machine? give this one its own publisher.endpoint=...)")
    servers, lease_s = args.servers.split(","), args.lease_s or LEASE_S
    gallery = GallerySettings(cfg.gallery_exact_below, cfg.gallery_k, cfg.gallery_approximate_above)
    hub = RegionHub(
        servers, region, settings, name, lease_s, args.replicas, events, int(meta.embedding_dim), gallery,
        args.checkpoint_every, hand_over, args.id_base, model_id(cfg.reid_model),
        NODE_TIMEOUT_S if args.node_timeout_s is None else args.node_timeout_s, cfg.lockstep,
    )  # fmt: skip
    try:
        report = hub.run(stop_on_signals())
    except HubRefused as exc:
        fail(str(exc))
    log.info("stream: hub %s stopped: %s", name, json.dumps(report))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    return report


def _publish(args: argparse.Namespace) -> dict:
    from edge.stream.names import Region
    from edge.stream.publisher import SummaryPublisher
    from edge.wire.recording import read_recording

    try:
        region = Region(args.region)
        messages = [parts for _, parts in read_recording(args.log)]
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    publisher = SummaryPublisher(
        args.servers.split(","), region, args.node, uuid.uuid4().hex[:12], replicas=args.replicas
    )
    stop = stop_on_signals()
    for i, parts in enumerate(messages):
        if stop.is_set():
            break
        publisher.send(parts)
        if args.pace:
            time.sleep(args.pace)
        if i % 200 == 0:
            log.info("stream: %d/%d messages sent, %s", i, len(messages), json.dumps(publisher.stats()))
    done = publisher.flush(timeout_s=600.0)
    stats = publisher.stats()
    publisher.close(timeout_s=0.0)
    print(json.dumps({"messages": len(messages), **stats}), flush=True)
    if not done:
        fail(f"{stats['buffered']} messages not in the stream after 10 minutes")
    return stats


if __name__ == "__main__":
    main()
    sys.exit(0)
