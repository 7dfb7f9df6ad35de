"""The operator's live view: ``python -m edge.view`` (the ``[view]`` extra).

:mod:`.state` (what the view knows, bounded), :mod:`.sources` (live subscriber, replay),
:mod:`.server` (the web app), ``static/`` (the page: plain HTML, CSS and JS, no build step).
"""
