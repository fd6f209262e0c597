"""Released recipes never change: recipes/LOCK holds their sha256, and every version has a CHANGELOG line."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from helpers import ROOT

from launch.preflight.check import lock_problems, read_lock

RECIPES = sorted((ROOT / "recipes").glob("*/v*/*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_released_recipe_matches_its_lock(path):
    assert lock_problems(path, yaml.safe_load(path.read_text()), ROOT) == []


def test_lock_is_what_sha256sum_checks():
    lines = [line for line in (ROOT / "recipes/LOCK").read_text().splitlines() if not line.startswith("#")]
    done = subprocess.run(["sha256sum", "-c"], input="\n".join(lines) + "\n", cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.relative_to(ROOT).as_posix() for p in RECIPES} <= set(read_lock(ROOT))


def test_every_recipe_version_has_a_changelog_line():
    changelog = (ROOT / "recipes/CHANGELOG.md").read_text()
    for version in sorted({p.parent for p in RECIPES}):
        assert f"`{version.parent.name}/{version.name}`" in changelog, version


def test_a_changed_released_recipe_fails_the_lock(tmp_path):
    for part in ("recipes", "launch/engines"):
        shutil.copytree(ROOT / part, tmp_path / part)
    recipe = tmp_path / "recipes/openbiollm-70b/v1/sft.yaml"
    recipe.write_text(recipe.read_text().replace("lora_dropout: 0.05", "lora_dropout: 0.1"))
    engine = tmp_path / "launch/engines/zero3.json"
    engine.write_text(engine.read_text().replace('"overlap_comm": true', '"overlap_comm": false'))
    problems = lock_problems(recipe, yaml.safe_load(recipe.read_text()), tmp_path)
    assert len(problems) == 2
    assert all("changed since its release" in p and "new version folder (v2/)" in p for p in problems)


def test_an_unreleased_recipe_is_told_how_to_release(tmp_path):
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    draft = tmp_path / "recipes/smollm2-135m/v99/sft.yaml"
    draft.parent.mkdir()
    shutil.copy(ROOT / "recipes/smollm2-135m/v1/sft.yaml", draft)
    (problem,) = lock_problems(draft, yaml.safe_load(draft.read_text()), tmp_path)
    assert "recipes/smollm2-135m/v99/sft.yaml is not in recipes/LOCK" in problem and "sha256sum" in problem


def test_lock_names_no_file_that_is_gone():
    assert all((ROOT / path).is_file() for path in read_lock(ROOT)), "recipes/LOCK names a deleted file"


def test_each_new_version_says_in_the_changelog_what_the_one_before_got_wrong():
    changelog = (ROOT / "recipes/CHANGELOG.md").read_text()
    lines = changelog.replace("\n  ", " ").splitlines()  # one line per entry
    entries = {line.split("`")[1]: line for line in lines if line.startswith("- `")}
    for version in sorted({p.parent for p in RECIPES}):
        number = int(version.name[1:])
        if number > 1:
            entry = entries[f"{version.parent.name}/{version.name}"]
            assert f"v{number - 1}" in entry, entry  # names the version it fixes


def test_released_v1_openbiollm_recipes_are_still_locked_beside_their_v2():
    lock = read_lock(ROOT)
    for model in ("openbiollm-8b", "openbiollm-70b"):
        for version in ("v1", "v2"):
            assert {f"recipes/{model}/{version}/sft.yaml", f"recipes/{model}/{version}/dpo.yaml"} <= set(lock)
