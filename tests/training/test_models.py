"""Model creation, local weights loading, no-download errors, device selection."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from training import TrainConfig, create_model
from training.messages import NO_DOWNLOAD_MESSAGE
from training.models import (
    embed_and_logits,
    join_model_states,
    load_weights,
    read_weights_file,
    split_model_states,
)

NO_DOWNLOAD = NO_DOWNLOAD_MESSAGE.split("(")[0].strip()[:40]


def test_create_model_any_timm_arch_with_data_channels() -> None:
    model = create_model("test_resnet", 3, 1)
    x = torch.rand(2, 1, 32, 32)
    assert model(x).shape == (2, 3)
    emb, logits = embed_and_logits(model.eval(), x)
    assert emb.shape == (2, model.num_features) and logits.shape == (2, 3)
    torch.testing.assert_close(logits, model(x))


def test_unknown_architecture_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown timm architecture 'resnet_nope'"):
        create_model("resnet_nope", 2, 1)


def test_pretrained_without_a_file_never_downloads() -> None:
    with pytest.raises(ValueError, match="never downloads") as err:
        create_model("test_resnet", 2, 1, pretrained=True)
    assert "TrainConfig.pretrained_weights" in str(err.value) and "--" not in str(err.value)
    with pytest.raises(ValueError, match="never downloads"):
        create_model("test_resnet", 2, 1, pretrained_weights="imagenet")
    with pytest.raises(ValueError, match="never downloads"):
        TrainConfig(pretrained_weights="timm/resnet18.a1_in1k")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("test_resnet", 2, 1, pretrained_weights=Path("/nonexistent/w.pt"))
    for url in ("https://host/w.pt", "s3://bucket/w.pt", Path("https://host/w.pt")):
        with pytest.raises(ValueError, match="never downloads"):
            TrainConfig(pretrained_weights=url)  # type: ignore[arg-type]
    # a drive letter is a path, not a URL scheme
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("test_resnet", 2, 1, pretrained_weights="C:/weights/w.pt")


def test_weights_with_another_head_size_load_and_keep_a_fresh_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(1)
    source = create_model("test_resnet", 5, 1)
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="training.models"):
        model = create_model("test_resnet", 2, 1, pretrained_weights=path)
    src, dst = source.state_dict(), model.state_dict()
    head = model.pretrained_cfg["classifier"]
    for key, value in dst.items():
        if key.startswith(head + "."):
            assert value.shape != src[key].shape
        else:
            torch.testing.assert_close(value, src[key])
    assert "fresh" in caplog.text and head in caplog.text


def test_checkpoint_with_state_dict_key_prefix_and_other_channels(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = create_model("test_resnet", 2, 3)
    ckpt = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    state = read_weights_file(path)
    assert set(state) == set(source.state_dict())
    model = create_model("test_resnet", 2, 1, pretrained_weights=path)
    conv = model.pretrained_cfg["first_conv"] + ".weight"
    torch.testing.assert_close(model.state_dict()[conv], source.state_dict()[conv].sum(1, keepdim=True))


def test_fold_ensemble_states_round_trip_and_load_their_first_model_as_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(3)
    models = [create_model("test_resnet", 2, 1) for _ in range(3)]
    states = [m.state_dict() for m in models]
    assert join_model_states(states[:1]) == states[0]  # one model: a plain state dict
    joined = join_model_states(states)
    assert set(joined) == {f"model{i}.{k}" for i in range(3) for k in states[0]}
    back = split_model_states(joined)
    assert len(back) == 3
    for got, want in zip(back, states):
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert split_model_states(states[0]) == [states[0]]
    with pytest.raises(ValueError, match="at least one"):
        join_model_states([])
    path = tmp_path / "fold_0.pt"
    torch.save(joined, path)
    with caplog.at_level("INFO", logger="training.models"):
        loaded = read_weights_file(path)
    assert all(torch.equal(loaded[k], states[0][k]) for k in states[0])
    assert "holds 3 models" in caplog.text


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="matches the model"):
        load_weights(create_model("test_resnet", 2, 1), path)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds no state dict"):
        read_weights_file(tmp_path / "list.pt")


def test_config_round_trip_and_validation(tmp_path: Path) -> None:
    cfg = TrainConfig(model="test_resnet", pretrained_weights=tmp_path / "w.pt", flips="both")
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.config_hash() == cfg.config_hash()
    assert cfg.replace(jobs=4, quiet=True).config_hash() == cfg.config_hash()
    assert cfg.replace(seed=1).config_hash() != cfg.config_hash()
    with pytest.raises(ValueError, match="flips must be one of"):
        TrainConfig(flips="diagonal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown TrainConfig option"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(TypeError, match="folds must be an int"):
        TrainConfig(folds=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown masked variant"):
        TrainConfig(masked_variants=("eyes",))
    with pytest.raises(ValueError, match="threads must be None or an int >= 1"):
        TrainConfig(threads=0)
    assert cfg.replace(threads=1).config_hash() == cfg.config_hash()


def test_stem_pool_auto_drops_the_max_pool_for_small_inputs_only() -> None:
    x = torch.rand(1, 1, 32, 32)
    kept = create_model("test_resnet", 2, 1, stem_pool="auto", input_side=128).eval()
    dropped = create_model("test_resnet", 2, 1, stem_pool="auto", input_side=32).eval()
    assert isinstance(kept.maxpool, torch.nn.MaxPool2d)
    assert isinstance(dropped.maxpool, torch.nn.Identity)
    side_kept = kept.forward_features(x).shape[-1]
    side_dropped = dropped.forward_features(x).shape[-1]
    assert side_dropped == 2 * side_kept
    # no parameter changes: a checkpoint of one loads strictly into the other
    dropped.load_state_dict(kept.state_dict(), strict=True)
    assert isinstance(create_model("test_resnet", 2, 1, stem_pool="auto").maxpool,
                      torch.nn.MaxPool2d)  # no input side known: keep


def test_stem_pool_auto_keeps_the_max_pool_of_a_pretrained_model(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(create_model("test_resnet", 2, 1).state_dict(), path)
    loaded = create_model("test_resnet", 2, 1, stem_pool="auto", input_side=32,
                          pretrained_weights=path)
    assert isinstance(loaded.maxpool, torch.nn.MaxPool2d)  # its filters were learned with it
    forced = create_model("test_resnet", 2, 1, stem_pool="drop", input_side=32,
                          pretrained_weights=path)
    assert isinstance(forced.maxpool, torch.nn.Identity)  # an explicit choice is obeyed


def test_stem_pool_drop_on_a_model_without_one_names_the_model() -> None:
    assert isinstance(create_model("test_convnext", 2, 1, stem_pool="auto", input_side=32),
                      torch.nn.Module)  # auto: nothing to drop, no error
    with pytest.raises(ValueError, match="has no stem max-pool"):
        create_model("test_convnext", 2, 1, stem_pool="drop")
    with pytest.raises(ValueError, match="stem_pool must be one of"):
        create_model("test_resnet", 2, 1, stem_pool="remove")
    with pytest.raises(ValueError, match=r"TrainConfig\.stem_pool must be one of"):
        TrainConfig(stem_pool="remove")  # type: ignore[arg-type]
