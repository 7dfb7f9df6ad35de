"""The operator's live view: ``python -m edge.view`` (the ``[view]`` extra).

:mod:`.config` (settings and the state's bounds), :mod:`.state` (what the view knows: decodes
messages with :mod:`edge.wire.events` and hands them to :mod:`.identities` and :mod:`.cameras`),
:mod:`.subscribers` (live subscriber, replay), :mod:`.server` (the web app), ``static/`` (the
page: plain HTML, CSS and JS, no build step); :mod:`.feed` (a synthetic publisher) and
:mod:`.process` (the view as a child process) serve the benchmarks and tests.
"""
