"""The site level: many edge nodes, one identity space, over authenticated ZeroMQ.

``protocol.py`` (node <-> hub messages), ``keys.py`` (CURVE keys, allow-lists, the bind rule),
``config.py`` (the ``site:`` section of a camera file and the hub's YAML), ``node.py`` (an edge
node's link to the hub, standing in for the in-process identity engine), ``hub.py`` (the hub:
the identity engine over every node's cameras), ``gallery.py`` (FAISS nearest-identity search),
``store.py`` (SQLite WAL persistence). See docs/site.md.
"""
