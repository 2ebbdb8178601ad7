"""Counterfactual renderings from the general synthesis dataset (TRAIN.DATASET synthesis)."""

import numpy as np
import pytest
import torch

from stal.structures import clip_as_float


def _cfg(repo_root, tmp_path, *opts):
    from stal.config.load import load_cfg

    return load_cfg(f"{repo_root}/configs/instant.yaml",
                    ["TRAIN.DATASET", "synthesis", "GUIDANCE.MODE", "counterfactual", "GUIDANCE.LAMBDA", "1.0",
                     "DEMO.ROOT", str(tmp_path), *opts])


def test_pair_keeps_the_sources_and_swaps_the_rest(repo_root, tmp_path):
    from stal.engine.builders import build_train_loader

    dataset = build_train_loader(_cfg(repo_root, tmp_path)).dataset
    assert dataset.counterfactual
    swapped_somewhere = False
    for i in range(4):
        s, cf = dataset.pair(i)
        target = s.provenance.alpha.sum(0)
        a, b = clip_as_float(s.clip), cf.clip
        # Voxels fully covered by sources are untouched; the rest shows the other background.
        np.testing.assert_allclose(a[target >= 1.0], b[target >= 1.0], atol=1e-6)
        np.testing.assert_allclose(b[target == 0], cf.background[target == 0], atol=1e-6)
        np.testing.assert_array_equal(s.boxes, cf.boxes)
        swapped_somewhere |= bool(np.abs(a[target == 0] - b[target == 0]).max() > 0.05)
    assert swapped_somewhere
    # The item's training clip is the one a run without counterfactuals sees.
    plain = build_train_loader(_cfg(repo_root, tmp_path, "GUIDANCE.ENABLE", "False")).dataset
    torch.testing.assert_close(plain[2]["clip"], dataset[2]["clip"], rtol=0, atol=0)
    assert "clip_cf" in dataset[2] and "clip_cf" not in plain[2]


def test_counterfactual_train_step_on_the_synthesis_dataset(repo_root, tmp_path):
    from stal.engine.builders import build_model, build_objective, build_train_loader

    cfg = _cfg(repo_root, tmp_path)
    batch = next(iter(build_train_loader(cfg)))
    assert batch["clip_cf"].shape == batch["clip"].shape
    losses, stats = build_objective(cfg)(build_model(cfg), batch, guidance_weight=1.0)
    assert torch.isfinite(losses["task"]) and stats["penalty"] >= 0


def test_mixing_synthesizers_cannot_be_re_rendered(repo_root, tmp_path):
    from stal.engine.builders import build_train_loader
    from stal.errors import ConfigError

    with pytest.raises(ConfigError, match="MIXER"):
        build_train_loader(_cfg(repo_root, tmp_path, "SYNTHESIS.MIXER", "batchmix", "MODEL.LOSS_FUNC", "bce"))
