"""The single-box runtime: cameras -> detection -> per-camera tracking -> ReID crops -> tracklets.

``config`` (the camera file), ``sources`` (files, streams, USB, ``synthetic://``), ``detector``,
``tracking`` and ``coasting`` (boxes carried by optical flow between detections), ``tracklets``,
``pipeline`` (one step over all cameras, and the capture loop), ``governor``, ``rate_watch``,
``cpu_budget`` and ``capacity`` (living within the compute the box has), ``outputs``,
``preview``, ``floor_map``, ``stats``, ``watchdog``, ``types`` (the plain data between stages).
Identities across cameras are ``edge.identity``'s; what leaves the box is ``edge.wire``'s.
"""
