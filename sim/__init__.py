"""The synthetic multi-camera world: scenes, people, rendering with exact ground truth, dataset writers.

``python -m sim`` writes its ground truth, ReID datasets and calibrations; the edge reads it live
through ``synthetic://`` sources (the one place the runtime imports this package).
"""
