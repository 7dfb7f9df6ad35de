"""What a site is like, learned from its own unlabelled footage: which cameras people walk between
and how long it takes (``links.py``), where in each image they leave and come in (``doors.py``),
which cameras see the same place and a ground plane they share (``overlap.py``), from the
confident matches of a run's tracklets (``evidence.py``), all of it at once in ``learn.py``;
written as a camera file a user reads, edits and keeps (``site_file.py``) and drawn
(``picture.py``). ``python -m edge.topology learn`` runs it all.
See docs/identity.md "A site that configures itself".
"""
