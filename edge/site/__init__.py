"""The site level: many edge nodes, one identity space, over authenticated ZeroMQ.

Node side: ``node.py`` (:class:`~edge.site.node.SiteEngine`, the identity service an edge node
runs instead of its own engine), ``node_ids.py`` (site ids, outages, provisional ids),
``link.py`` (the I/O thread to the hub), ``outbox.py`` (summaries waiting for the hub). Hub side:
``hub_service.py`` (:class:`~edge.site.hub_service.Hub`: the poll loop and the engine step),
``sessions.py`` (nodes' sessions over the ROUTER socket), ``mirror.py`` (the nodes' live
tracklets), ``steps.py`` (free running or lockstep), ``persistence.py`` with ``gallery.py``
(FAISS) and ``store.py`` (SQLite WAL), ``fanout.py`` (ids to nodes, events to subscribers),
``report.py`` (the stats line). Both: ``config.py`` (the ``site:`` section), ``hub_config.py``
(the hub's YAML). The messages are :mod:`edge.wire.site_protocol`, the keys
:mod:`edge.wire.curve`. See docs/site.md.
"""
