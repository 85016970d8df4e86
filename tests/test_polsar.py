from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.polsar import (
    PIXEL_CRS,
    SF_AIRSAR_CLASSES,
    PolSAR,
    feature_names,
    patch_labels,
    pauli_powers,
    polsar_features,
    polsar_patches,
    read_labels,
    read_polsar,
    rotate_t3_features,
)
from tests.conftest import real_path
from tests.data.polsar.data import generate


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("polsar"))


def test_read_t3_c3(scene: dict[str, Path]) -> None:
    t3, meta = read_polsar(scene["t3"].parent)  # scene folder: T3 preferred
    assert meta["kind"] == "t3" and t3.shape == (9, 48, 64) and t3.dtype == np.float32
    assert meta["crs"] is None and meta["config"]["Nrow"] == "48"
    raw = np.fromfile(scene["t3"] / "T12_imag.bin", dtype="<f4").reshape(48, 64)
    np.testing.assert_array_equal(t3[4], raw)
    c3, meta_c = read_polsar(scene["c3"])
    assert meta_c["kind"] == "c3" and meta_c["names"][0] == "C11"
    # both matrices describe the same scene: same Pauli powers and span
    np.testing.assert_allclose(pauli_powers(t3, "t3"), pauli_powers(c3, "c3"), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(t3[:3].sum(0), c3[:3].sum(0), rtol=1e-4)


def test_features_values(scene: dict[str, Path]) -> None:
    t3, _ = read_polsar(scene["t3"])
    f = polsar_features(t3, pauli=True, span=True)
    names = feature_names("t3", pauli=True, span=True)
    assert f.shape == (13, 48, 64) and len(names) == 13 and names[0] == "T11_db"
    np.testing.assert_allclose(f[0], 10 * np.log10(t3[0]), rtol=1e-5)
    coh = t3[3] / np.sqrt(t3[0] * t3[1])
    np.testing.assert_allclose(f[3], coh, rtol=1e-5, atol=1e-6)
    assert np.abs(f[3:9]).max() <= 1.0
    np.testing.assert_allclose(f[9], 10 * np.log10(2 * t3[1]), rtol=1e-5)  # R = |HH-VV|^2
    np.testing.assert_allclose(f[12], 10 * np.log10(t3[:3].sum(0)), rtol=1e-5)
    # zeros and NaN stay finite
    bad = t3.copy()
    bad[:, 0, 0] = 0
    bad[:, 0, 1] = np.nan
    fb = polsar_features(bad)
    assert np.isfinite(fb).all() and fb[0, 0, 0] == pytest.approx(-100)
    with pytest.raises(ConfigError, match="unknown PolSAR feature"):
        polsar_features(t3, features=("nope",))


def test_patches_purity() -> None:
    labels = np.zeros((8, 8), dtype=np.int64)
    labels[:, :4] = 1
    labels[:, 4:] = 2
    labels[0:2, 4:8] = 0  # top-right patch: 8 of 16 labelled
    arr = np.arange(2 * 64, dtype=np.float32).reshape(2, 8, 8)
    patches, lab, rows, cols = polsar_patches(arr, labels, size=4, purity=0.8)
    assert lab.tolist() == [1, 1, 2] and rows.tolist() == [0, 4, 4] and cols.tolist() == [0, 0, 4]
    np.testing.assert_array_equal(patches[2], arr[:, 4:8, 4:8])
    # overlapping stride, mixed patch (cols 2..5) is dropped, relaxed purity keeps more
    _, _, _, cols2 = polsar_patches(arr, labels, size=4, stride=2, purity=0.8)
    assert 2 not in cols2.tolist()
    _, lab3, _, _ = polsar_patches(arr, labels, size=4, purity=0.5)
    assert lab3.tolist() == [1, 2, 1, 2]
    assert patch_labels(labels, np.array([0]), np.array([2]), 4, purity=0.5).tolist() == [1]
    p_all, l_all, _, _ = polsar_patches(arr, None, size=4)
    assert len(p_all) == 4 and (l_all == -1).all()


def test_dataset_grid_and_geoslice(scene: dict[str, Path]) -> None:
    ds = PolSAR(scene["t3"], label_path=scene["labels"], patch_size=16)
    assert ds.crs == PIXEL_CRS and ds.res == (1.0, 1.0)
    x, y, _ = ds.bounds
    assert (x.start, x.stop, y.start, y.stop) == (0, 64, -48, 0)
    assert len(ds) == 12 and ds.ids[5] == "r16_c16"
    s = ds[5]
    assert s["image"].shape == (9, 16, 16) and s["mask"].shape == (16, 16)
    full = ds.scene()
    np.testing.assert_array_equal(s["image"].numpy(), full[:, 16:32, 16:32])
    assert s["id"] == "r16_c16" and s["label"].dtype == torch.int64
    # a GeoSlice: x = col, y = -row
    g = ds[20:36, -40:-24]
    np.testing.assert_array_equal(g["image"].numpy(), full[:, 24:40, 20:36])
    labels = read_labels(scene["labels"])
    np.testing.assert_array_equal(g["mask"].numpy(), labels[24:40, 20:36])
    # partly outside: zero-filled
    edge = ds[56:72, -8:8]
    assert edge["image"].shape == (9, 16, 16)
    assert (edge["image"][:, :8] == 0).all() and (edge["image"][:, 8:, 8:] == 0).all()
    np.testing.assert_array_equal(edge["image"][:, 8:, :8].numpy(), full[:, 0:8, 56:64])
    with pytest.raises(IndexError):
        ds[200:216, -16:0]
    # coarser resolution asked for: resampled
    assert ds[0:32:2, -32:0:2]["image"].shape == (9, 16, 16)


def test_dataset_torchgeo_samplers(scene: dict[str, Path]) -> None:
    ds = PolSAR(scene["t3"], in_memory=False, patch_size=16)
    n = 0
    for query in GridGeoSampler(ds, size=16, stride=16):
        assert ds[query]["image"].shape == (9, 16, 16)
        n += 1
    assert n == 12
    for query in RandomGeoSampler(ds, size=8, length=5):
        img = ds[query]["image"]
        assert img.shape == (9, 8, 8) and torch.isfinite(img).all()


def test_dataset_ids_and_c3(scene: dict[str, Path]) -> None:
    ds = PolSAR(scene["c3"], patch_size=16, ids=["r32_c48", "r0_c0"])
    assert ds.ids == ["r0_c0", "r32_c48"] and ds.bands[0] == "C11_db"
    with pytest.raises(ConfigError, match="ids"):
        PolSAR(scene["c3"], patch_size=16, ids=["r1_c1"])


def test_errors(scene: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no PolSARpro"):
        PolSAR(tmp_path)
    broken = generate(tmp_path / "b", c3=False)["t3"]
    (broken / "T23_imag.bin").unlink()
    with pytest.raises(DataError, match="T23_imag"):
        read_polsar(broken)
    cfg = generate(tmp_path / "c", c3=False)["t3"]
    (cfg / "config.txt").write_text("Nrow\n40\n---------\nNcol\n64\n")
    with pytest.raises(DataError, match=r"config\.txt"):
        read_polsar(cfg)
    small = tmp_path / "small.png"
    from PIL import Image

    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(small)
    with pytest.raises(DataError, match="label raster is 10 x 10"):
        PolSAR(scene["t3"], label_path=small)
    with pytest.raises(ConfigError, match="larger than the scene"):
        PolSAR(scene["t3"], patch_size=100)


@pytest.mark.real
def test_real_sf_airsar() -> None:
    root = real_path("polsar_sf_airsar")
    label = real_path("polsar_sf_airsar", "labels", "SF-AIRSAR-label2d.png")
    ds = PolSAR(root, label_path=label, patch_size=16)
    assert (ds.height, ds.width) == (900, 1024) and ds.kind == "t3"
    assert ds.classes == list(SF_AIRSAR_CLASSES)
    full = ds.scene()
    assert full.shape == (9, 900, 1024) and np.isfinite(full).all()
    assert ds.labels is not None and set(np.unique(ds.labels)) == {0, 1, 2, 3, 4, 5}
    # physics check of the class encoding: water (3) darkest in T22/T33, urban (4) brightest T22
    med = {k: np.median(full[:3, ds.labels == k], axis=1) for k in range(1, 6)}
    assert min(med, key=lambda k: med[k][1]) == 3
    assert max(med, key=lambda k: med[k][1]) == 4
    # alignment: a nearest-centroid pixel classifier on T11/T22/T33 dB is best with no shift
    def accuracy(dr: int, dc: int) -> float:
        lab = np.roll(ds.labels, (dr, dc), axis=(0, 1))
        sel = lab > 0
        x, y = full[:3, sel].T, lab[sel]
        cents = np.stack([x[y == k].mean(0) for k in range(1, 6)])
        pred = ((x[:, None] - cents[None]) ** 2).sum(-1).argmin(1) + 1
        return float((pred == y).mean())

    base = accuracy(0, 0)
    assert base > 0.7
    for shift in ((10, 0), (-10, 0), (0, 10), (0, -10)):
        assert accuracy(*shift) < base
    patches, lab, _, _ = polsar_patches(full, ds.labels, 16)
    assert patches.shape[1:] == (9, 16, 16) and set(lab.tolist()) == {1, 2, 3, 4, 5}


def test_georeferenced_envi(tmp_path: Path) -> None:
    info = "UTM, 1, 1, 500000, 4200000, 10, 10, 10, North, WGS-84"
    paths = generate(tmp_path, c3=False, map_info=info)
    ds = PolSAR(paths["t3"], patch_size=16)
    assert ds.georeferenced and ds.crs.to_epsg() == 32610 and ds.res == (10.0, 10.0)
    x, y, _ = ds.bounds
    assert (x.start, x.stop, y.start, y.stop) == (500000, 500640, 4199520, 4200000)
    # rows 24..40, cols 20..36 in map coordinates
    s = ds[500200:500360, 4199600:4199760]
    np.testing.assert_array_equal(s["image"].numpy(), ds.scene()[:, 24:40, 20:36])
    assert ds[3]["bounds"][0] == slice(500480.0, 500640.0, 10.0)


def _t3_to_channels(t: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` complex coherency matrices -> the 9 PolSARpro T3 files, ``(9, ...)``."""
    return np.stack([t[..., 0, 0].real, t[..., 1, 1].real, t[..., 2, 2].real,
                     t[..., 0, 1].real, t[..., 0, 1].imag, t[..., 0, 2].real,
                     t[..., 0, 2].imag, t[..., 1, 2].real, t[..., 1, 2].imag])


def test_orientation_rotation_matches_the_rotated_matrix() -> None:
    # oracle: rotate full complex 3 x 3 matrices with numpy, then compute the channels
    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 4, 5, 3, 6)) + 1j * rng.normal(size=(3, 4, 5, 3, 6))
    t = k @ np.conj(np.swapaxes(k, -1, -2)) / 6  # Hermitian, positive definite
    feats = polsar_features(_t3_to_channels(t)).transpose(1, 0, 2, 3)  # (B, 9, H, W)
    mean, std = feats.mean((0, 2, 3)), feats.std((0, 2, 3))
    x = torch.from_numpy((feats - mean[:, None, None]) / std[:, None, None])
    theta = np.array([0.3, -0.7, np.pi / 4])
    got = rotate_t3_features(x, torch.from_numpy(theta), mean.tolist(), std.tolist())
    c, s = np.cos(2 * theta), np.sin(2 * theta)
    rot = np.zeros((3, 3, 3))
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, c, s, -s, c
    turned = np.einsum("bij,bhwjk,blk->bhwil", rot, t, rot)
    want = polsar_features(_t3_to_channels(turned)).transpose(1, 0, 2, 3)
    want = (want - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)
    # invariants: T11 and Im T23 unchanged, T22 + T33 (the span minus T11) conserved
    span = lambda f: 10 ** (f[:, 1] / 10) + 10 ** (f[:, 2] / 10)  # noqa: E731
    un = got.numpy() * std[:, None, None] + mean[:, None, None]
    np.testing.assert_allclose(span(un), span(feats), rtol=1e-4)
    np.testing.assert_allclose(un[:, 0], feats[:, 0], atol=1e-4)
    same = rotate_t3_features(x, torch.zeros(3), mean.tolist(), std.tolist())
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="9 default T3 channels"):
        rotate_t3_features(x[:, :6], torch.zeros(3), mean.tolist(), std.tolist())
