"""stal.progress: without a terminal, long jobs log done / total, rate and ETA every N seconds."""

import logging

from stal.progress import Progress, progress


def test_log_lines_without_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="stal")
    bar = Progress(total=4, desc="train", unit="step", every=0.0)  # pytest's output is no terminal
    assert bar.disable
    bar.set_postfix(loss="0.5")
    bar.update()
    bar.close()
    line = caplog.records[-1].getMessage()
    assert line.startswith("train: 1/4 (25%), ") and "step/s" in line and "ETA" in line and "loss=0.5" in line


def test_wrapper_yields_everything_and_is_quiet_when_short(caplog):
    caplog.set_level(logging.INFO, logger="stal")
    assert list(progress(range(5), desc="quick", every=3600)) == [0, 1, 2, 3, 4]
    assert not [r for r in caplog.records if r.getMessage().startswith("quick")]
    assert Progress(total=1, desc="rank 1", enabled=False, every=0.0).log_lines is False
