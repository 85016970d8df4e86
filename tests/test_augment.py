"""GPU-style batch augmentation for standardised multispectral and SAR data."""

from __future__ import annotations

import pytest
import torch

from geossl.core.errors import ConfigError
from geossl.methods.augment import SSLAugment, build_augments

OFF = {"hflip": 0.0, "vflip": 0.0, "rot90": False, "jitter_p": 0.0, "grayscale_p": 0.0,
       "blur_p": 0.0, "speckle_p": 0.0}


def test_shapes_any_bands() -> None:
    for bands, kind in ((2, "sar"), (4, "optical"), (13, "optical")):
        aug = SSLAugment(24, sensor_kind=kind)
        out = aug(torch.randn(5, bands, 32, 32))
        assert out.shape == (5, bands, 24, 24) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_identity_geometry_is_exact() -> None:
    aug = SSLAugment(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **OFF)
    x = torch.randn(3, 13, 16, 16)
    torch.testing.assert_close(aug(x), x)


def test_flips_and_rotations_are_exact() -> None:
    x = torch.randn(8, 4, 16, 16)
    hflip = SSLAugment(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **{**OFF, "hflip": 1.0})
    torch.testing.assert_close(hflip(x), x.flip(-1))
    rot = SSLAugment(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **{**OFF, "rot90": True})
    torch.manual_seed(0)
    out = rot(x)
    for i in range(8):
        candidates = [torch.rot90(x[i], k, dims=(-2, -1)) for k in range(4)]
        assert any(torch.allclose(out[i], c, atol=1e-5) for c in candidates)


def test_standardised_values_are_not_clipped() -> None:
    """TorchGeo's kornia colour pipeline clamped to [0, 1]; ours must keep the data's range."""
    torch.manual_seed(0)
    x = torch.randn(16, 13, 32, 32) * 2
    aug = SSLAugment(32, jitter_p=1.0, brightness=0.4, contrast=0.4, grayscale_p=0.0)
    out = aug(x)
    assert (out < 0).float().mean() > 0.3
    assert (out > 1).float().mean() > 0.1
    assert out.min() < -3 and out.max() > 3


def test_brightness_contrast_on_standardised_data() -> None:
    x = torch.randn(4, 3, 8, 8)
    aug = SSLAugment(8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                     **{**OFF, "jitter_p": 1.0}, brightness=0.0, contrast=0.5)
    out = aug(x)
    # contrast scales about each band's mean: the band means are unchanged
    torch.testing.assert_close(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    ratio = out.std(dim=(2, 3)) / x.std(dim=(2, 3))
    assert ((ratio > 0.49) & (ratio < 1.51)).all()


def test_band_aware_grayscale() -> None:
    x = torch.randn(4, 13, 8, 8)
    aug = SSLAugment(8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                     **{**OFF, "grayscale_p": 1.0})
    out = aug(x)
    mean = x.mean(dim=1, keepdim=True).expand_as(x)
    torch.testing.assert_close(out, mean)


def test_blur_smooths() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 2, 32, 32)
    aug = SSLAugment(32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                     **{**OFF, "blur_p": 1.0}, blur_sigma=(5.0, 5.0))
    assert aug(x).std() < 0.5 * x.std()


def test_sar_speckle_is_gamma_in_linear_power() -> None:
    torch.manual_seed(0)
    db = torch.full((4, 2, 64, 64), -10.0)  # plain dB
    aug = SSLAugment(64, sensor_kind="sar", crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                     **{**OFF, "speckle_p": 1.0}, speckle_looks=4.0)
    out = aug(db)
    linear = 10 ** (out / 10) / 10 ** (-10 / 10)  # multiplicative noise in linear power
    assert abs(linear.mean().item() - 1.0) < 0.02  # Gamma(L, 1/L) has mean 1
    assert abs(linear.var().item() - 1 / 4) < 0.02  # ... and variance 1/L
    # data scaled to one unit per 25 dB: the same noise in dB, divided by 25
    torch.manual_seed(0)
    scaled = SSLAugment(64, sensor_kind="sar", crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                        **{**OFF, "speckle_p": 1.0}, db_per_unit=(25.0, 25.0))(db / 25)
    torch.testing.assert_close(scaled * 25, out, atol=1e-4, rtol=0)


def test_same_geometry_for_two_sensors() -> None:
    torch.manual_seed(0)
    s2 = torch.randn(6, 13, 32, 32)
    s1 = s2[:, :2].clone()
    opt = build_augments(["s1", "s2"], 16, options={"jitter_p": 0.0, "blur_p": 0.0,
                                                    "grayscale_p": 0.0, "speckle_p": 0.0})
    theta = opt["s1"].sample_geometry(6)
    a, b = opt["s1"](s1, geometry=theta), opt["s2"](s2, geometry=theta)
    torch.testing.assert_close(a, b[:, :2])
    c = opt["s1"](s1)  # independent crops differ
    assert not torch.allclose(a, c)


def test_bad_options() -> None:
    with pytest.raises(ConfigError):
        SSLAugment(16, sensor_kind="lidar")
    with pytest.raises(ConfigError, match="bad augmentation option"):
        build_augments(["s2"], 16, options={"hue": 0.1})


def test_gaussian_blur_matches_kornia_per_sample_sigma() -> None:
    """The separable, sync-free blur equals kornia's ``gaussian_blur2d`` (reflect border)."""
    import kornia  # a dependency of torchgeo (the reference here): its absence is a failure

    from geossl.methods.augment import gaussian_blur

    torch.manual_seed(0)
    x = torch.randn(3, 5, 20, 20)
    sigma = torch.tensor([0.5, 1.3, 2.7])
    want = kornia.filters.gaussian_blur2d(x, (9, 9), torch.stack([sigma, sigma], dim=-1),
                                          border_type="reflect")
    torch.testing.assert_close(gaussian_blur(x, sigma, 9), want, atol=1e-5, rtol=1e-4)


def test_orientation_views_turn_t3_matrices_per_sample() -> None:
    mean, std = [-10.0, -15.0, -20.0] + [0.0] * 6, [3.0, 3.0, 3.0] + [0.3] * 6
    torch.manual_seed(0)
    x = torch.randn(64, 9, 8, 8) * 0.3
    x[:, 3:] = 0.0  # uncorrelated channels: a turn only trades power between T22 and T33
    aug = SSLAugment(8, sensor_kind="sar", crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                     **{**OFF, "orientation_p": 1.0, "orientation_max_deg": 45.0},
                     polsar_stats=(mean, std))
    out = aug(x)
    torch.testing.assert_close(out[:, 0], x[:, 0], atol=1e-4, rtol=0)  # T11 never changes

    def power(f: torch.Tensor, i: int) -> torch.Tensor:
        return torch.pow(10.0, (f[:, i] * std[i] + mean[i]) / 10)

    torch.testing.assert_close(power(out, 1) + power(out, 2), power(x, 1) + power(x, 2),
                               rtol=1e-4, atol=0)
    moved = (out[:, 1] - x[:, 1]).abs().amax((1, 2))
    assert (moved > 1e-3).float().mean() > 0.9  # one random angle per sample, almost never 0
    off = SSLAugment(8, sensor_kind="sar", crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                     **{**OFF, "orientation_p": 0.0}, polsar_stats=(mean, std))
    torch.testing.assert_close(off(x), x)
    with pytest.raises(ConfigError, match="polsar_stats"):
        SSLAugment(8, orientation_p=0.5)


def test_elastic_deformation_moves_pixels_within_range() -> None:
    """elastic_p 1: every view warped (pixels move, a smooth ramp stays a monotone-ish ramp
    within its value range, shapes kept, bands moved alike); elastic_p 0: untouched."""
    torch.manual_seed(0)
    ramp = torch.linspace(-2, 2, 32).view(1, 1, 1, 32).expand(3, 2, 32, 32).contiguous()
    ident = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), **OFF}
    torch.testing.assert_close(SSLAugment(32, **ident, elastic_p=0.0)(ramp), ramp)
    out = SSLAugment(32, **ident, elastic_p=1.0, elastic_alpha=2.0)(ramp)
    assert out.shape == ramp.shape
    moved = (out - ramp).abs()
    assert (moved.flatten(1).max(1).values > 0.05).all()  # each view deformed
    assert moved.mean() < 0.5  # smooth: a deformation, not noise
    assert out.min() >= ramp.min() - 1e-5 and out.max() <= ramp.max() + 1e-5
    torch.testing.assert_close(out[:, 0], out[:, 1])  # one field for all bands of a view
    with pytest.raises(ConfigError, match="elastic_p"):
        SSLAugment(32, elastic_p=1.5)
