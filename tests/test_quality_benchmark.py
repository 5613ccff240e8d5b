"""benchmarks/quality.py: the fixed splits, the linked folders, the comparison with the plain
recipe, and (with the real data) a short end-to-end run of all four data sets with both
recipes: train, score the held-out block. The 25-minute figures are in benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import quality

REPO = Path(__file__).resolve().parent.parent


def test_fixed_splits():
    train, test = quality.split_stems("isbi", [str(i) for i in range(24)])
    assert train == [str(i) for i in range(18)] and test == [str(i) for i in range(18, 24)]
    train, test = quality.split_stems("vnc", [f"{i:02d}" for i in range(20)])
    assert test == ["16", "17", "18", "19"] and len(train) == 16


def test_dsb_split_is_seeded_80_20_and_disjoint():
    stems = [f"{i:03x}" for i in range(107)]
    train, test = quality.split_stems("dsb", stems)
    assert len(test) == 21 and len(train) == 86  # round(0.2 * 107) = 21
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(stems)
    assert quality.split_stems("dsb", list(reversed(stems))) == (train, test)  # order-free


def test_facade_split_follows_split_csv(tmp_path):
    csv = tmp_path / "split.csv"
    csv.write_text("stem,split\na,train\nb,test\nc,train\n")
    assert quality.split_stems("facade", ["a", "b", "c", "d"], split_csv=csv) == (["a", "c"], ["b"])


def _result(key, recipe, value):
    name = quality.HEADLINE[key][1]
    return {"key": key, "recipe": recipe, "name": quality.DATASETS[key]["name"],
            "test": {name: value}}  # fmt: skip


def test_comparison_targets():
    from benchmarks.bench_common import Report

    report = Report()
    results = [_result("facade", "defaults", 0.50), _result("facade", "plain", 0.46),
               _result("dsb", "defaults", 0.886), _result("dsb", "plain", 0.89),
               _result("isbi", "defaults", 0.056), _result("isbi", "plain", 0.05)]  # fmt: skip
    quality.add_comparison(report, results, smoke=False)
    passed = {t.name.split(":")[0]: t.passed for t in report.targets}
    # facade: 0.50 >= 0.46 + 0.03; DSB: 0.886 >= 0.89 - 0.005; ISBI: error 0.056 > 0.05 + 0.005
    assert passed == {"LabelMeFacade": True, "DSB2018 nuclei": True, "ISBI 2012": False}
    assert quality.add_comparison(Report(), results[:1], smoke=False) is None  # no pair: no row


def test_link_split_makes_a_dataset_folder(tmp_path):
    source = tmp_path / "src"
    for sub in ("images", "masks"):
        (source / sub).mkdir(parents=True)
        for stem in ("0", "1", "2"):
            (source / sub / f"{stem}.png").write_bytes(b"x")
    dest = quality.link_split(source, tmp_path / "dest", ["0", "2"], quality.ISBI_LABELS)
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["0.png", "2.png"]
    assert all(p.is_symlink() for p in (dest / "masks").iterdir())
    assert json.loads((dest / "dataset.json").read_text())["labels"]["membrane"] == 0
    quality.link_split(source, tmp_path / "dest", ["0", "2"], quality.ISBI_LABELS)  # again: ok


def test_score_run_needs_a_finished_run_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--datasets", "isbi", "--recipes",
         "defaults", "--score-run", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and "not a finished run folder" in done.stderr


@pytest.mark.shared_data
def test_end_to_end_on_the_real_data(shared_data, tmp_path):
    out = tmp_path / "quality.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--smoke", "--minutes", "0.1",
         "--data-root", str(shared_data), "--out", str(tmp_path / "runs"), "--json", str(out)],
        capture_output=True, text=True, timeout=1500, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads(out.read_text())["results"]
    assert sorted((r["key"], r["recipe"]) for r in runs) == sorted(
        (k, r) for k in quality.DATASETS for r in quality.RECIPES
    )
    plain = {r["key"]: r for r in runs if r["recipe"] == "plain"}
    assert plain["facade"]["config"]["augment"]["flip_vertical"] is False
    assert plain["facade"]["config"]["base_filters"] == 32 and plain["isbi"]["eval_tta"] is False
    results = {r["key"]: r for r in runs if r["recipe"] == "defaults"}
    facade = results["facade"]  # the photographs: upright augmentation, weighted cross-entropy
    assert facade["config"]["loss"] == "ce" and facade["config"]["augment"]["rotate90"] is False
    assert len(facade["per_class_iou"]) == 9 and facade["test_images"] == 106
    for r in results.values():
        assert r["steps"] > 0 and r["train_seconds"] > 0
        assert 0 <= r["test"]["mean_dice"] <= 1 and 0 <= r["test"]["pixel_error"] <= 1
        assert r["derived"], "the run recorded no derived settings"
    assert results["isbi"]["test_images"] == 6 and results["vnc"]["test_images"] == 4
    assert sorted(results["vnc"]["per_class_iou"]) == sorted(quality.VNC_LABELS)
    assert 0 <= results["isbi"]["test"]["rand_error"] <= 1
    isbi = results["isbi"]["test"]
    for key in ("challenge_pixel_error", "challenge_rand_error"):
        assert 0 <= isbi[key] <= 1 and 0 <= isbi[key + "_at_run_threshold"] <= 1
    assert isbi["challenge_pixel_threshold"] in [round(0.1 * i, 1) for i in range(11)]

    # --score-run scores the same run again without training: the same figures
    again = tmp_path / "again.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--smoke", "--datasets", "isbi",
         "--recipes", "defaults", "--score-run", results["isbi"]["run"],
         "--data-root", str(shared_data), "--out", str(tmp_path / "rescore"),
         "--json", str(again)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rescored = json.loads(again.read_text())["results"][0]
    assert rescored["test"] == pytest.approx(isbi, nan_ok=True)
    assert rescored["steps"] == results["isbi"]["steps"] and rescored["wall_seconds"] is None
