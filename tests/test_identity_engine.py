"""The identity engine's rules, each with a known answer: appearance + Hungarian, continuity inside a
camera, the floor (same place / two people / walking speed), revisions (merge, reassign), finality,
expiry, the threshold that comes with the model, and calibration errors."""

import typing

import numpy as np
import pytest

from core.embeddings import Embeddings
from edge.identity import (
    CalibrationError,
    EngineSettings,
    FloorRules,
    FloorTrack,
    IdentityEngine,
    TrackletSummary,
    cluster_offline,
    floor_evidence,
    settings_from_config,
)
from edge.identity.config import MatchingConfig
from edge.identity.geometry import check_matrix, solve_homography
from edge.identity.records import DecisionKind, Identity
from edge.identity.rules import FORBIDDEN
from edge.identity.topology import Transition


def unit(*v):
    v = np.asarray(v + (0.0,) * (4 - len(v)), np.float32)
    return v / np.linalg.norm(v)


def with_cos(base, cos, other_axis=1):
    """A unit vector whose cosine with unit vector ``base`` (along axis 0) is ``cos``."""
    v = np.zeros(4, np.float32)
    v[0], v[other_axis] = cos, np.sqrt(1 - cos**2)
    return v


def summary(
    cam, local, vec, first, last, box=(100, 100, 140, 200), end_box=None, floor=None, ended=False, n=3, weight=3.0
):
    emb = None if vec is None else Embeddings(np.asarray(vec, np.float32)[None])
    track = None
    if floor is not None:  # floor: list of (t, x, y)
        track = FloorTrack()
        for t, x, y in floor:
            track.add(t, np.array([x, y]))
    return TrackletSummary(
        cam,
        local,
        first,
        last,
        emb,
        n,
        weight,
        np.array(box, float),
        np.array(end_box if end_box is not None else box, float),
        track,
        ended,
    )


def engine(**kw):
    return IdentityEngine(EngineSettings(**{"threshold": 0.8, "scale": 0.1, **kw}))


def kinds(decisions):
    return [(d.kind, d.key, d.global_id, d.previous) for d in decisions]


def test_hungarian_assignment_threshold_and_same_camera_constraint():
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 1), summary("cam1", 2, unit(0, 1), 0, 1)], 1.0)
    ga, gb = e.global_id(("cam1", 1)), e.global_id(("cam1", 2))
    assert ga != gb
    # cam2 sees both; greedy would give both the identity of a (x is closer to a than to b)
    out = e.update([summary("cam2", 1, unit(1, 0.3), 2, 3), summary("cam2", 2, unit(0.2, 1), 2, 3)], 3.0)
    assert {d.key: (d.kind, d.global_id) for d in out} == {("cam2", 1): ("assigned", ga), ("cam2", 2): ("assigned", gb)}
    # cam1 saw a twin at the same time as a: two people, whatever the appearance
    out = e.update([summary("cam1", 3, unit(1), 0.5, 4)], 4.0)
    assert out[0].kind == "new" and out[0].global_id not in (ga, gb)
    # below the threshold: new identity
    assert e.update([summary("cam3", 1, unit(0, 0, 1), 4, 5)], 5.0)[0].kind == "new"


def test_tracker_break_relinks_to_the_same_person_not_to_a_look_alike():
    """cam1's person is last seen at t=5; a new cam1 tracklet starts at t=6 next to where they
    were. Appearance alone prefers the cam2 identity (cos 0.72 vs 0.69, both above 0.6), the
    continuity bonus decides for the cam1 person; the same break far across the image does not."""
    new_vec = unit(0.82, 0, 0.86)
    for box, expected in (((110, 100, 150, 200), ("cam1", 1)), ((500, 100, 540, 200), ("cam2", 1))):
        e = engine(threshold=0.6)
        e.update(
            [summary("cam1", 1, unit(1), 0, 5, box=(100, 100, 140, 200)), summary("cam2", 1, unit(0, 0, 1), 0, 5)], 5.0
        )
        out = e.update([summary("cam1", 2, new_vec, 6, 7, box=box)], 7.0)
        assert out[0].kind == "assigned" and out[0].global_id == e.global_id(expected)


def test_continuity_is_about_observed_time_not_tracker_state():
    """A lost (not ended) tracklet last seen before the new one started may be continued; one
    still seen when the new one started may not."""
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 5)], 5.0)  # lost after t=5, never ended
    out = e.update([summary("cam1", 2, unit(1), 6, 7, box=(105, 100, 145, 200))], 7.0)
    assert kinds(out) == [("assigned", ("cam1", 2), 1, None)]
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 6.5)], 6.5)
    assert e.update([summary("cam1", 2, unit(1), 6, 7)], 7.0)[0].kind == "new"


def test_floor_same_place_same_time_joins_far_apart_forbids():
    walk = [(t / 10, 5 + t / 10, 3.0) for t in range(30)]
    e = engine(floor_weight=2.0)
    e.update([summary("cam1", 1, unit(1), 0, 2.9, floor=walk)], 2.9)
    # appearance below the threshold (cos 0.75: -0.5 units) but the same place at the same time (+2)
    same = [(t, x + 0.2, y) for t, x, y in walk]
    out = e.update([summary("cam2", 1, with_cos(unit(1), 0.75), 0, 2.9, floor=same)], 2.9)
    assert out[0].kind == "assigned" and out[0].global_id == 1
    # identical appearance, but 3 m away at the same time: two people
    far = [(t, x, y + 3.0) for t, x, y in walk]
    out = e.update([summary("cam2", 2, unit(1), 0, 2.9, floor=far)], 2.9)
    assert out[0].kind == "new"


def test_appearance_veto_overrides_floor_and_continuity():
    """The same place at the same time (+2) and a tracker break at the same spot (+1) outweigh an
    appearance 2.5 units below the threshold (cos 0.55 at threshold 0.8); with ``appearance_veto``
    at 2 units, that pair is forbidden and the tracklet founds its own identity; an appearance 1.5
    units below still joins (the veto only removes clear mismatches)."""
    walk = [(t / 10, 5 + t / 10, 3.0) for t in range(60)]  # 0 .. 5.9 s, seen by cam2 throughout
    for veto, cos, expected in ((None, 0.55, "assigned"), (2.0, 0.55, "new"), (2.0, 0.65, "assigned")):
        e = engine(floor_weight=2.0, appearance_veto=veto)
        e.update(
            [
                summary("cam1", 1, unit(1), 0, 2.9, floor=walk[:30]),
                summary("cam2", 1, unit(1), 0, 2.9, floor=walk[:30]),
            ],
            2.9,
        )
        # cam1's track breaks at 2.9 s; the new cam1 track goes on where cam2 still sees the person
        out = e.update(
            [
                summary("cam1", 2, with_cos(unit(1), cos), 3.0, 5.9, box=(105, 100, 145, 200), floor=walk[30:]),
                summary("cam2", 1, unit(1), 0, 5.9, floor=walk),
            ],
            5.9,
        )
        out = [d for d in out if d.key == ("cam1", 2)]
        assert out[0].kind == expected, (veto, cos, kinds(out))


def test_floor_evidence_known_answers():
    rules = FloorRules(near_m=0.8, far_m=2.0, max_speed_mps=3.0, slack_m=1.0)

    def track(points):
        t = FloorTrack()
        for p in points:
            t.add(p[0], np.array(p[1:]))
        return t

    a = track([(i, 0.0, 0.0) for i in range(5)])
    assert floor_evidence(a, track([(i, 0.5, 0.0) for i in range(5)]), rules) == (False, 1.0)
    assert floor_evidence(a, track([(i, 1.4, 0.0) for i in range(5)]), rules) == (False, pytest.approx(0.0))
    assert floor_evidence(a, track([(i, 2.5, 0.0) for i in range(5)]), rules) == (True, -1.0)
    # apart in time: 10 m in 2 s is too fast (3 m/s * 2 s + 1 m slack = 7 m), in 4 s it is a walk
    assert floor_evidence(a, track([(6, 10.0, 0.0), (7, 10.0, 0.0)]), rules)[0] is True
    assert floor_evidence(a, track([(8, 10.0, 0.0), (9, 10.0, 0.0)]), rules) == (False, 0.0)


def test_walking_speed_bounds_a_transition_between_cameras():
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 5, floor=[(4.5, 10, 4), (5, 11, 4)], ended=True)], 5.0)
    out = e.update([summary("cam3", 1, unit(1), 6, 7, floor=[(6, 30, 4), (7, 29, 4)])], 7.0)  # 19 m in 1 s
    assert out[0].kind == "new"
    out = e.update([summary("cam3", 2, unit(1), 14, 15, floor=[(14, 21, 4), (15, 22, 4)])], 15.0)  # 10 m in 9 s
    assert out[0].kind == "assigned" and out[0].global_id == 1


def test_two_identities_of_one_person_are_merged_when_evidence_grows():
    """cam1 and cam3 found two identities from weak evidence; the person's later tracklets fit
    both: the revision merges the younger into the older and says so."""
    e = engine(threshold=0.9, merge_margin=0.5, revise_every_s=1.0)
    e.update([summary("cam1", 1, unit(1, 0.5), 0, 5, ended=True)], 5.0)
    out = e.update([summary("cam3", 1, unit(1, -0.5), 20, 25)], 25.0)  # cos 0.6 with the first: new
    assert out[0].kind == "new" and out[0].global_id == 2
    # more evidence: both appearances converge on the same person
    out = e.update(
        [
            summary("cam1", 1, unit(1, 0.05), 0, 5, ended=True, weight=30),
            summary("cam3", 1, unit(1, -0.05), 20, 27, weight=30),
        ],
        27.0,
    )
    assert ("merged", None, 1, 2) in kinds(out)
    assert e.global_id(("cam1", 1)) == e.global_id(("cam3", 1)) == 1 and 2 not in e.identities


def test_the_end_of_a_run_revises_once_more_before_everything_is_final():
    """The converging evidence arrives in the last update, before the next revision is due: flush
    with the end time still merges the two identities (and says so); flush without a time does not."""
    for now, merged in ((27.5, True), (None, False)):
        e = engine(threshold=0.9, merge_margin=0.5, revise_every_s=10.0)
        e.update([summary("cam1", 1, unit(1, 0.5), 0, 5, ended=True)], 5.0)
        e.update([summary("cam3", 1, unit(1, -0.5), 20, 25)], 25.0)
        out = e.update(
            [
                summary("cam1", 1, unit(1, 0.05), 0, 5, ended=True, weight=30),
                summary("cam3", 1, unit(1, -0.05), 20, 27, weight=30, ended=True),
            ],
            27.0,
        )
        assert "merged" not in [d.kind for d in out]
        last = e.flush(now)
        assert (("merged", None, 1, 2) in kinds(last)) is merged
        finals = dict(e.take_final())
        assert (finals[("cam1", 1)] == finals[("cam3", 1)]) is merged


def test_overlapping_views_waiting_together_both_join_the_known_person():
    """Person 1 was seen in cam3; later cam1 and cam2 (overlapping views) see them at the same
    time and both tracklets wait in one round. Hungarian gives identity 1 one of them; the other
    still joins it (not a new identity), while a stranger in that round founds one."""
    e = engine(threshold=0.8)
    e.update([summary("cam3", 1, unit(1), 0, 5, ended=True)], 5.0)
    out = e.update(
        [
            summary("cam1", 1, unit(1, 0.1), 20, 22),
            summary("cam2", 1, unit(1, 0.15), 20, 22),
            summary("cam1", 2, unit(0, 0, 1), 20, 22, box=(400, 100, 440, 200)),
        ],
        22.0,
    )
    assert e.global_id(("cam1", 1)) == e.global_id(("cam2", 1)) == 1
    assert e.global_id(("cam1", 2)) == 2 and sorted(d.kind for d in out) == ["assigned", "assigned", "new"]


def test_a_flicker_gets_an_identity_nothing_joins():
    """A tracklet that ended after one crop (a flicker, a false detection) founds an identity of
    its own even when it looks like a known person, and a later tracklet that looks even more like
    the flicker than like the person still joins the person; the flicker is never merged."""
    e = engine(threshold=0.8, min_embeddings=2, merge_margin=0.0)
    e.update([summary("cam1", 1, unit(1), 0, 5, n=5)], 5.0)
    out = e.update([summary("cam3", 9, unit(1, 0.05), 6, 6, n=1, ended=True)], 6.0)
    assert kinds(out) == [("new", ("cam3", 9), 2, None)] and e.identities[2].sealed
    out = e.update([summary("cam2", 1, unit(1, 0.1), 10, 12, n=5)], 12.0)
    assert kinds(out) == [("assigned", ("cam2", 1), 1, None)]
    assert "merged" not in [d.kind for d in e.update([], 14.0) + e.flush(14.0)]
    assert dict(e.take_final())[("cam3", 9)] == 2


def test_a_short_fragment_that_continues_a_track_in_its_camera_joins_that_identity():
    """The box can't keep up: the tracker lost the person and found them again for a moment, too
    briefly for a second crop. Picking up where their track ended (same camera, 0.4 s later, a
    few pixels on) it joins their identity; a fragment elsewhere in the image, or one that two
    identities' tracks could have led to, founds a sealed identity as before."""
    e = engine(threshold=0.8, min_embeddings=2)
    e.update([summary("cam1", 1, unit(1), 0, 5, box=(100, 100, 140, 200), ended=True, n=5)], 5.0)
    out = e.update([summary("cam1", 2, None, 5.4, 6.0, box=(106, 100, 146, 200), n=0, ended=True)], 6.0)
    assert kinds(out) == [("assigned", ("cam1", 2), 1, None)] and not e.identities[1].sealed
    out = e.update([summary("cam1", 3, None, 6.4, 7.0, box=(500, 100, 540, 200), n=1, ended=True)], 7.0)
    assert kinds(out) == [("new", ("cam1", 3), 2, None)] and e.identities[2].sealed
    # someone else steps in where the person left: one crop is too few to match by, not to refuse
    out = e.update([summary("cam1", 4, unit(0, 0, 1), 6.3, 6.6, box=(110, 100, 150, 200), n=1, ended=True)], 7.0)
    assert kinds(out) == [("new", ("cam1", 4), 3, None)] and e.identities[3].sealed
    two = engine(threshold=0.8, min_embeddings=2)
    two.update(
        [
            summary("cam1", 1, unit(1), 0, 5, box=(100, 100, 140, 200), ended=True, n=5),
            summary("cam1", 2, unit(0, 1), 0, 5, box=(112, 100, 152, 200), ended=True, n=5),
        ],
        5.0,
    )
    out = two.update([summary("cam1", 3, None, 5.4, 6.0, box=(106, 100, 146, 200), n=1, ended=True)], 6.0)
    assert kinds(out) == [("new", ("cam1", 3), 3, None)]  # either person could have been it


def test_a_short_fragment_takes_the_identity_of_the_track_that_picks_it_up():
    """The tracker lost a known person (identity 1, seen in cam2) and found them again in cam1 for a
    moment: too briefly to match, so the fragment founds a sealed identity. Their next track picks up
    where the fragment ended and joins identity 1 by appearance; at the revision the fragment folds
    into identity 1 too. A fragment picked up by a track that clearly looks like someone else, or
    that two tracks could continue, stays sealed."""
    e = engine(threshold=0.8, min_embeddings=2)
    e.update([summary("cam2", 1, unit(1), 0, 5, ended=True, n=5)], 5.0)
    out = e.update([summary("cam1", 1, unit(1, 0.1), 8.0, 8.4, box=(100, 100, 140, 200), n=1, ended=True)], 8.5)
    assert kinds(out) == [("new", ("cam1", 1), 2, None)] and e.identities[2].sealed
    out = e.update([summary("cam1", 2, unit(1, 0.05), 8.8, 10.0, box=(108, 100, 148, 200), n=4)], 10.0)
    assert ("assigned", ("cam1", 2), 1, None) in kinds(out) and ("merged", None, 1, 2) in kinds(out)
    assert e.global_id(("cam1", 1)) == 1 and 2 not in e.identities

    other = engine(threshold=0.8, min_embeddings=2)
    other.update([summary("cam2", 1, unit(1), 0, 5, ended=True, n=5)], 5.0)
    other.update([summary("cam1", 1, unit(0, 0, 1), 8.0, 8.4, box=(100, 100, 140, 200), n=1, ended=True)], 8.5)
    out = other.update([summary("cam1", 2, unit(1, 0.05), 8.8, 10.0, box=(108, 100, 148, 200), n=4)], 10.0)
    assert "merged" not in [d.kind for d in out] and other.global_id(("cam1", 1)) == 2  # its one crop is someone else

    two = engine(threshold=0.8, min_embeddings=2)
    two.update(
        [summary("cam2", 1, unit(1), 0, 5, ended=True, n=5), summary("cam2", 2, unit(0, 1), 0, 5, ended=True, n=5)], 5.0
    )
    two.update([summary("cam1", 1, None, 8.0, 8.4, box=(100, 100, 140, 200), n=0, ended=True)], 8.5)
    out = two.update(
        [
            summary("cam1", 2, unit(1), 8.8, 10.0, box=(108, 100, 148, 200), n=4),
            summary("cam1", 3, unit(0, 1), 8.7, 10.0, box=(96, 100, 136, 200), n=4),
        ],
        10.0,
    )
    assert "merged" not in [d.kind for d in out] and two.identities[two.global_id(("cam1", 1))].sealed


def test_wrongly_assigned_tracklet_is_reassigned():
    e = engine(threshold=0.8, reassign_margin=1.0)
    e.update([summary("cam1", 1, unit(1), 0, 10), summary("cam1", 2, unit(0, 0, 1), 0, 10)], 10.0)
    # a cam2 tracklet first looks like person 1 ...
    e.update([summary("cam2", 7, unit(1, 0, 0.2), 11, 12)], 12.0)
    assert e.global_id(("cam2", 7)) == 1
    # ... its evidence then says person 2
    out = e.update([summary("cam2", 7, unit(0.1, 0, 1), 11, 14, n=12, weight=12)], 14.0)
    assert ("reassigned", ("cam2", 7), 2, 1) in kinds(out) and e.global_id(("cam2", 7)) == 2


def test_a_tracklet_that_still_fits_its_identity_moves_when_another_fits_it_much_better():
    """Person 1 is e0, person 2 is at cosine 0.6 from them. A cam2 tracklet first looks like
    person 1; with more crops it is 0.81 from person 1 (evidence +0.1: it still fits) and 0.95 from
    person 2 (+1.5): better by more than the margin, so it moves."""
    e = engine(threshold=0.8, reassign_margin=1.0)
    p2 = unit(0.6, 0.8)
    e.update([summary("cam1", 1, unit(1), 0, 10), summary("cam1", 2, p2, 0, 10, box=(400, 100, 440, 200))], 10.0)
    e.update([summary("cam2", 7, unit(1, 0.2), 11, 12)], 12.0)
    assert e.global_id(("cam2", 7)) == 1
    later = np.array([0.81, 0.58, np.sqrt(1 - 0.81**2 - 0.58**2), 0], np.float32)
    out = e.update([summary("cam2", 7, later, 11, 14, n=12, weight=12)], 14.0)
    assert ("reassigned", ("cam2", 7), 2, 1) in kinds(out)


def test_the_revision_pass_scores_only_identities_within_reach():
    """The move above, among 300 other people in the gallery: the same decision, while the full
    score (every rule) is computed only for identities whose appearance leaves them in reach."""
    rng = np.random.default_rng(0)
    dim = 64

    def vec(*head):
        v = np.zeros(dim, np.float32)
        v[: len(head)] = head
        return v / np.linalg.norm(v)

    e = engine(threshold=0.8, reassign_margin=1.0)
    crowd = rng.normal(size=(300, dim)).astype(np.float32)
    crowd[:, :3] = 0  # strangers: nowhere near persons 1 and 2
    e.update([summary("cam4", 100 + i, v / np.linalg.norm(v), 0, 1, ended=True) for i, v in enumerate(crowd)], 1.0)
    e.update(
        [summary("cam1", 1, vec(1), 0, 10), summary("cam1", 2, vec(0.6, 0.8), 0, 10, box=(400, 100, 440, 200))], 10.0
    )
    e.update([summary("cam2", 7, vec(1, 0.2), 11, 12)], 12.0)
    person1, person2 = e.global_id(("cam1", 1)), e.global_id(("cam1", 2))
    assert e.global_id(("cam2", 7)) == person1
    calls = []
    full_score = e.score
    e.score = lambda *a, **k: calls.append(a[1].global_id) or full_score(*a, **k)
    out = e.update([summary("cam2", 7, vec(0.81, 0.58, np.sqrt(1 - 0.81**2 - 0.58**2)), 11, 14, n=12, weight=12)], 14.0)
    assert ("reassigned", ("cam2", 7), person2, person1) in kinds(out)
    assert len(e.identities) > 300 and len(calls) < 10


def test_a_lost_track_that_comes_back_beside_its_successor_is_split_off():
    """cam1 track 1 was relinked to track 2; then the tracker finds track 1 again while track 2 is
    still there: one camera sees the identity twice, so the weaker tracklet gets its own identity."""
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 5)], 5.0)
    e.update([summary("cam1", 2, unit(1), 6, 7, box=(105, 100, 145, 200), weight=5)], 7.0)
    assert e.global_id(("cam1", 2)) == 1
    out = e.update([summary("cam1", 1, unit(1), 0, 8, weight=1), summary("cam1", 2, unit(1), 6, 8, weight=5)], 8.0)
    assert [d.kind for d in out] == ["reassigned"] and out[0].key == ("cam1", 1) and out[0].previous == 1
    assert e.global_id(("cam1", 1)) != e.global_id(("cam1", 2))


def test_decisions_become_final_after_the_window_and_identities_expire():
    e = engine(revision_window_s=10.0, identity_ttl_s=20.0)
    e.update([summary("cam1", 1, unit(1), 0, 5)], 5.0)
    e.update([summary("cam1", 1, unit(1), 0, 5, ended=True)], 6.0)
    assert e.take_final() == []
    e.update([], 16.0)
    assert e.take_final() == [(("cam1", 1), 1)] and not e.records
    assert e.update([], 24.0) == []
    out = e.update([], 26.0)
    assert kinds(out) == [("expired", None, 1, None)] and out[0].cameras == ("cam1",) and len(e) == 0


def test_gallery_bound_forgets_the_longest_unseen_first():
    e = engine(max_identities=2, revision_window_s=0.0)
    for i, vec in enumerate([unit(1), unit(0, 1), unit(0, 0, 1)]):
        e.update([summary(f"cam{i}", 1, vec, i, i + 0.5, ended=True)], i + 1.0)
    assert sorted(e.identities) == [2, 3]


def test_expiry_from_the_idle_heap_misses_no_identity_and_forgets_the_oldest_first():
    """Many people come, go, return and are handed in: after every step no identity without
    tracklets is past its time to live, the bound holds, and what the bound forgets is older than
    what it keeps (what scanning every identity each step gave)."""
    rng = np.random.default_rng(3)
    e = engine(revision_window_s=2.0, identity_ttl_s=15.0, max_identities=12, threshold=0.95)
    looks = [unit(*rng.normal(size=4)) for _ in range(30)]
    local, expired = 0, []
    for step in range(200):
        now = float(step)
        batch = []
        for _ in range(int(rng.integers(0, 3))):
            local += 1
            person = int(rng.integers(0, 30))
            batch.append(summary(f"cam{local % 3}", local, looks[person], now - 1.5, now, ended=True))
        if step % 37 == 5:  # a neighbour's person, idle here from the start
            e.welcome(Identity(10_000 + step, now, now - 3.0, "camX", {"camX"}, past=Embeddings(looks[0][None])))
        out = e.update(batch, now)
        gone = [d for d in out if d.kind == "expired"]
        kept_idle = [i for i in e.identities.values() if not i.members]
        assert all(now - i.last_seen <= 15.0 for i in kept_idle), f"step {step}: an idle identity outlived its ttl"
        assert len(e.identities) <= 12 + len([i for i in e.identities.values() if i.members])
        expired += gone
        assert not ({d.global_id for d in gone} & set(e.identities))
    assert len(expired) > 20 and any(d.global_id >= 10_000 for d in expired)


class Uncached(IdentityEngine):
    """The engine computing every appearance afresh each time it is asked (the reference for its caches)."""

    def appearance(self, ident, without=None):
        self._appearance_cache.clear()
        self._past_looks.clear()
        return super().appearance(ident, without)


def test_the_appearance_caches_change_no_decision():
    """Look-alike people (noisy sightings of 12 looks, 4 cameras) come, stay a few seconds, go and
    return, and neighbours' identities are handed in: an engine keeping each identity's appearance
    until its own members or past change decides exactly as one computing every appearance anew,
    through assignments, moves, merges, finals and expiries. Both are handed the same identity
    objects and summaries: neither may change what it was given (one engine did, through a
    welcomed identity's spans, until 2026-12-03)."""
    rng = np.random.default_rng(11)
    looks = [unit(*rng.normal(size=4)) for _ in range(12)]
    settings = dict(revision_window_s=3.0, identity_ttl_s=20.0, max_identities=15, threshold=0.9, revise_every_s=1.0)
    cached, fresh = engine(**settings), Uncached(EngineSettings(**{"threshold": 0.8, "scale": 0.1, **settings}))
    live, local, seen = {}, 0, set()
    for step in range(400):
        now = 0.25 * step
        while len(live) < 5:
            local += 1
            live[local] = (f"cam{local % 4}", looks[int(rng.integers(0, 12))], now, now + float(rng.uniform(1, 4)))
        batch = []
        for lid, (cam, look, first, end) in list(live.items()):
            noisy = unit(*(look + 0.25 * rng.normal(size=4)))
            batch.append(summary(cam, lid, noisy, first, now, ended=now >= end, n=2 + step % 5))
            if now >= end:
                del live[lid]
        if step % 53 == 7:
            handed = Identity(10_000 + step, now, now - 2.0, "camX", {"camX"}, past=Embeddings(looks[step % 12][None]))
            assert cached.welcome(handed) == fresh.welcome(handed)
        got, want = kinds(cached.update(batch, now)), kinds(fresh.update(batch, now))
        assert got == want, f"step {step}"
        seen |= {k for k, *_ in got}
    assert {"new", "assigned", "reassigned", "merged", "expired"} <= seen, seen


def test_an_engine_pickled_without_the_appearance_caches_loads_and_decides():
    """A hub checkpoint written before the caches existed: the engine loads with empty ones and
    decides as the engine it was pickled from."""
    import pickle

    look = unit(1, 0.2)
    e = engine()
    e.update([summary("cam1", 1, look, 0.0, 1.0, ended=True)], 1.0)
    state = e.__getstate__()
    del state["_past_looks"], state["_appearance_cache"]
    old = IdentityEngine.__new__(IdentityEngine)
    old.__setstate__(state)
    again = pickle.loads(pickle.dumps(e))
    batch = [summary("cam2", 1, look, 12.0, 13.0, ended=True)]
    assert kinds(old.update(batch, 13.0)) == kinds(again.update(batch, 13.0))
    assert [d.kind for d in old.update([], 13.1)] == []


def test_offline_clustering_joins_what_online_split():
    a = [
        summary("cam1", 1, unit(1, 0.3), 0, 5, ended=True),
        summary("cam3", 1, unit(1, -0.3), 20, 25, ended=True),
        summary("cam1", 2, unit(0, 0, 1), 0, 5, ended=True),
    ]
    ids = cluster_offline(a, EngineSettings(threshold=0.9, scale=0.1, merge_margin=-2.0))
    assert ids[("cam1", 1)] == ids[("cam3", 1)] != ids[("cam1", 2)]


def test_threshold_comes_with_the_model_unless_configured():
    stats = {"same_mean": 0.9, "diff_mean": 0.7, "diff_std": 0.05, "threshold": 0.82}
    s = settings_from_config(MatchingConfig(), stats)
    assert s.threshold == 0.82 and s.scale == pytest.approx(0.05)
    s = settings_from_config(MatchingConfig(threshold=0.5, scale=0.05), stats)
    assert (s.threshold, s.scale) == (0.5, 0.05)
    with pytest.raises(ValueError, match="osnet.onnx has no stored matching threshold.*set matching.threshold"):
        settings_from_config(MatchingConfig(), None, "osnet.onnx")


def test_forbidden_pairs_score_forbidden():
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 5)], 5.0)
    assert e.score(summary("cam1", 2, unit(1), 3, 6), e.identities[1]) == FORBIDDEN


# --- calibration ---------------------------------------------------------------------------------
H_TRUE = np.array([[0.05, 0.01, -3.0], [0.0, -0.06, 20.0], [0.0, 0.005, 1.0]])


def test_homography_from_point_pairs_recovers_the_true_one():
    img = np.array([[100, 400], [500, 410], [450, 200], [150, 190], [300, 300]], float)
    q = np.c_[img, np.ones(5)] @ H_TRUE.T
    floor = q[:, :2] / q[:, 2:3]
    h = solve_homography(img, floor, "calibration.cam1")
    assert np.allclose(h.H / h.H[2, 2], H_TRUE, atol=1e-6) and h.reprojection_error_m < 1e-6
    assert np.allclose(h.to_floor(img), floor) and np.allclose(h.to_image(floor), img)


@pytest.mark.parametrize(
    "img, floor, message",
    [
        (
            [[0, 0], [1, 0], [0, 1]],
            [[0, 0], [1, 0], [0, 1]],
            "calibration.cam1: a homography needs at least 4 image/floor point pairs, got 3",
        ),
        (
            [[0, 0], [1, 1], [2, 2], [3, 3]],
            [[0, 0], [1, 0], [0, 1], [1, 1]],
            "calibration.cam1: image_points are collinear",
        ),
        ([[0, 0], [1, 0], [0, 1], [1, 1]], [[0, 0], [1, 0]], "calibration.cam1: 4 image points but 2 floor points"),
    ],
)
def test_bad_point_pairs_are_one_clear_error(img, floor, message):
    with pytest.raises(CalibrationError, match=message.replace(".", r"\.")):
        solve_homography(img, floor, "calibration.cam1")


def test_singular_matrix_is_refused():
    with pytest.raises(CalibrationError, match=r"calibration\.cam2\.homography: homography is not invertible"):
        check_matrix([[1, 2, 3], [2, 4, 6], [0, 0, 1]], "calibration.cam2.homography")


@pytest.mark.parametrize("gap_s, expected", [(1.0, "new"), (12.0, "assigned")], ids=["too-soon", "in-window"])
def test_transition_window_forbids_impossible_travel(gap_s, expected):
    e = engine(transitions={("cam1", "cam3"): Transition.build(5.0, 30.0)})
    e.update([summary("cam1", 1, unit(1), 0, 1, ended=True)], 1.0)
    assert e.update([summary("cam3", 1, unit(1), 1 + gap_s, 2 + gap_s)], 2 + gap_s)[0].kind == expected


def test_cameras_a_transition_apart_never_see_one_identity_at_once():
    """cam1 and cam3 are joined by a corridor of at least 5 s. The identity holds a live cam1
    tracklet; a twin seen in cam3 while that one is still in view, or 2 s after it (either way
    round), is somebody else. The latest-sighting check alone missed the first case: the cam1
    tracklet is not *before* the cam3 one."""
    corridor = {("cam1", "cam3"): Transition.build(5.0, 30.0), ("cam3", "cam1"): Transition.build(5.0, 30.0)}
    e = engine(transitions=corridor)
    e.update([summary("cam1", 1, unit(1), 0, 10)], 10.0)
    assert e.update([summary("cam3", 1, unit(1), 4, 10)], 10.0)[0].kind == "new"
    e = engine(transitions=corridor, revision_window_s=1.0)
    e.update([summary("cam3", 1, unit(1), 0, 4, ended=True)], 4.0)
    e.update([], 6.0)  # final: only its span is left
    assert e.update([summary("cam1", 1, unit(1), 6, 7)], 7.0)[0].kind == "new"  # 2 s: too soon
    assert e.update([summary("cam1", 2, unit(1), 10, 11, box=(300, 100, 340, 200))], 11.0)[0].kind == "assigned"


# cam1's door to the corridor is its right edge (x > 500); cam3's door in is its left edge (x < 100)
DOORS = Transition.build(
    2.0, 30.0, exit=[[500, 0], [640, 0], [640, 360], [500, 360]], entry=[[0, 0], [100, 0], [100, 360], [0, 360]]
)


@pytest.mark.parametrize(
    "left_box, came_box, expected",
    [
        ((540, 100, 580, 200), (20, 100, 60, 200), "assigned"),  # out through the door, in through the other
        ((240, 100, 280, 200), (20, 100, 60, 200), "new"),  # last seen in the middle of cam1: left another way
        ((540, 100, 580, 200), (300, 100, 340, 200), "new"),  # starts in the middle of cam3: not an arrival
    ],
    ids=["through-the-doors", "left-elsewhere", "not-at-the-entry"],
)
def test_transition_doors_are_evidence_for_and_against(left_box, came_box, expected):
    """Appearance alone is +0.5 (cos 0.85, threshold 0.8, scale 0.1): through the doors +1 more,
    not through them -1, so the same look is a match or a new person; no doors: +1 (the window)."""
    e = engine(transitions={("cam1", "cam3"): DOORS})
    e.update([summary("cam1", 1, unit(1), 0, 1, box=(300, 100, 340, 200), end_box=left_box, ended=True)], 1.0)
    out = e.update([summary("cam3", 1, with_cos(unit(1), 0.85), 6, 7, box=came_box)], 7.0)
    assert out[0].kind == expected
    assert e.score(e.records[("cam3", 1)], e.identities[1], exclude_self=True) == pytest.approx(
        0.5 + (1.0 if expected == "assigned" else -1.0)
    )


def test_doors_prefer_the_look_alike_who_walked_the_corridor():
    """Two look-alikes were in cam1; the one who looks a bit more like the arrival left by the
    street side, the other through the corridor door: the arrival is the second one."""
    e = engine(threshold=0.6, transitions={("cam1", "cam3"): DOORS})
    e.update(
        [
            summary("cam1", 1, unit(1), 0, 4, end_box=(100, 100, 140, 200), ended=True),
            summary("cam1", 2, unit(1, 0.3), 0, 4, box=(200, 100, 240, 200), end_box=(560, 100, 600, 200), ended=True),
        ],
        4.0,
    )
    out = e.update([summary("cam3", 1, unit(1, 0.05), 9, 10, box=(30, 100, 70, 200))], 10.0)
    assert kinds(out) == [("assigned", ("cam3", 1), e.global_id(("cam1", 2)), None)]


def test_doors_survive_the_identity_going_final():
    """After its tracklet is final, the identity still remembers where it was last seen."""
    e = engine(transitions={("cam1", "cam3"): DOORS}, revision_window_s=1.0)
    e.update([summary("cam1", 1, unit(1), 0, 1, end_box=(240, 100, 280, 200), ended=True)], 1.0)
    e.update([], 3.0)
    assert not e.records and e.identities[1].last_box is not None
    assert e.update([summary("cam3", 1, with_cos(unit(1), 0.85), 6, 7, box=(20, 100, 60, 200))], 7.0)[0].kind == "new"


def test_person_appearing_in_two_cameras_at_once_gets_one_identity():
    e = engine()
    out = e.update(
        [
            summary("cam1", 1, unit(1, 0.1), 0, 1),
            summary("cam2", 1, unit(1, 0, 0.1), 0, 1),
            summary("cam2", 2, unit(0, 0, 0, 1), 0, 1),
        ],
        1.0,
    )
    ids = {d.key: d.global_id for d in out}
    assert ids[("cam1", 1)] == ids[("cam2", 1)] != ids[("cam2", 2)] and sorted(d.kind for d in out) == [
        "assigned",
        "new",
        "new",
    ]


def test_a_short_swapped_fragment_does_not_keep_its_person_out_and_is_moved_out_itself():
    """A person's identity holds a short fragment of a tracker swap (cam1:2, weight 1) seen at the
    same time as the person's own long new tracklet (cam1:3, weight 6): the fragment must not
    forbid the person's tracklet; the revision then moves the fragment out instead."""
    e = engine(revise_every_s=1.0)
    e.update([summary("cam1", 1, unit(1), 0, 4, ended=True)], 4.0)
    e.update([summary("cam1", 2, unit(1, 0.1), 5, 6, box=(300, 100, 340, 200), ended=True, weight=1.0)], 6.0)
    assert e.global_id(("cam1", 2)) == 1
    e.update([summary("cam1", 3, unit(1), 5.5, 9, box=(500, 100, 540, 200), weight=6.0)], 9.0)
    e.update([], 10.0)
    assert e.global_id(("cam1", 3)) == 1 and e.global_id(("cam1", 2)) != 1
    # the other way round, the strong tracklet forbids the weak one as before
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 9, weight=6.0)], 9.0)
    assert (
        e.update([summary("cam1", 2, unit(1), 5, 6, box=(300, 100, 340, 200), ended=True, weight=1.0)], 10.0)[0].kind
        == "new"
    )


def test_a_tracker_hand_over_overlapping_by_a_frame_still_continues():
    """ByteTrack can start the new track one frame before it drops the old one (the real pair's
    break): a short overlap at the same place is a hand-over, not two people."""
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 2.57, box=(348, 10, 410, 188))], 2.57)
    out = e.update([summary("cam1", 2, unit(1, 0.05), 2.57, 3.0, box=(352, 11, 413, 231))], 3.0)
    assert kinds(out) == [("assigned", ("cam1", 2), 1, None)]
    # the same overlap somewhere else in the image: two people
    e = engine()
    e.update([summary("cam1", 1, unit(1), 0, 2.57, box=(348, 10, 410, 188))], 2.57)
    assert e.update([summary("cam1", 2, unit(1), 2.5, 3.0, box=(40, 11, 100, 231))], 3.0)[0].kind == "new"


def test_similarity_stats_known_answer():
    """Two people in two cameras, 4 identical crops each, so pseudo-tracklets are a, a (person 0)
    and b, c (person 1). Cross-camera pairs: same person a.a = 1 and b.c = 0.8; different people
    a.c = 0.6 and a.b = 0."""
    from trainer.eval.similarity_stats import similarity_stats

    a, b, c = unit(1), unit(0, 1), unit(0.6, 0.8)
    emb = Embeddings(np.stack([a] * 4 + [a] * 4 + [b] * 4 + [c] * 4))
    pids = np.array([0] * 8 + [1] * 8)
    cams = np.array([0] * 4 + [1] * 4 + [0] * 4 + [1] * 4)
    s = similarity_stats(emb, pids, cams, false_match_rate=0.5)
    assert s["same_mean"] == pytest.approx(0.9) and s["diff_mean"] == pytest.approx(0.3)
    assert s["pairs_same"] == 2 and s["pairs_diff"] == 2 and s["threshold"] == pytest.approx(0.3)
    assert s["true_match_rate"] == 1.0


def test_swap_stats_known_answer():
    """Person 0's fourth crop in camera 0 is at cosine 0.9 to their first three (e0); person 1's
    four crops are e1. Same person against their track: 0.9 and 1.0, so at a false-cut rate of one
    half the swap threshold is 0.95; another person's crop is at cosine 0 and always caught.
    Camera 1 has one crop of each: too few to count."""
    from trainer.eval.similarity_stats import swap_stats

    w = with_cos(unit(1), 0.9, other_axis=2)
    vectors = np.stack([unit(1)] * 3 + [w] + [unit(0, 1)] * 4 + [unit(1), unit(0, 1)])
    pids = np.array([0] * 4 + [1] * 4 + [0, 1])
    cams = np.array([0] * 8 + [1, 1])
    s = swap_stats(vectors, pids, cams, false_cut=0.5)
    assert s["crops"] == 2 and s["swap_below"] == pytest.approx(0.95) and s["other_below"] == 1.0
    with pytest.raises(ValueError, match="more than 3 crops in one camera"):
        swap_stats(vectors[8:], pids[8:], cams[8:])


def test_gallery_swap_stats_follow_the_frames_in_market_names():
    """The odd crop (w, cosine 0.9 to e0) is listed first but was seen last (frame 40): in frame
    order the track is e0, e0, e0, then w; in file order w would be part of the track's mean."""
    from trainer.eval.similarity_stats import gallery_swap_stats

    w = with_cos(unit(1), 0.9, other_axis=2)
    emb = Embeddings(np.stack([w, unit(1), unit(1), unit(1)]))
    paths = [
        "g/0001_c1s1_000040_00.jpg",
        "g/0001_c1s1_000010_00.jpg",
        "g/0001_c1s1_000020_00.jpg",
        "g/0001_c1s1_000030_00.jpg",
    ]
    s = gallery_swap_stats(emb, np.zeros(4, int), np.zeros(4, int), paths)
    assert s["swap_below"] == pytest.approx(0.9, abs=1e-4) and s["split"] == "gallery tracks, frame order"
    s = gallery_swap_stats(emb, np.zeros(4, int), np.zeros(4, int), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert s["swap_below"] > 0.95 and s["split"] == "gallery tracks, file order"
    assert gallery_swap_stats(emb[:3], np.zeros(3, int), np.zeros(3, int), paths[:3]) is None


def test_a_person_reclaims_the_identity_a_look_alike_took_while_they_walked_the_corridor():
    """Person P (e0) left cam1 for cam3. A look-alike Q (cosine 0.88 with P) appears in cam3 first,
    inside the corridor's time window, and takes P's identity. P's own cam3 tracklet, seen at the
    same time as Q's, is forbidden there and founds a new identity. Once P's tracklet shows it
    fits P's identity far better than Q's did, Q's tracklet leaves and P gets their identity back.
    (P's cam1 tracklet is final by then: it cannot simply move to P's new identity.)"""
    e = engine(
        threshold=0.8,
        revise_every_s=1.0,
        revision_window_s=5.0,
        transitions={("cam1", "cam3"): Transition.build(2, 30)},
    )
    e.update([summary("cam1", 1, unit(1), 0, 10, ended=True)], 10.0)
    q = with_cos(unit(1), 0.88, other_axis=2)
    e.update([summary("cam3", 1, q, 14, 16)], 16.0)
    assert e.global_id(("cam3", 1)) == 1
    out = e.update([summary("cam3", 2, unit(1, 0.05), 15, 18, box=(400, 100, 440, 200))], 18.0)
    q_id = e.global_id(("cam3", 1))
    assert kinds(out) == [("new", ("cam3", 2), 2, None), ("reassigned", ("cam3", 1), q_id, 1), ("merged", None, 1, 2)]
    assert e.global_id(("cam3", 2)) == 1 and q_id not in (1, 2)


def test_a_look_alike_who_fits_worse_does_not_take_the_identity_back():
    """The other way round: the identity's cam3 tracklet is the person (e0); the newcomer seen at
    the same time is the look-alike. Nothing moves."""
    e = engine(
        threshold=0.8,
        revise_every_s=1.0,
        revision_window_s=5.0,
        transitions={("cam1", "cam3"): Transition.build(2, 30)},
    )
    e.update([summary("cam1", 1, unit(1), 0, 10, ended=True)], 10.0)
    e.update([summary("cam3", 1, unit(1, 0.05), 14, 16)], 16.0)
    e.update([summary("cam3", 2, with_cos(unit(1), 0.88, other_axis=2), 15, 18, box=(400, 100, 440, 200))], 18.0)
    out = e.update([], 19.0) + e.update([], 20.0)
    assert e.global_id(("cam3", 1)) == 1 and e.global_id(("cam3", 2)) == 2 and not out


def test_decision_kinds_are_the_wire_strings():
    """A decision's kind is the identity event's ``event`` field: listeners and the view match on
    these exact strings."""
    assert typing.get_args(DecisionKind) == ("new", "assigned", "merged", "reassigned", "expired")
