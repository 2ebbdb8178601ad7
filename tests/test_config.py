import pytest

from stal.config import get_cfg, load_cfg
from stal.config.defaults import _C
from stal.errors import ConfigError


def _write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_default_key_has_a_comment(repo_root):
    source = open(f"{repo_root}/stal/config/defaults.py").read().splitlines()
    for i, line in enumerate(source):
        if line.startswith("_C.") and "CfgNode()" not in line:
            assert source[i - 1].lstrip().startswith("#"), f"no comment above {line}"


def test_yaml_and_overrides_round_trip(tmp_path):
    path = _write(tmp_path, "GUIDANCE:\n  LAMBDA: 0.25\nDATA:\n  MEAN: [0.1, 0.2, 0.3]\n")
    cfg = load_cfg(path, ["RNG_SEED", "7", "GUIDANCE.NORM", "count"])
    assert cfg.GUIDANCE.LAMBDA == 0.25 and cfg.RNG_SEED == 7 and cfg.GUIDANCE.NORM == "count"
    dumped = _write(tmp_path, cfg.dump(), "dumped.yaml")
    assert load_cfg(dumped) == cfg
    assert cfg.is_frozen()


def test_empty_override_is_the_empty_string(repo_root):
    """``MODEL.MIL_POOLING ""`` turns MIL off from the command line (YAML would read it as null)."""
    cfg = load_cfg(f"{repo_root}/configs/ucf24_weak_guided.yaml", ["MODEL.MIL_POOLING", ""])
    assert cfg.MODEL.MIL_POOLING == ""


def test_base_inheritance(repo_root):
    guided = load_cfg(f"{repo_root}/configs/demo_guided.yaml")
    base = load_cfg(f"{repo_root}/configs/demo_baseline.yaml")
    assert guided.GUIDANCE.ENABLE and not base.GUIDANCE.ENABLE
    diff = [k for k in guided if guided[k] != base[k]]
    assert sorted(diff) == ["GUIDANCE", "OUTPUT_DIR"]


@pytest.mark.parametrize("text,opts,match", [
    ("FOO: 1\n", [], "unknown config key FOO"),
    ("", ["GUIDANCE.NOPE", "1"], "unknown config key GUIDANCE.NOPE"),
    ("- a\n- b\n", [], "expected a mapping"),
    ("TRAIN:\n  BATCH_SIZE: abc\n", [], "TRAIN.BATCH_SIZE expects a int"),
    ("GUIDANCE:\n  LAMBDA: -0.1\n", [], "GUIDANCE.LAMBDA must be >= 0"),
    ("IMAGE:\n  CAM_CURVE_INTERVAL: 0.0\n", [], "IMAGE.CAM_CURVE_INTERVAL must be in \\(0, 1\\)"),
    ("GUIDANCE:\n  NORM: l3\n", [], "GUIDANCE.NORM must be one of"),
    ("TRAIN: 3\n", [], "TRAIN is a section"),
    ("GUIDANCE: {LAMBDA: [1\n", [], "not valid YAML"),
    ("", ["RNG_SEED"], "KEY VALUE pairs"),
])
def test_bad_configs_are_one_line_errors(tmp_path, text, opts, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_cfg(_write(tmp_path, text), opts)
    assert "\n" not in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: /nonexistent.yaml"):
        load_cfg("/nonexistent.yaml")


def test_get_cfg_is_a_copy():
    cfg = get_cfg()
    cfg.RNG_SEED = 123
    assert _C.RNG_SEED == 0


def test_pyslowfast_command_line_forms(tmp_path):
    """``--opts K V`` (PySlowFast) and bare pairs both override; repeated ``--cfg`` merge in order."""
    from stal.cli import train_net

    first = tmp_path / "first.yaml"
    first.write_text("RNG_SEED: 5\nTRAIN:\n  BATCH_SIZE: 4\n")
    second = tmp_path / "second.yaml"
    second.write_text("TRAIN:\n  BATCH_SIZE: 6\n")
    args = train_net.parse_args(["--cfg", str(first), "--cfg", str(second), "SOLVER.BASE_LR", "0.5",
                                 "--opts", "LOG_PERIOD", "3"])
    cfg = load_cfg(args.cfg_file, args.opts)
    assert (cfg.RNG_SEED, cfg.TRAIN.BATCH_SIZE, cfg.SOLVER.BASE_LR, cfg.LOG_PERIOD) == (5, 6, 0.5, 3)
    args = train_net.parse_args(["--cfg", str(first), "--opts", "TRAIN.BATCH_SIZE", "8"])
    assert load_cfg(args.cfg_file, args.opts).TRAIN.BATCH_SIZE == 8
