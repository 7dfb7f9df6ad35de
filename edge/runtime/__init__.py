"""The single-box runtime: cameras -> detection -> per-camera tracking -> ReID crops -> tracklets.

``config`` (the camera file); ``readers`` (files, streams, USB, image folders), ``source_diagnosis``
(why a source gives no frames), ``synthetic_source`` (``synthetic://``, the runtime's one import of
``sim``), ``sources`` (the capture thread); ``detector``, ``tracking`` and ``coasting`` (boxes
carried by optical flow between detections), ``tracklets``; ``build`` (what the config and the
model decide together, the identity service), ``pipeline`` (one step over all cameras),
``broadcast`` (the events a step publishes), ``capture_loop`` (``run_pipeline``); ``governor``,
``rate_watch`` and ``capacity`` (living within the compute the box has, ``core.cpu_budget``);
``outputs``, ``preview``, ``floor_map``, ``stats``, ``watchdog``, ``types`` (the plain data
between stages).
Identities across cameras are ``edge.identity``'s; what leaves the box is ``edge.wire``'s.
"""
