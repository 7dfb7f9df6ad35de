"""ReID evaluation: CMC / mAP / mINP, k-reciprocal re-ranking, reports. CLI: python -m trainer.eval."""

from trainer.eval.metrics import RankResult, evaluate_rank
from trainer.eval.rerank import re_ranking

__all__ = ["RankResult", "evaluate_rank", "re_ranking"]
