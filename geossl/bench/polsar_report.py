"""PolSAR San Francisco benchmark: the ONE command that produces the table.

    geossl bench polsar --root $GEOSSL_REAL_DATA/polsar_sf_airsar --out runs/polsar \
        --doc docs/benchmarks_polsar.md

Runs :func:`geossl.bench.polsar.run_polsar_benchmark` (geossl SimCLR / MoCo v2 with linear probe
and kNN, the same encoder randomly initialised, supervised from scratch on the same labels, and
logistic regression on hand-crafted per-patch features; 10 and 50 labels per class, 5 seeds, OA
and AA on the test blocks of a 128 px checkerboard), prints the table, writes
``<out>/results.json``, ``<out>/table.md``, the PNGs, and, when ``--doc FILE`` is given, the
PolSAR section of that markdown file (e.g. ``docs/benchmarks_polsar.md`` of a source checkout)
between generated-section markers, keeping any hand-written text around them. Without ``--doc``
no file outside ``--out`` is written. ``--root`` defaults to
``$GEOSSL_REAL_DATA/polsar_sf_airsar``; with neither, the command says so and stops (exit 2).

Every option of :class:`~geossl.bench.polsar.PolsarBenchConfig` is a flag (``--pretrain-steps``,
``--methods simclr moco``, ...); a small smoke run: ``--pretrain-steps 20 --seeds 2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

from geossl.bench.data import REAL_DATA_ENV, real_sample
from geossl.bench.polsar import (
    PolsarBenchConfig,
    compare_to_baselines,
    comparison_markdown,
    comparison_verdict,
    pretty_name,
    run_polsar_benchmark,
    verdict,
)
from geossl.core.errors import ConfigError, GeosslError
from geossl.core.io import atomic_write_text
from geossl.core.options import field_help

#: the sample under ``$GEOSSL_REAL_DATA`` that ``--root`` defaults to
SAMPLE = "polsar_sf_airsar"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Flags for every benchmark option (from the dataclass, with its help), plus ``--doc``."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = PolsarBenchConfig(root="")
    for f in dataclasses.fields(PolsarBenchConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        text = field_help(f).replace("%", "%%")  # argparse %-formats a help
        if f.name == "root":
            p.add_argument(flag, default=None,
                           help=f"{text} (default: ${REAL_DATA_ENV}/{SAMPLE})")
        elif isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value,
                           help=text)
        elif isinstance(value, tuple):
            # an empty default has no element to take the type from: use the annotation
            kind = type(value[0]) if value else (int if "int" in str(f.type) else str)
            # these three may be given empty (no SSL, the patch alone, the last stage only)
            empty_ok = f.name in ("methods", "windows", "feature_stages")
            p.add_argument(flag, nargs="*" if empty_ok else "+", type=kind, default=list(value),
                           help=text)
        elif value is None:
            p.add_argument(flag, default=None, help=text)
        else:
            p.add_argument(flag, type=type(value), default=value, help=text)
    p.add_argument("--doc", default=None,
                   help="markdown file whose PolSAR section (between generated-section "
                        "markers) the run rewrites, e.g. docs/benchmarks_polsar.md of a source "
                        "checkout; not given or '': no file outside --out is written")
    p.add_argument("--from-results", default=None, metavar="JSON",
                   help="only rewrite --doc (required then) from a saved results.json (no run)")
    return p


def doc_section(results: dict[str, Any], command: str) -> str:
    """The PolSAR section of docs/benchmarks.md, from the results of one run."""
    cfg, data, pre = results["config"], results["data"], results["pretrain"]
    budgets = ", ".join(str(b) for b in cfg["budgets"])
    pre_lines = "\n".join(
        f"- {name}: {info['steps']} steps in {info['seconds']:.0f} s, loss "
        f"{info['loss_first']:.3f} -> {info['loss_last']:.3f}" for name, info in pre.items())
    # the paired comparison is recomputed from the per-seed records (a --from-results rewrite
    # of an older run gets it too)
    table, ruling = "(no SSL line in this run)", ""
    if results.get("primary") or cfg.get("methods"):
        primary = tuple(results.get("primary") or (
            f"geossl {pretty_name(cfg['methods'][0])}", "linear probe"))
        comp = compare_to_baselines(results["runs"], primary, cfg["budgets"])
        table = comparison_markdown(comp, primary, cfg["budgets"])
        ruling = comparison_verdict(comp, primary, cfg["budgets"])
    when = results.get("finished") or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"""## PolSAR San Francisco (AIRSAR, L-band T3): SSL with few labels

Produced by one command (code: `geossl/bench/polsar.py`, `geossl/bench/polsar_report.py`):

```
{command}
```

Measured {when} on {platform.machine()} CPU, {results['threads']} torch threads, device
`{results['device']}`; whole run {results['seconds'] / 60:.1f} min.

**Protocol.** Scene {data['shape'][0]} x {data['shape'][1]}, classes {', '.join(data['classes'])}
(label values checked against the image, see `geossl.datasets.polsar.SF_AIRSAR_CLASSES`). Input: 9
channels (T11/T22/T33 in dB, normalised real/imag T12/T13/T23), standardised with scene-wide
statistics. {cfg['patch']} px patches every {cfg['stride']} px, labelled by their majority class
at >= {cfg['purity']:.0%} purity: {data['patches_labelled']} patches. Split by a
{cfg['block']} px checkerboard of spatial blocks: a patch belongs to the block its footprint lies
in, patches overlapping two blocks are dropped ({data['dropped_on_borders']}), leaving
{data['train']} training-block patches (per class {data['train_per_class']}) and {data['test']}
test-block patches (per class {data['test_per_class']}). Labels: {budgets} patches per class
drawn from the training blocks (fewer when a class has fewer), {cfg['seeds']} seeds, the same
draws for every row; OA and AA (mean per-class recall) on all test-block patches, mean ± std over
seeds.{_select(cfg)}

**Rows.** geossl SSL = `{cfg['backbone']}` (timm) with a 3 x 3 stride-{cfg['stem_stride']} stem
and no max-pool, pretrained without labels on {cfg['context']} px windows of the whole scene
(every {cfg['pretrain_stride']} px, test blocks included: transductive, as the issue asks) for
{cfg['pretrain_steps']} steps x batch {cfg['pretrain_batch']} (AdamW, lr {cfg['lr']}); views:
random resized crop (scale {cfg['crop_scale']}) to {cfg['patch']} px, flips, 90° rotations,
Gamma speckle ({cfg['speckle_looks']} looks, p = {cfg['speckle_p']}) added in dB to the diagonal
channels only,{_orientation(cfg)} blur p = {cfg['blur_p']}, no brightness/contrast jitter.
Frozen features: {_features(cfg)}{_windows(cfg)};
linear probe = L-BFGS logistic regression on standardised features, weight decay picked
{_probe(cfg)}; or cosine kNN (k = {cfg['knn_k']}, capped at the number of labels).
*random init* = the same encoder with random weights, the same features and the same probe.
*supervised from scratch* = the same encoder trained end to end on the same labels
({cfg['scratch_steps']} AdamW steps, flips/rotations){_scratch(cfg)}.
*hand-crafted* = logistic regression on 9 per-patch features: T11/T22/T33 in dB and the
normalised off-diagonal terms, either of the patch-mean matrix or as the patch mean of the
per-pixel features;
{_handcrafted(cfg)}. Issue reference for the hand-crafted baseline (16 px): OA 0.879 / AA
0.914 at 10 labels per class, OA 0.924 / AA 0.935 at 50.

Pretraining:
{pre_lines}

{results['table']}
**Paired comparison per baseline** (the SSL line minus each baseline line on the same label
draws: mean over seeds, [95 % Student t interval], seeds where SSL is ahead; ✓ = interval above
zero):

{table}
**Verdict.** {ruling} (Each interval is a separate 95 % interval, without correction for the
number of comparisons.)

Best lines by mean, for reference: {verdict(results['summary'], cfg['budgets'][0], results['runs'])}

Pictures: `{cfg['out']}/split.png` (Pauli RGB, labels with the checkerboard, patches kept),
`{cfg['out']}/tsne_<method>.png` (t-SNE of SSL embeddings of the test patches).
"""


def _features(cfg: dict[str, Any]) -> str:
    stages = cfg.get("feature_stages") or []
    if not stages:
        return "the pooled output of the last stage"
    names = ", ".join(str(i) for i in stages)
    return f"global average pools of ResNet stages {names}, concatenated"


def _windows(cfg: dict[str, Any]) -> str:
    wins = [int(x) for x in cfg.get("windows") or []]
    if not wins:
        return ""
    sizes = "+".join(str(x) for x in [cfg["patch"], *wins])
    return (f"; multi-scale (lines marked ({sizes} px)): the same features of windows of "
            f"{', '.join(str(x) for x in wins)} px centred on the patch (shifted inside the scene "
            "at its borders), concatenated with the patch's own; image pixels only, no labels. "
            "The random-init rows get the same multi-scale features and probe, and the "
            "hand-crafted rows the same windows (their 9 patch-mean features per window, "
            "concatenated). A window of a training patch may cover test-block pixels and vice "
            "versa, as the transductive pretraining already does; no label crosses")


def _orientation(cfg: dict[str, Any]) -> str:
    p = float(cfg.get("orientation_p") or 0.0)
    if p <= 0:
        return ""
    return (f" polarimetric orientation turns (T3 rotated about the line of sight by a uniform "
            f"angle in ±{cfg.get('orientation_max_deg', 45.0):g}°, p = {p}),")


def _select(cfg: dict[str, Any]) -> str:
    if not cfg.get("select"):
        return ""
    half = int(cfg.get("select_half") or 0)
    if half == 2:
        return (" **Selection run (--select, --select-half 2): each half of the *training* "
                "blocks (every other block row) scored in turn with labels drawn from the other, "
                "draws of both halves pooled; the test blocks are not used.**")
    return (f" **Selection run (--select, --select-half {half}): scored on the "
            f"{('odd', 'even')[half]} block rows of the *training* blocks, labels drawn from the "
            f"{('even', 'odd')[half]} ones; the test blocks are not used.**")


def _scratch(cfg: dict[str, Any]) -> str:
    if int(cfg.get("scratch_steps") or 0) <= 0:
        return " (not run here: --scratch-steps 0)"
    return f", on the {cfg['patch']} px patch only" if cfg.get("windows") else ""


def _probe(cfg: dict[str, Any]) -> str:
    folds = int(cfg.get("probe_folds") or 0)
    if folds >= 2:
        return f"by {folds}-fold cross-validation on the labelled patches only"
    return "on a 20 % hold-out of the labelled patches only"


def _handcrafted(cfg: dict[str, Any]) -> str:
    fixed = ("the same probe with scikit-learn's default C = 1 (the objective of its\n"
             "`LogisticRegression`, no search)")
    if int(cfg.get("probe_folds") or 0) >= 2:
        return (f"fitted twice: with the very linear probe (and cross-validation) of the\n"
                f"learned features, and with {fixed}")
    return fixed


BEGIN = "<!-- bench_polsar: generated section, begin -->"
END = "<!-- bench_polsar: generated section, end -->"


def update_doc(path: str | Path, section: str) -> None:
    """Write ``section`` between the generated-section markers of ``path``.

    Text outside the markers (hand-written notes) is kept; a file without markers gets the
    section appended; a missing file is created.
    """
    path = Path(path)
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = (old.rstrip() + "\n\n" if old.strip() else "") + block
    atomic_write_text(path, text)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse flags, run the benchmark, write the doc section; 2 on user errors.

    ``prog`` is the command's name in ``--help`` and in the command recorded in the doc.
    """
    args = build_parser(prog).parse_args(argv)
    values = vars(args)
    doc = values.pop("doc")
    from_results = values.pop("from_results")
    for f in dataclasses.fields(PolsarBenchConfig):
        if isinstance(getattr(PolsarBenchConfig(root=""), f.name), tuple):
            values[f.name] = tuple(values[f.name])
    given = list(argv if argv is not None else sys.argv[1:])
    try:
        if from_results and not doc:
            raise ConfigError("--from-results only rewrites a doc: give --doc FILE")
        if values["root"] is None:  # --from-results needs no scene
            values["root"] = "" if from_results else str(real_sample(
                SAMPLE, "--root", "a PolSAR scene folder holding T3/ or C3/"))
        cfg = PolsarBenchConfig(**values)
        if from_results:
            results = json.loads(Path(from_results).read_text())
        else:
            from geossl.core.io import check_output

            # before the benchmark: absent, empty or an earlier bench output (marked as ours
            # once the scene is read)
            check_output(cfg.out, "bench", own=("results.json", "table.md", "half0"))
            results = run_polsar_benchmark(cfg)
    except GeosslError as err:
        print(f"{prog or 'geossl bench polsar'}: error: {err}", file=sys.stderr)
        return 2
    if doc:
        if "--from-results" in given:  # the run's own flags, not this rewrite's
            i = given.index("--from-results")
            del given[i : i + 2]
        command = results.get("command") or f"{prog or 'geossl bench polsar'} " + " ".join(given)
        results["command"] = command
        if not from_results:
            atomic_write_text(Path(cfg.out) / "results.json",
                              json.dumps(results, indent=1) + "\n")
        update_doc(doc, doc_section(results, command))
        print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
