"""Every experiment config against the table of the studies' stated settings
(``geossl.conf.studies``): header rendered from the table, stated values kept, differences real;
a config missing from the table is reported; ``geossl config list`` shows each one's source."""

from __future__ import annotations

from pathlib import Path

import pytest

from geossl.cli import main
from geossl.conf import studies

CONFIGS = sorted(studies.EXPERIMENTS_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=studies.config_key)
def test_config_matches_the_studies_table(config: Path) -> None:
    assert studies.check_config(config) == []


def test_every_table_run_has_its_config() -> None:
    keys = {studies.config_key(c) for c in CONFIGS}
    assert set(studies.RUNS) <= keys
    assert {r.study for r in studies.RUNS.values()} == set(studies.STUDIES)
    for run in studies.RUNS.values():
        assert run.reproduces and run.published
        assert not set(run.open) & set(run.differences), run.config


def test_known_differences_removed() -> None:
    """The settings issue 22 lists: ViT-B backbones, 3 repeats with clustering, listed t-SNE
    epochs, SEN12MS 10 S2 bands through a frozen 1x1 adapter."""
    runs = studies.RUNS
    vits = [r.stated["backbone"] for r in runs.values() if "vit" in r.stated.get("backbone", "")]
    # ViT-B p4/p8/p16 x Adam/LAMB on CIFAR-10, AID and PolSAR San Francisco
    assert len(vits) == 18 and all(v.startswith("vit_base_patch") for v in vits)
    assert runs["simclr_backbones/04_evaluate_aid"].stated["seeds"] == "0,1,2"
    assert runs["tsne_deepcluster/01_pretrain_simclr_resnet18_cifar10"].stated[
        "tsne_epochs"] == [1, 21, 51, 91]
    moco = runs["moco_sen12ms/03_pretrain_moco_geo"].stated
    assert moco["adapter"] == "linear-frozen" and len(moco["bands"].split(",")) == 10


def test_a_config_outside_the_table_is_reported(tmp_path: Path) -> None:
    stray = tmp_path / "simclr_backbones" / "09_pretrain_new.yaml"
    stray.parent.mkdir()
    stray.write_text("# a new run\nmethod: simclr\n")
    (problem,) = studies.check_config(stray)
    assert "simclr_backbones/09_pretrain_new" in problem and "study: none" in problem
    stray.write_text("# study: none -- a method recipe, not a study run\nmethod: mae\n")
    assert studies.check_config(stray) == []


def test_a_changed_setting_is_reported(tmp_path: Path) -> None:
    src = studies.EXPERIMENTS_DIR / "simclr_backbones" / "01_pretrain_cifar10_vit_p4_adam.yaml"
    copy = tmp_path / "simclr_backbones" / src.name
    copy.parent.mkdir()
    copy.write_text(src.read_text().replace("vit_base_patch4", "vit_small_patch4"))
    (problem,) = studies.check_config(copy)
    assert "backbone is 'vit_small_patch4', the study states 'vit_base_patch4'" in problem
    copy.write_text(src.read_text().replace("# settings: as in the study\n", ""))
    assert any("header" in p for p in studies.check_config(copy))


def test_config_list_shows_each_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    for key, run in studies.RUNS.items():
        line = next(x for x in out.splitlines() if x.strip().startswith(f"experiments/{key} "))
        assert f"(study {run.study}: {run.reproduces})" in line
    recipes = out.split("recipes: ")[1].split("\n")[1:]
    assert any(x.strip().startswith("pretrain/moco_sen12ms_geo ") for x in recipes)
    assert not any(x.strip().startswith("experiments/") for x in recipes)
