"""The embedded demos: procedural video (stick-figure actors over textured scenes, written as
an AVA dataset) and images (shapes over photo crops), generated on first use, no download.

On top of :mod:`stal.synthesis`, :mod:`stal.formats` and :mod:`stal.io`; the datasets in
:mod:`stal.data` read what these modules generate.
"""
