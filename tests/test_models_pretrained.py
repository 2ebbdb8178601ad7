"""Pretrained weights from local files: stal, pytorchvideo, PySlowFast and torchvision layouts.

The tests write their own checkpoints; nothing is downloaded.
"""

from __future__ import annotations

import re

import pytest
import torch

from stal.errors import DataError
from stal.models import build_detector, load_pretrained
from stal.models.pretrained import pyslowfast_to_pytorchvideo
from stal.models.pytorchvideo_compat import import_pytorchvideo


def _same_backbone(a, b):
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_own_checkpoint_round_trip_and_other_class_count(tmp_path):
    torch.manual_seed(0)
    src = build_detector("slow_r50_tiny", num_classes=3)
    path = tmp_path / "ckpt.pyth"
    torch.save({"model_state": src.state_dict(), "epoch": 2}, path)
    dst = build_detector("slow_r50_tiny", num_classes=3)
    report = load_pretrained(dst, str(path))
    assert report.source == "stal" and not report.missing and not report.unexpected
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    # Another class count: the head is skipped and reported, the backbone loads.
    other = build_detector("slow_r50_tiny", num_classes=5)
    report = load_pretrained(other, str(path))
    assert _same_backbone(src, other) and len(report.mismatched) == 2  # head.proj weight and bias


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "slow.pyth"
    torch.save(build_detector("slow_r50_tiny", num_classes=3).state_dict(), path)
    with pytest.raises(DataError, match=r"does not fit X3DBackbone: keys the model lacks \(\d+\): backbone\.blocks"):
        load_pretrained(build_detector("x3d_xs_tiny", num_classes=3), str(path))
    with pytest.raises(DataError, match="does not fit SlowFastBackbone"):
        load_pretrained(build_detector("slowfast_r50_tiny", num_classes=3), str(path))
    report = load_pretrained(build_detector("slowfast_r50_tiny", num_classes=3), str(path), strict=False)
    assert report.unexpected and report.missing
    (tmp_path / "junk.pyth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read"):
        load_pretrained(build_detector("slow_r50_tiny", num_classes=3), str(tmp_path / "junk.pyth"))
    with pytest.raises(DataError, match="not found"):
        load_pretrained(build_detector("slow_r50_tiny", num_classes=3), str(tmp_path / "missing.pyth"))


def test_pytorchvideo_x3d_and_mvit_state_dicts_drop_only_their_heads(tmp_path):
    torch.manual_seed(0)
    net = import_pytorchvideo("models.x3d").create_x3d(
        input_clip_length=4, input_crop_size=32, depth_factor=0.5, width_factor=0.5, model_num_class=7)
    torch.save({"model_state": net.state_dict()}, tmp_path / "x3d.pyth")
    model = build_detector("x3d_xs_tiny", num_classes=3)
    report = load_pretrained(model, str(tmp_path / "x3d.pyth"))
    assert report.source == "pytorchvideo" and report.ignored and all(k.startswith("blocks.5.") for k in report.ignored)
    assert report.missing == ["head.proj.weight", "head.proj.bias"]
    assert torch.equal(model.state_dict()["backbone.blocks.0.conv.conv_t.weight"], net.blocks[0].conv.conv_t.weight)

    create = import_pytorchvideo("models.vision_transformers").create_multiscale_vision_transformers
    net = create(spatial_size=32, temporal_size=4, depth=3, patch_embed_dim=16, embed_dim_mul=[[1, 2.0], [2, 2.0]],
                 atten_head_mul=[[1, 2.0], [2, 2.0]], pool_q_stride_size=[[1, 1, 2, 2], [2, 1, 2, 2]],
                 pool_kv_stride_adaptive=[1, 4, 4], pool_kvq_kernel=[3, 3, 3], head_num_classes=7)
    torch.save(net.state_dict(), tmp_path / "mvit.pyth")
    model = build_detector("mvit_b_16x4_tiny", num_classes=3)
    report = load_pretrained(model, str(tmp_path / "mvit.pyth"))
    assert {k.split(".")[0] for k in report.ignored} == {"head"} and not report.unexpected
    net.head = None
    net.eval(), model.eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    tokens = net(clip)[:, 1:]  # pytorchvideo's own forward, without the head
    torch.testing.assert_close(model.backbone(clip).flatten(2).transpose(1, 2), tokens)


# Hand-written PySlowFast names (slowfast/models/resnet_helper.py, stem_helper.py,
# video_model_builder.py) and the pytorchvideo names they must land on.
PYSLOWFAST_KEYS = {
    "s1.pathway0_stem.conv.weight": "blocks.0.multipathway_blocks.0.conv.weight",
    "s1.pathway1_stem.bn.running_var": "blocks.0.multipathway_blocks.1.norm.running_var",
    "s1_fuse.conv_f2s.weight": "blocks.0.multipathway_fusion.conv_fast_to_slow.weight",
    "s3_fuse.bn.bias": "blocks.2.multipathway_fusion.norm.bias",
    "s2.pathway1_res0.branch1.weight": "blocks.1.multipathway_blocks.1.res_blocks.0.branch1_conv.weight",
    "s2.pathway1_res0.branch1_bn.weight": "blocks.1.multipathway_blocks.1.res_blocks.0.branch1_norm.weight",
    "s5.pathway0_res2.branch2.b_bn.running_mean":
        "blocks.4.multipathway_blocks.0.res_blocks.2.branch2.norm_b.running_mean",
    "s4.pathway0_res5.branch2.c.weight": "blocks.3.multipathway_blocks.0.res_blocks.5.branch2.conv_c.weight",
}


def test_pyslowfast_key_names():
    for old, new in PYSLOWFAST_KEYS.items():
        assert pyslowfast_to_pytorchvideo(old, multipathway=True) == new
    assert pyslowfast_to_pytorchvideo("s2.pathway0_res1.branch2.a.weight", multipathway=False) == \
        "blocks.1.res_blocks.1.branch2.conv_a.weight"
    assert pyslowfast_to_pytorchvideo("head.projection.weight", multipathway=True) is None


def _to_pyslowfast(key: str) -> str:
    """pytorchvideo SlowFast key -> PySlowFast key, written independently of the loader."""
    k = key.replace("backbone.", "", 1)
    fuse = re.match(r"blocks\.(\d)\.multipathway_fusion\.(conv_fast_to_slow|norm)\.(.+)", k)
    if fuse:
        return f"s{int(fuse.group(1)) + 1}_fuse.{'conv_f2s' if fuse.group(2) == 'conv_fast_to_slow' else 'bn'}.{fuse.group(3)}"
    stage, path, rest = re.match(r"blocks\.(\d)\.multipathway_blocks\.(\d)\.(.+)", k).groups()
    if stage == "0":
        return f"s1.pathway{path}_stem.{rest.replace('norm.', 'bn.')}"
    block, rest = re.match(r"res_blocks\.(\d+)\.(.+)", rest).groups()
    for a, b in (("branch1_conv", "branch1"), ("branch1_norm", "branch1_bn")):
        rest = rest.replace(a, b)
    rest = re.sub(r"branch2\.conv_([abc])", r"branch2.\1", rest)
    rest = re.sub(r"branch2\.norm_([abc])", r"branch2.\1_bn", rest)
    return f"s{int(stage) + 1}.pathway{path}_res{block}.{rest}"


def test_pyslowfast_slowfast_checkpoint_loads_to_the_same_network(tmp_path):
    torch.manual_seed(0)
    src = build_detector("slowfast_r50_tiny", num_classes=3).eval()
    state = {_to_pyslowfast(k): v for k, v in src.state_dict().items() if k.startswith("backbone.")}
    state["head.projection.weight"] = torch.zeros(400, src.backbone.out_channels)
    torch.save({"model_state": state, "epoch": 20, "cfg": "MODEL:\n  ARCH: slowfast\n"}, tmp_path / "SLOWFAST.pyth")
    dst = build_detector("slowfast_r50_tiny", num_classes=3).eval()
    report = load_pretrained(dst, str(tmp_path / "SLOWFAST.pyth"))
    assert report.source == "pyslowfast" and report.ignored == ["head.projection.weight"]
    assert _same_backbone(src, dst)
    clip = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(dst.backbone(clip)[1], src.backbone(clip)[1])


def test_torchvision_image_weights(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    # torchvision's vgg16() state dict without building its 120M-parameter classifier.
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    state.update({"classifier.6.weight": torch.zeros(1000, 4096), "classifier.6.bias": torch.zeros(1000)})
    torch.save(state, tmp_path / "vgg16.pth")
    model = build_detector("vgg16_gap", num_classes=3)
    report = load_pretrained(model, str(tmp_path / "vgg16.pth"))
    assert report.source == "torchvision" and all(k.startswith("classifier.") for k in report.ignored)
    # conv6 (the GAP addition) and the head are new.
    assert report.missing == ["backbone.features.30.weight", "backbone.features.30.bias", "head.proj.weight",
                              "head.proj.bias"]
    from torchvision.models.resnet import Bottleneck, ResNet

    net = ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=8)  # resnet50_tiny's trunk + fc
    torch.save(net.state_dict(), tmp_path / "r50.pth")
    model = build_detector("resnet50_tiny", num_classes=3)
    report = load_pretrained(model, str(tmp_path / "r50.pth"))
    assert report.ignored == ["fc.weight", "fc.bias"] and report.missing == ["head.proj.weight", "head.proj.bias"]
    assert torch.equal(model.state_dict()["backbone.features.layer4.0.conv2.weight"], net.layer4[0].conv2.weight)


def _x3d_to_pyslowfast(key: str) -> str:
    """pytorchvideo X3D key -> PySlowFast key (slowfast/models/stem_helper.py X3DStem,
    resnet_helper.py X3DTransform, operators.py SE), written independently of the loader."""
    k = key.replace("backbone.", "", 1)
    stem = {"blocks.0.conv.conv_t.": "conv_xy.", "blocks.0.conv.conv_xy.": "conv.", "blocks.0.norm.": "bn."}
    for old, new in stem.items():
        if k.startswith(old):
            return "s1.pathway0_stem." + new + k[len(old):]
    stage, block, rest = re.match(r"blocks\.(\d)\.res_blocks\.(\d+)\.(.+)", k).groups()
    table = [("branch1_conv.", "branch1."), ("branch1_norm.", "branch1_bn."), ("branch2.conv_a.", "branch2.a."),
             ("branch2.norm_a.", "branch2.a_bn."), ("branch2.conv_b.", "branch2.b."),
             ("branch2.norm_b.0.", "branch2.b_bn."), ("branch2.norm_b.1.block.0.", "branch2.se.fc1."),
             ("branch2.norm_b.1.block.2.", "branch2.se.fc2."), ("branch2.norm_b.", "branch2.b_bn."),
             ("branch2.conv_c.", "branch2.c."), ("branch2.norm_c.", "branch2.c_bn.")]
    for old, new in table:
        if rest.startswith(old):
            rest = new + rest[len(old):]
            break
    return f"s{int(stage) + 1}.pathway0_res{block}.{rest}"


def test_pyslowfast_x3d_checkpoint_loads_to_the_same_network(tmp_path):
    torch.manual_seed(0)
    src = build_detector("x3d_xs_tiny", num_classes=3).eval()
    state = {_x3d_to_pyslowfast(k): v for k, v in src.state_dict().items() if k.startswith("backbone.")}
    assert "s2.pathway0_res0.branch2.se.fc1.weight" in state and "s1.pathway0_stem.conv_xy.weight" in state
    state["head.conv_5.weight"] = torch.zeros(1)
    torch.save({"model_state": state}, tmp_path / "X3D_XS.pyth")
    dst = build_detector("x3d_xs_tiny", num_classes=3).eval()
    report = load_pretrained(dst, str(tmp_path / "X3D_XS.pyth"))
    assert report.source == "pyslowfast" and report.ignored == ["head.conv_5.weight"]
    assert _same_backbone(src, dst)
