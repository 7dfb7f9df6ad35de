"""Edge runtime: cameras -> detection -> per-camera tracking -> ReID -> cross-camera identities -> ZeroMQ.

Rooms: ``runtime/`` (the single box's pipeline), ``identity/`` (one person, one global id),
``reid/`` (the ReID backends), ``wire/`` (events, recordings, the site protocol, CURVE keys),
``site/`` (hub and nodes), ``view/`` (the operator's page). The modules at this level are the
command lines: ``python -m edge.run`` (the pipeline), ``edge.listen`` (print or record events),
``edge.hub`` (the site hub), ``edge.keys`` (CURVE key pairs), ``edge.calibrate`` (check a floor
calibration), ``edge.evaluate`` (multi-camera tracking scores), ``edge.view`` (the page).
The synthetic world the demo runs on is ``python -m sim``.
"""
