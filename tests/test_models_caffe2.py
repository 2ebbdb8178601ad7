"""Caffe2 ``.pkl`` checkpoints (PySlowFast ``CHECKPOINT_TYPE caffe2``) through the restricted unpickler.

The tests write their own ``.pkl`` files in the Caffe2 layout from a model's state dict, with
a name mapping written here independently of the loader (from the blob names PySlowFast's
slowfast/utils/c2_model_loading.py documents), and load them back bit for bit.
"""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch

from stal.errors import DataError
from stal.models import build_detector, load_pretrained
from stal.models.pretrained import caffe2_to_pyslowfast

_BN = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def _c2_param(param: str, bn: bool) -> str:
    return _BN[param] if bn else {"weight": "w", "bias": "b"}[param]


def _to_caffe2(key: str, backbone) -> str | None:
    """pytorchvideo Slow / SlowFast key -> Caffe2 blob name (None: no such blob)."""
    if key.endswith("num_batches_tracked"):
        return None
    fuse = re.fullmatch(r"blocks\.(\d)\.multipathway_fusion\.(conv_fast_to_slow|norm)\.(\w+)", key)
    if fuse:
        stage, part, param = int(fuse.group(1)), fuse.group(2), fuse.group(3)
        if stage == 0:
            where = "t_pool1_subsample"
        else:  # named after the last block of the fast pathway's stage
            last = len(backbone.blocks[stage].multipathway_blocks[1].res_blocks) - 1
            where = f"t_res{stage + 1}_{last}_branch2c_bn_subsample"
        return f"{where}_{'bn_' if part == 'norm' else ''}{_c2_param(param, part == 'norm')}"
    m = re.fullmatch(r"blocks\.(\d)\.(?:multipathway_blocks\.(\d)\.)?(.+)\.(\w+)", key)
    stage, pathway, module, param = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    t = "t_" if pathway == "1" else ""
    if stage == 0:
        return f"{t}conv1_w" if module == "conv" else f"{t}res_conv1_bn_{_BN[param]}"
    block, part = re.fullmatch(r"res_blocks\.(\d+)\.(.+)", module).groups()
    branch = {"branch1_conv": "branch1", "branch1_norm": "branch1_bn"}.get(part)
    if branch is None:
        kind, letter = re.fullmatch(r"branch2\.(conv|norm)_([abc])", part).groups()
        branch = f"branch2{letter}" + ("_bn" if kind == "norm" else "")
    return f"{t}res{stage + 1}_{block}_{branch}_{_c2_param(param, branch.endswith('_bn'))}"


def _caffe2_blobs(model) -> dict[str, np.ndarray]:
    blobs = {}
    for key, value in model.backbone.state_dict().items():
        name = _to_caffe2(key, model.backbone)
        if name is not None:
            blobs[name] = value.numpy().copy()
    return blobs


def _write_pkl(path, obj) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the model zoo's files are Python 2 pickles
    return str(path)


def _same_backbone(a, b) -> bool:
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_caffe2_blob_names():
    expected = {
        "conv1_w": "s1.pathway0_stem.conv.weight",
        "res_conv1_bn_s": "s1.pathway0_stem.bn.weight",
        "t_res_conv1_bn_riv": "s1.pathway1_stem.bn.running_var",
        "t_conv1_w": "s1.pathway1_stem.conv.weight",
        "res2_0_branch2a_w": "s2.pathway0_res0.branch2.a.weight",
        "res2_0_branch2a_bn_b": "s2.pathway0_res0.branch2.a_bn.bias",
        "res4_22_branch2c_bn_rm": "s4.pathway0_res22.branch2.c_bn.running_mean",
        "t_res3_0_branch1_w": "s3.pathway1_res0.branch1.weight",
        "t_res3_0_branch1_bn_s": "s3.pathway1_res0.branch1_bn.weight",
        "t_pool1_subsample_w": "s1_fuse.conv_f2s.weight",
        "t_pool1_subsample_bn_rm": "s1_fuse.bn.running_mean",
        "t_res4_5_branch2c_bn_subsample_w": "s4_fuse.conv_f2s.weight",
        "t_res4_5_branch2c_bn_subsample_bn_b": "s4_fuse.bn.bias",
        "conv1_xy_w": "s1.pathway0_stem.conv_xy.weight",  # X3D
        "res2_0_branch2b_bn_fc1_b": "s2.pathway0_res0.branch2.se.fc1.bias",
    }
    for c2, pyth in expected.items():
        assert caffe2_to_pyslowfast(c2) == pyth, c2
    for other in ("nonlocal_conv4_6_theta_w", "res2_0_branch2a", "pred_w_momentum_x"):
        assert caffe2_to_pyslowfast(other) is None, other


@pytest.mark.parametrize("name", ["slow_r50_tiny", "slowfast_r50_tiny"])
def test_caffe2_pkl_loads_bit_for_bit(tmp_path, name):
    torch.manual_seed(0)
    src = build_detector(name, num_classes=3).eval()
    for buf in src.backbone.buffers():  # non-trivial BN statistics, so they are checked too
        buf.copy_(torch.rand_like(buf.float()).to(buf.dtype) if buf.is_floating_point() else buf)
    blobs = _caffe2_blobs(src)
    dropped = {"pred_w": np.zeros((400, 8), np.float32), "pred_b": np.zeros(400, np.float32),
               "res2_0_branch2a_w_momentum": np.zeros(1, np.float32), "lr": np.float32(0.1),
               "model_iter": 1000}
    path = _write_pkl(tmp_path / f"{name}.pkl", {"blobs": {**blobs, **dropped}})
    dst = build_detector(name, num_classes=3).eval()
    report = load_pretrained(dst, path)
    assert report.source == "caffe2" and sorted(report.ignored) == sorted(dropped)
    assert report.missing == ["head.proj.weight", "head.proj.bias"] and not report.unexpected
    assert len(report.loaded) == len(blobs)
    assert _same_backbone(src, dst)
    clip = torch.randn(1, 3, 4, 32, 32)
    out_src, out_dst = src.backbone(clip), dst.backbone(clip)
    for a, b in zip(out_src if isinstance(out_src, list) else [out_src], out_dst if isinstance(out_dst, list) else [out_dst]):
        assert torch.equal(a, b)


def test_caffe2_pkl_of_another_layout_or_with_unknown_blobs(tmp_path):
    src = build_detector("slowfast_r50_tiny", num_classes=3)
    blobs = _caffe2_blobs(src)
    blobs["nonlocal_conv4_6_theta_w"] = np.zeros((4, 4, 1, 1, 1), np.float32)  # stal has no non-local blocks
    path = _write_pkl(tmp_path / "nln.pkl", {"blobs": blobs})
    with pytest.raises(DataError, match=r"caffe2 layout\) does not fit SlowFastBackbone: keys the model lacks "
                                        r"\(1\): nonlocal_conv4_6_theta_w"):
        load_pretrained(build_detector("slowfast_r50_tiny", num_classes=3), path)
    report = load_pretrained(build_detector("slowfast_r50_tiny", num_classes=3), path, strict=False)
    assert report.unexpected == ["nonlocal_conv4_6_theta_w"]
    # A Slow checkpoint into SlowFast: the fast pathway and the fusions are missing.
    slow = _write_pkl(tmp_path / "slow.pkl", {"blobs": _caffe2_blobs(build_detector("slow_r50_tiny", num_classes=3))})
    with pytest.raises(DataError, match="backbone keys the file lacks"):
        load_pretrained(build_detector("slowfast_r50_tiny", num_classes=3), slow)
    # Not a Caffe2 checkpoint, a blob that is not an array, not a pickle, not there.
    for obj, message in (({"model_state": {}}, r"expected a Caffe2 checkpoint \(a dict with 'blobs'\), found a dict"),
                         ([1, 2], "found list"), ({"blobs": {"conv1_w": "text"}}, "blob 'conv1_w' is str")):
        bad = _write_pkl(tmp_path / "bad.pkl", obj)
        with pytest.raises(DataError, match=message):
            load_pretrained(build_detector("slowfast_r50_tiny", num_classes=3), bad)
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x02junk")
    with pytest.raises(DataError, match="junk.pkl: not a readable pickle"):
        load_pretrained(build_detector("slow_r50_tiny", num_classes=3), str(tmp_path / "junk.pkl"))
    with pytest.raises(DataError, match="not found"):
        load_pretrained(build_detector("slow_r50_tiny", num_classes=3), str(tmp_path / "missing.pkl"))


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pkl_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "created-by-the-pickle"
    src = build_detector("slow_r50_tiny", num_classes=3)
    blobs = {**_caffe2_blobs(src), "pred_w": _Payload(marker)}
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=protocol)
    dst = build_detector("slow_r50_tiny", num_classes=3)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(DataError, match=r"evil.pkl: refused to load: the pickle asks for (posix|nt)\.mkdir"):
        load_pretrained(dst, str(path))
    assert not marker.exists()
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())


# ---------------------------------------------------------------------------- R101 layouts


def _res_stages(backbone, pathway: int):
    return [b.multipathway_blocks[pathway] if hasattr(b, "multipathway_blocks") else b for b in list(backbone.blocks)[1:]]


@pytest.mark.parametrize("name, res4_temporal, fusion", [("slowfast_r101", 23, 5), ("slowfast_r101_16x8", 6, 5),
                                                          ("slowfast_r50", 6, 7), ("slow_r101", 23, None)])
def test_resnet_layouts_match_pyslowfast(name, res4_temporal, fusion):
    """Blocks per stage, conv_a temporal kernels (PySlowFast NUM_BLOCK_TEMP_KERNEL) and the
    fusion kernel (FUSION_KERNEL_SZ) of the full-size models, from the model-zoo YAMLs."""
    backbone = build_detector(name, num_classes=4).backbone
    depth = 50 if "r50" in name else 101
    for pathway in (0, 1) if hasattr(backbone, "alpha") else (0,):
        stages = _res_stages(backbone, pathway)
        assert [len(s.res_blocks) for s in stages] == ([3, 4, 6, 3] if depth == 50 else [3, 4, 23, 3])
        temporal = [[b.branch2.conv_a.kernel_size[0] for b in s.res_blocks] for s in stages]
        slow_early = 1 if pathway == 0 else 3  # the slow pathway is temporal in res4 / res5 only
        assert temporal[0] == [slow_early] * 3 and temporal[1] == [slow_early] * 4 and temporal[3] == [3] * 3
        assert temporal[2] == [3] * res4_temporal + [1] * (len(temporal[2]) - res4_temporal)
    if fusion:
        convs = [b.multipathway_fusion.conv_fast_to_slow for b in list(backbone.blocks)[:4]]  # res5: none
        assert all(c.kernel_size == (fusion, 1, 1) and c.stride == (4, 1, 1) for c in convs)
    if depth == 101:  # the tiny R101s keep every block: the checkpoint tests below see the real key set
        tiny = build_detector(f"{name}_tiny", num_classes=4).backbone
        assert tiny.state_dict().keys() == backbone.state_dict().keys()
    frames = 8 if hasattr(backbone, "alpha") else 2
    feats = backbone.eval()(torch.randn(1, 3, frames, 32, 32))  # forward at a tiny size only
    assert sum(f.shape[1] for f in (feats if isinstance(feats, list) else [feats])) == backbone.out_channels


@pytest.mark.parametrize("name", ["slowfast_r50_tiny", "slowfast_r101_tiny", "slowfast_r101_16x8_tiny",
                                  "slow_r101_tiny"])
@pytest.mark.parametrize("layout", ["caffe2", "pyslowfast"])
def test_pkl_and_pyth_load_with_zero_missing_backbone_keys(tmp_path, name, layout):
    from test_models_pretrained import _to_pyslowfast

    torch.manual_seed(0)
    src = build_detector(name, num_classes=3)
    if layout == "caffe2":
        path = _write_pkl(tmp_path / "model.pkl", {"blobs": {**_caffe2_blobs(src), "pred_w": np.zeros((400, 8))}})
    else:
        multipathway = hasattr(src.backbone, "alpha")
        state = {(_to_pyslowfast(k) if multipathway else _slow_to_pyslowfast(k)): v
                 for k, v in src.state_dict().items() if k.startswith("backbone.")}
        path = str(tmp_path / "model.pyth")
        torch.save({"model_state": {**state, "head.projection.weight": torch.zeros(400, 8)}}, path)
    dst = build_detector(name, num_classes=3)
    report = load_pretrained(dst, path)
    assert report.source == layout and not report.unexpected and not report.mismatched
    assert [k for k in report.missing if k.startswith("backbone.")] == []
    assert _same_backbone(src, dst)


def _slow_to_pyslowfast(key: str) -> str:
    """Slow (one pathway) key -> PySlowFast key, via the two-pathway test mapping."""
    from test_models_pretrained import _to_pyslowfast

    multi = re.sub(r"^backbone\.blocks\.(\d)\.", r"backbone.blocks.\1.multipathway_blocks.0.", key)
    return _to_pyslowfast(multi)
