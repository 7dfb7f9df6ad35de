"""``python -m edge.keys --out keys/ hub node1 node2 viewer``: CURVE key pairs for the site.

Each name gets ``<name>.key`` (public: copy it to whoever must recognise it, e.g. into the hub's
allow-list folder) and ``<name>.key_secret`` (secret: stays on its machine, mode 0600). Made with
pyzmq's ``zmq.auth.create_certificates``; existing files are never overwritten.
"""

from __future__ import annotations

import argparse
import re
import sys

from core.cli import fail
from edge.wire.curve import KeyFileError, key_id, load_public, make_keys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m edge.keys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder the key files go into")
    parser.add_argument("names", nargs="+", help="one key pair per name (letters, digits, - and _)")
    args = parser.parse_args(argv)
    for name in args.names:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            fail(f"key name {name!r}: use letters, digits, - and _ only")
    for name in args.names:
        try:
            public, secret = make_keys(args.out, name)
        except KeyFileError as exc:
            fail(str(exc))
        print(f"{name}: public {public} (id {key_id(load_public(public))}), secret {secret}")


if __name__ == "__main__":
    main()
    sys.exit(0)
