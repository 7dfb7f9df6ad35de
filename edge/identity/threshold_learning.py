"""The identity service while the site's own threshold is being learned (``site_similarity.py``).

Until the footage has given enough same- and different-person pairs there is no threshold to
decide with, so nothing is decided: each step's summaries are kept. Once the statistics are in,
an :class:`~edge.identity.engine.IdentityEngine` with the learned threshold and scale is made and
the kept steps are replayed into it (the engine is deterministic: the decisions are the ones it
would have made from the start with that threshold, but for the floor tracks, which are the live
tracklets' own and show a kept step the samples that came after it), and from then on it decides
as usual. The
first identities therefore come in a burst after the learning time, with every tracklet seen
meanwhile. A run that ends before then learns from what it has (and does not keep it: the next
start learns again); with no pair at all every tracklet keeps an identity of its own, said in a
warning: nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, Optional

from core.model_card import PairStatistics, SimilarityStatistics
from edge.identity.engine import IdentityEngine
from edge.identity.records import Decision, Identity, Key, TrackletSummary
from edge.identity.settings import EngineSettings
from edge.identity.site_similarity import SiteSimilarity
from edge.identity.topology import Transition

log = logging.getLogger("edge.identity.site_similarity")

PROGRESS_EVERY_S = 10.0  # scene seconds between "still learning" lines
MIN_PAIRS_FOR_SCALE = 30  # fewer different-person pairs do not measure their spread: the default scale then


class ThresholdLearning:
    """Satisfies :class:`~edge.identity.service.IdentityService`; decides nothing until the site's
    threshold is learned, then everything it kept (see the module docstring)."""

    def __init__(
        self,
        settings: EngineSettings,
        similarity: SiteSimilarity,
        settings_for: Callable[[SimilarityStatistics], EngineSettings],
        learned: Optional[Callable[[SimilarityStatistics], None]] = None,
    ):
        """``settings``: the engine's with a placeholder threshold; ``settings_for``: the engine's
        settings from learned statistics (as from a model's: camera-centered when the config
        allows); ``learned``: told the statistics once (to store them)."""
        self.settings = settings
        self.similarity = similarity
        self.settings_for = settings_for
        self.learned = learned
        self.engine: Optional[IdentityEngine] = None
        self.statistics: Optional[SimilarityStatistics] = None
        self._pending: list[tuple[float, list[TrackletSummary]]] = []
        self._said = -float("inf")
        self._refused: Optional[str] = None
        self._retry_at = 0  # different-person pairs before the statistics are computed (again)

    @property
    def cfg(self) -> EngineSettings:
        """The settings decided with: the learned ones once learned (else the placeholder's)."""
        return self.engine.cfg if self.engine is not None else self.settings

    @property
    def identities(self) -> Mapping[int, Identity]:
        return self.engine.identities if self.engine is not None else {}

    def __len__(self) -> int:
        return len(self.identities)

    def update(self, summaries: Iterable[TrackletSummary], now: float) -> list[Decision]:
        if self.engine is not None:
            return self.engine.update(summaries, now)
        self._pending.append((now, list(summaries)))
        if self.similarity.ready and len(self.similarity.diff) >= self._retry_at:
            try:
                return self._start(self.similarity.statistics())
            except ValueError as exc:  # the pairs do not separate: say it once, try again with a quarter more
                if self._refused is None:
                    log.error("matching: no threshold from this site's footage: %s", exc)
                self._refused = str(exc)
                self._retry_at = int(1.25 * len(self.similarity.diff)) + 1
        if now - self._said >= PROGRESS_EVERY_S:
            self._said = now
            log.info("matching: learning the threshold from this site's footage: %s", self.similarity.progress())
        return []

    def _start(self, stats: Optional[SimilarityStatistics]) -> list[Decision]:
        if stats is None:
            self.engine = IdentityEngine(replace(self.settings, enabled=False))
        else:
            settings = self.settings_for(stats)
            if stats["pairs_diff"] < MIN_PAIRS_FOR_SCALE:  # a spread from a handful of pairs is no unit
                settings = replace(settings, scale=EngineSettings.scale)
            self.engine = IdentityEngine(settings)
            self.statistics = stats
            used: PairStatistics = stats.get("centered", stats) if settings.centering else stats
            log.info(
                "matching: %s threshold %.3f, scale %.3f learned from this site's footage (%d different-person "
                "pairs at %.3f ± %.3f, %d same-person at %.3f ± %.3f; %.1f %% of them accepted)",
                "camera-centered" if settings.centering else "raw cosine", settings.threshold, settings.scale,
                used["pairs_diff"], used["diff_mean"], used["diff_std"], used["pairs_same"], used["same_mean"],
                used["same_std"], 100 * used["true_match_rate"],
            )  # fmt: skip
            if self.learned is not None and self.similarity.ready:  # a threshold from too few pairs is not kept
                self.learned(stats)
        self.similarity.close()
        out: list[Decision] = []
        for now, step in self._pending:
            out += self.engine.update(step, now)
        self._pending = []
        return out

    def use_transitions(self, transitions: dict[tuple[str, str], Transition]) -> None:
        """The learned engine's (a topology is only learned once the threshold is)."""
        assert self.engine is not None, "the topology is learned with a threshold"
        self.engine.use_transitions(transitions)

    def global_id(self, key: Key) -> Optional[int]:
        return self.engine.global_id(key) if self.engine is not None else None

    def take_final(self) -> list[tuple[Key, int]]:
        return self.engine.take_final() if self.engine is not None else []

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """The run ends: learn from what there is (warning that it is little), else decide nothing
        across tracklets (each its own identity, warning), then the engine's flush."""
        out: list[Decision] = []
        if self.engine is None:
            try:
                stats: Optional[SimilarityStatistics] = self.similarity.statistics()
                log.warning(
                    "matching: the run ended before enough pairs (%s): threshold from what there is, "
                    "not kept for the next start",
                    self.similarity.progress(),
                )
            except ValueError as exc:
                stats = None
                log.warning("matching: no threshold learned (%s): every tracklet keeps an identity of its own", exc)
            out = self._start(stats)
        assert self.engine is not None
        return out + self.engine.flush(now)

    def is_provisional(self, gid: int) -> bool:
        return False

    def reading(self) -> AbstractContextManager[Any]:
        return nullcontext()  # only the caller's thread changes it

    def report(self) -> dict[str, Any]:
        if self.statistics is not None:
            stats = {k: v for k, v in self.statistics.items() if k != "mean"}  # the 256 numbers stay in the store
            return {"threshold": {"from": "this site's footage", **stats}}
        return {"threshold": {"from": "this site's footage", "learning": self.similarity.progress()}}

    def close(self) -> None:
        """Nothing held."""
