"""PSNR/SSIM and protocol tests against scikit-image as the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lorun_cli import metrics
from lorun_cli.errors import LorunError, UsageError


def _sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """scikit-image SSIM with the Wang et al. settings; a, b are (C, H, W)."""
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)
    if a.shape[0] == 1:
        return float(structural_similarity(a[0], b[0], **kw))
    return float(structural_similarity(a, b, channel_axis=0, **kw))


def _structured(c: int, h: int, w: int, seed: int) -> np.ndarray:
    """Gradient + checkerboard + disc test pattern, (C, H, W) in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for k in range(c):
        grad = (xx + k * yy) / (w + k * h)
        checker = ((xx // 4 + yy // 4) % 2) * 0.3
        disc = ((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 4) ** 2) * 0.4
        out.append(np.clip(0.5 * grad + checker + disc + 0.02 * rng.standard_normal((h, w)), 0, 1))
    return np.stack(out)


def _noisy(a: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a + sigma * rng.standard_normal(a.shape), 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_psnr_ssim_match_skimage(channels: int, kind: str) -> None:
    rng = np.random.default_rng(channels)
    ref = rng.random((channels, 33, 41)) if kind == "random" else _structured(channels, 33, 41, 1)
    est = _noisy(ref, 0.07, 2)
    p = metrics.psnr(torch.from_numpy(est), torch.from_numpy(ref))
    s = metrics.ssim(torch.from_numpy(est), torch.from_numpy(ref))
    assert p == pytest.approx(peak_signal_noise_ratio(ref, est, data_range=1.0), abs=1e-3)
    assert s == pytest.approx(_sk_ssim(est, ref), abs=1e-3)


def test_float32_inputs_and_other_data_range() -> None:
    ref = _structured(1, 24, 30, 3) * 255.0
    est = np.clip(ref + 6.0 * np.random.default_rng(4).standard_normal(ref.shape), 0, 255)
    t_est, t_ref = torch.from_numpy(est).float(), torch.from_numpy(ref).float()
    assert metrics.psnr(t_est, t_ref, data_range=255.0) == pytest.approx(
        peak_signal_noise_ratio(ref.astype(np.float32), est.astype(np.float32), data_range=255.0), abs=1e-3
    )
    assert metrics.ssim(t_est, t_ref, data_range=255.0) == pytest.approx(
        _sk_ssim(est.astype(np.float32), ref.astype(np.float32), 255.0), abs=1e-3
    )


def test_batch_is_mean_of_images_and_identical_is_inf() -> None:
    refs = [_structured(1, 20, 20, i) for i in range(3)]
    ests = [_noisy(r, 0.02 * (i + 1), 10 + i) for i, r in enumerate(refs)]
    batch_est = torch.from_numpy(np.stack(ests))
    batch_ref = torch.from_numpy(np.stack(refs))
    want_p = np.mean([peak_signal_noise_ratio(r, e, data_range=1.0) for r, e in zip(refs, ests)])
    want_s = np.mean([_sk_ssim(e, r) for r, e in zip(refs, ests)])
    assert metrics.psnr(batch_est, batch_ref) == pytest.approx(want_p, abs=1e-3)
    assert metrics.ssim(batch_est, batch_ref) == pytest.approx(want_s, abs=1e-3)
    assert math.isinf(metrics.psnr(batch_ref, batch_ref))
    assert metrics.ssim(batch_ref, batch_ref) == pytest.approx(1.0, abs=1e-12)


def test_border_crop() -> None:
    ref = _structured(3, 30, 34, 5)
    est = _noisy(ref, 0.05, 6)
    b = 4
    crop = (slice(None), slice(b, -b), slice(b, -b))
    assert metrics.psnr(torch.from_numpy(est), torch.from_numpy(ref), border=b) == pytest.approx(
        peak_signal_noise_ratio(ref[crop], est[crop], data_range=1.0), abs=1e-3
    )
    assert metrics.ssim(torch.from_numpy(est), torch.from_numpy(ref), border=b) == pytest.approx(
        _sk_ssim(est[crop], ref[crop]), abs=1e-3
    )
    # errors confined to the border disappear once it is cropped
    damaged = ref.copy()
    damaged[:, :b, :] = 0.0
    assert math.isinf(metrics.psnr(torch.from_numpy(damaged), torch.from_numpy(ref), border=b))
    assert not math.isinf(metrics.psnr(torch.from_numpy(damaged), torch.from_numpy(ref)))
    with pytest.raises(LorunError):
        metrics.psnr(torch.from_numpy(est), torch.from_numpy(ref), border=20)


def test_rgb_to_y_matches_skimage() -> None:
    rgb = np.random.default_rng(7).random((3, 9, 11))
    y = metrics.rgb_to_y(torch.from_numpy(rgb))
    assert y.shape == (1, 9, 11)
    want = rgb2ycbcr(rgb.transpose(1, 2, 0))[..., 0] / 255.0
    np.testing.assert_allclose(y[0].numpy(), want, atol=1e-6)
    batched = metrics.rgb_to_y(torch.from_numpy(rgb)[None])
    assert batched.shape == (1, 1, 9, 11)


def test_quantize_8bit() -> None:
    x = torch.tensor([-0.2, 0.0, 0.5 / 255 - 1e-4, 0.5 / 255 + 1e-4, 0.5, 1.3])
    q = metrics.quantize_8bit(x)
    np.testing.assert_allclose(q.numpy(), [0.0, 0.0, 0.0, 1 / 255, 128 / 255, 1.0], atol=1e-7)


def test_score_gray8_quantises() -> None:
    ref = np.round(_structured(1, 24, 24, 8) * 255) / 255
    tiny = ref + 0.3 / 255 * np.sign(np.random.default_rng(9).standard_normal(ref.shape))
    out = metrics.score(torch.from_numpy(tiny), torch.from_numpy(ref), "gray8")
    assert math.isinf(out["psnr"]) and out["ssim"] == pytest.approx(1.0)
    # float PSNR of the same pair is finite: the protocol really quantises
    assert not math.isinf(metrics.psnr(torch.from_numpy(tiny), torch.from_numpy(ref)))


def test_score_y_protocol() -> None:
    ref = _structured(3, 30, 30, 11)
    est = _noisy(ref, 0.04, 12)
    border = 3

    def y8(a: np.ndarray) -> np.ndarray:
        a8 = np.round(np.clip(a, 0, 1) * 255) / 255
        y = rgb2ycbcr(a8.transpose(1, 2, 0))[..., 0]
        return np.round(y)[border:-border, border:-border] / 255.0

    out = metrics.score(torch.from_numpy(est), torch.from_numpy(ref), "y", border=border)
    assert out["psnr"] == pytest.approx(peak_signal_noise_ratio(y8(ref), y8(est), data_range=1.0), abs=1e-3)
    assert out["ssim"] == pytest.approx(_sk_ssim(y8(est)[None], y8(ref)[None]), abs=1e-3)


def test_score_rgb_protocol() -> None:
    ref = _structured(3, 26, 28, 13)
    est = _noisy(ref, 0.04, 14)
    q = lambda a: (np.round(np.clip(a, 0, 1) * 255) / 255)[:, 2:-2, 2:-2]  # noqa: E731
    out = metrics.score(torch.from_numpy(est), torch.from_numpy(ref), "rgb", border=2)
    assert out["psnr"] == pytest.approx(peak_signal_noise_ratio(q(ref), q(est), data_range=1.0), abs=1e-3)
    assert out["ssim"] == pytest.approx(_sk_ssim(q(est), q(ref)), abs=1e-3)


def test_score_bands_is_per_band_average() -> None:
    ref = np.random.default_rng(15).random((6, 20, 22))
    band_sigma = np.linspace(0.01, 0.08, 6)[:, None, None]
    est = ref + band_sigma * np.random.default_rng(16).standard_normal(ref.shape)
    out = metrics.score(torch.from_numpy(est), torch.from_numpy(ref), "bands")
    want_p = np.mean([peak_signal_noise_ratio(ref[k], est[k], data_range=1.0) for k in range(6)])
    assert out["psnr"] == pytest.approx(want_p, abs=1e-3)
    assert out["ssim"] == pytest.approx(_sk_ssim(est, ref), abs=1e-3)
    # per-band average differs from the PSNR of the pooled MSE when band errors differ
    assert abs(out["psnr"] - metrics.psnr(torch.from_numpy(est), torch.from_numpy(ref))) > 0.1


def test_protocol_text_and_errors() -> None:
    assert set(metrics.PROTOCOL_TEXT) == {"gray8", "y", "rgb", "bands"}
    assert all(isinstance(v, str) and "\n" not in v for v in metrics.PROTOCOL_TEXT.values())
    x = torch.rand(1, 16, 16)
    with pytest.raises(UsageError):
        metrics.score(x, x, "psnr-please")
    with pytest.raises(LorunError, match="differs"):
        metrics.psnr(x, torch.rand(1, 16, 17))
    with pytest.raises(LorunError, match="at least 11"):
        metrics.ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 8))
