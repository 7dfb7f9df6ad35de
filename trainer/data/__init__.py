"""ReID data: dataset parsers, the synthetic generator, PK sampling, transforms and loaders."""
from trainer.data.datasets import DatasetLayoutError, ReIDData, Sample, load_dataset

__all__ = ["DatasetLayoutError", "ReIDData", "Sample", "load_dataset"]
