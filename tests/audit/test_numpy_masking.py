"""audit.masking: the numpy masked variants match training's torch ones pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest

from audit import masking as np_masking


@pytest.mark.parametrize("size", [7, 28, 50, 64])
@pytest.mark.parametrize("variant", sorted(np_masking.MASKED_VARIANTS))
def test_numpy_variants_equal_the_torch_variants(variant: str, size: int) -> None:
    torch = pytest.importorskip("torch")
    from training import masking as torch_masking

    rng = np.random.default_rng(size)
    x = rng.random((3, 2, size, size)).astype(np.float32)
    expected = torch_masking.apply_mask(torch.from_numpy(x), variant).numpy()
    got = np_masking.apply_mask(x, variant)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_training_takes_its_fractions_from_audit() -> None:
    pytest.importorskip("torch")
    from training import masking as torch_masking

    for name in ("CENTER_FRACTION", "BORDER_FRACTION", "CORNER_FRACTION"):
        assert getattr(torch_masking, name) is getattr(np_masking, name)
    assert list(torch_masking.MASKED_VARIANTS) == list(np_masking.MASKED_VARIANTS)


def test_uint8_images_keep_their_dtype_and_single_images_work() -> None:
    img = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 256
    img = img.astype(np.uint8)
    out = np_masking.center_masked(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.all(out[13:51, 13:51] == np.uint8(round(float(img.mean()))))
    assert np.array_equal(out[:13], img[:13])
    assert not np.shares_memory(out, img)


def test_errors_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"unknown masked variant 'nope'"):
        np_masking.apply_mask(np.zeros((4, 4)), "nope")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        np_masking.center_masked(np.zeros((4, 4)), fraction=1.5)
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        np_masking.border_only([[0.0]])  # type: ignore[arg-type]
