"""``python -m edge.listen --endpoint tcp://127.0.0.1:5555 [--topic identity]``: print events."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import zmq


def decode(parts: list[bytes]) -> tuple[str, dict, np.ndarray | None]:
    """A multipart event -> (topic, header, embedding or None)."""
    topic = parts[0].decode()
    header = json.loads(parts[1])
    embedding = np.frombuffer(parts[2], "<f2") if len(parts) > 2 else None
    return topic, header, embedding


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.listen", description=__doc__)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--topic", action="append", default=None, help="topic prefix (repeatable); default: everything")
    parser.add_argument("--count", type=int, default=0, help="exit after this many messages (0: run until Ctrl-C)")
    args = parser.parse_args(argv)
    context = zmq.Context.instance()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(args.endpoint)
    for topic in args.topic or [""]:
        sock.setsockopt_string(zmq.SUBSCRIBE, topic)
    seen = 0
    try:
        while True:
            topic, header, emb = decode(sock.recv_multipart())
            extra = f" embedding[{len(emb)}]" if emb is not None else ""
            print(f"{topic} {json.dumps(header)}{extra}", flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
