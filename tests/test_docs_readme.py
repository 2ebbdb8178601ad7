"""The README quick start is what users run and what CI runs: keep them identical."""

import os
import re


def _quick_start(repo_root):
    text = open(os.path.join(repo_root, "README.md"), encoding="utf-8").read()
    block = re.search(r"^```bash\n(.*?)^```$", text, re.S | re.M).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_has_setup_demo_and_tests(repo_root):
    setup, demo, tests = _quick_start(repo_root)
    assert ".venv" in setup and "pip install -e '.[test]'" in setup
    assert demo == "python tools/train_net.py --cfg configs/demo_guided.yaml"
    assert tests.startswith("pytest")


def test_ci_runs_the_readme_setup_and_test_commands(repo_root):
    setup, _, tests = _quick_start(repo_root)
    ci = [line.strip() for line in open(os.path.join(repo_root, ".ci", "run"), encoding="utf-8")]
    assert setup in ci, f".ci/run does not run the README setup command: {setup}"
    assert tests in ci, f".ci/run does not run the README test command: {tests}"
    assert ci.index("source .venv/bin/activate") < ci.index(tests)
