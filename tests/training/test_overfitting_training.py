"""A real tiny training: a model trained to memorise is flagged by the overfitting check,
a regularised one on the same data is not."""

from __future__ import annotations

from collections.abc import Callable

from audit.engine import audit_run
from audit.rundir import RunDir
from training import TrainConfig, train_run

_COMMON = dict(
    model="test_resnet",
    folds=3,
    batch_size=16,
    quiet=True,
    masked_variants=(),
    class_weighting="none",
    refit=False,
    keep_selected=False,
)
#: No augmentation, no mixup, no weight decay or averaging, many epochs: memorises.
MEMORISE = TrainConfig(
    **_COMMON,
    epochs=20,
    lr=3e-3,
    weight_decay=0.0,  # type: ignore[arg-type]
    augment_probability=0.0,
    mixup=0.0,
    ema_epochs=0.0,
    patience=0,
)
#: Augmentation, mixup, strong weight decay, few epochs.
REGULARISED = TrainConfig(**_COMMON, epochs=3, lr=1e-3, weight_decay=0.3, mixup=0.4)  # type: ignore[arg-type]


def _gap_finding(run: RunDir):  # type: ignore[no-untyped-def]
    res = audit_run(
        run, checks=["overfitting"], config={"overfitting": {"n_boot": 100}}, write=False
    )
    return next(f for f in res.findings if f.title.startswith("In-sample AUC"))


def test_memorising_training_is_flagged_regularised_is_not(
    make_tiny_run: Callable[..., RunDir],
) -> None:
    # 96 images of 16 px with a faint planted square: little to learn, much to memorise
    mem = make_tiny_run("memorise", n=96, size=16, signal=0.05)
    reg = make_tiny_run("regularised", n=96, size=16, signal=0.05)
    train_run(mem, MEMORISE)
    train_run(reg, REGULARISED)
    flagged, control = _gap_finding(mem), _gap_finding(reg)
    assert flagged.severity == "warning", flagged.title
    assert flagged.evidence["gap"]["ci_low"] > 0.1
    assert "on images it trained on" in flagged.message
    assert control.severity == "pass", control.title
    assert "train/in_sample_probs.npy" in flagged.evidence["method"]
