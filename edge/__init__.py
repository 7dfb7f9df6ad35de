"""Edge runtime: cameras -> detection -> per-camera tracking -> ReID -> cross-camera identities -> ZeroMQ.

Entry points: ``python -m edge.run`` (the pipeline), ``python -m edge.listen`` (print events),
``python -m edge.evaluate`` (multi-camera tracking scores), ``python -m edge.world`` (the
synthetic multi-camera world and its ground truth).
"""
