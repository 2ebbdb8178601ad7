"""Shared fixtures: paths of the repository and a tiny demo dataset generated once per session."""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "data_prep"))


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A tiny demo dataset (the AVA-format evaluation splits) and the arguments that made it."""
    from stal.demo.video import ensure_demo_data

    kwargs = dict(root=str(tmp_path_factory.mktemp("demo")), seed=3, size=48, tubes_per_class=2,
                  test_videos=3, test_keyframes=2, fps=8, max_actors=2)
    return ensure_demo_data(**kwargs), kwargs
