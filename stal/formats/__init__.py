"""Public file formats, read and written exactly: AVA (box CSV, pbtxt label map, exclusions,
proposal pickles, PySlowFast frame lists) and ACT (UCF101-24 / JHMDB ground-truth pickles).

Above :mod:`stal.io`, below everything that consumes annotations (datasets, evaluation,
data preparation).
"""
