"""``python -m edge.hub --config hub.yaml``: the site's identity hub (see docs/site.md).

Edge nodes (``edge.run`` with a ``site:`` section) send tracklet summaries; the hub runs the
identity engine over all their cameras, tells each node its tracklets' site ids and publishes
site-wide identity events. SIGINT/SIGTERM stop it cleanly (its state is already on disk).
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys

from core.cli import fail, setup_console_logging, stop_on_signals
from core.configio import ConfigError
from core.extras import EDGE_RUNTIME, MissingExtra, require

log = logging.getLogger("edge.hub")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m edge.hub", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="hub YAML (see configs/site.demo/hub.yaml)")
    parser.add_argument("--report", default=None, help="write the final stats as JSON here")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. bind=tcp://*:5600")
    args = parser.parse_args(argv)
    setup_console_logging()
    from edge.site.hub_config import load_hub_config
    from edge.wire.curve import KeyFileError

    try:
        cfg = load_hub_config(args.config, args.overrides)
    except ConfigError as exc:
        fail(str(exc))
    try:
        require("the site hub", EDGE_RUNTIME + (("faiss", "site"),))
    except MissingExtra as exc:
        fail(str(exc))
    from edge.site.hub_service import Hub
    from edge.site.store import StoreError

    stop = stop_on_signals()
    try:
        hub = Hub(cfg)
    except StoreError as exc:  # "store: <file> ...": the field of this config file
        fail(f"{args.config}: {exc}")
    except (KeyFileError, OSError, RuntimeError, ValueError, sqlite3.Error) as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. ONNX Runtime cannot read the model: one line, the trace in debug
        log.debug("hub failed to start", exc_info=True)
        fail(f"{type(exc).__name__}: {exc}")
    report = hub.run(stop)
    log.info("hub stopped: %s", json.dumps(report))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
