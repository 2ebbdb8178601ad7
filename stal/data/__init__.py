"""Datasets: the embedded demo, AVA-format readers, synthesized training clips."""
