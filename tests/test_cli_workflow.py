"""The train / evaluate / predict / demo commands end to end, and their error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from unet_lib.cli.parser import main
from unet_lib.data.synthetic import make_synthetic_dataset

TINY = ["--depth", "2", "--base-filters", "4", "--batch-size", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "membranes", num_images=8, size=32, seed=5
    )


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--epochs", "2", "--quiet"]
    assert main(args + TINY) == 0
    return run


def test_train_writes_the_run_folder_and_reports(run, capsys):
    for name in ("best.keras", "last.keras", "config.json", "history.csv", "state.json"):
        assert (run / name).is_file(), name
    report = json.loads((run / "evaluation_val.json").read_text())
    assert 0.0 <= report["mean_dice"] <= 1.0
    config = json.loads((run / "config.json").read_text())
    assert config["depth"] == 2 and config["base_filters"] == 4 and config["epochs"] == 2


def test_train_options_reach_the_configuration(data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--quiet", *TINY]
    args += ["--loss", "dice", "--class-weights", "1,3", "--no-augment", "--split", "contiguous"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["loss"] == "dice" and config["class_weights"] == [1.0, 3.0]
    assert config["augment"] is False and config["split"] == "contiguous"
    assert config["val_stems"] == ["0006", "0007"][-len(config["val_stems"]) :]


def test_evaluate_model_writes_the_json_keys(run, data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--model", str(run / "best.keras"), "--data", str(data),
                 "--json", str(out), "--split", "all"])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("mean_dice", "mean_iou", "pixel_accuracy", "per_class", "per_image", "rand_error"):
        assert key in report, key
    assert set(report["per_class"]) == {"background", "membrane"}
    assert set(report["per_class"]["membrane"]) >= {"dice", "iou", "precision", "recall"}
    assert len(report["per_image"]) == 8 and "stem" in report["per_image"][0]
    assert "mean Dice" in capsys.readouterr().out


def test_evaluate_scores_the_runs_validation_images_by_default(run, data, tmp_path, capsys):
    config = json.loads((run / "config.json").read_text())
    model = str(run / "best.keras")
    for split, expected in ((None, config["val_stems"]), ("train", config["train_stems"])):
        out = tmp_path / f"{split}.json"
        extra = [] if split is None else ["--split", split]
        assert main(["evaluate", "--model", model, "--data", str(data), "--json", str(out),
                     *extra]) == 0  # fmt: skip
        stems = [r["stem"] for r in json.loads(out.read_text())["per_image"]]
        assert sorted(stems) == sorted(expected)  # 8 images at 0.2: 2 validate, 6 train
    said = capsys.readouterr().out
    assert "the run's 2 validation images (--split val" in said
    assert "the run's 6 training images (--split train" in said


def test_evaluate_split_needs_the_folder_the_run_trained_on(run, data, tmp_path, capsys):
    import shutil

    other = tmp_path / "copy"
    shutil.copytree(data, other)  # the same images elsewhere: not the run's folder
    model = str(run / "best.keras")
    assert main(["evaluate", "--model", model, "--data", str(other)]) == 0  # default: all
    assert "every image of" in capsys.readouterr().out
    assert main(["evaluate", "--model", model, "--data", str(other), "--split", "val"]) == 1
    assert "give --data the folder the run trained on" in capsys.readouterr().err
    pred = tmp_path / "pred"
    pred.mkdir()
    assert main(["evaluate", "--predictions", str(pred), "--data", str(data), "--split",
                 "val"]) == 1  # fmt: skip
    assert "needs --model" in capsys.readouterr().err


def test_evaluate_and_predict_follow_the_runs_tta_and_threshold(run, data, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(eval_tta=True, eval_threshold=0.7)
    (copy / "config.json").write_text(json.dumps(config))
    model, reports = str(copy / "best.keras"), {}
    for name, extra in (("auto", []), ("explicit", ["--tta", "on", "--threshold", "0.7"]),
                        ("plain", ["--tta", "off", "--threshold", "0.5"])):  # fmt: skip
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--model", model, "--data", str(data), "--json", str(out),
                     *extra]) == 0  # fmt: skip
        reports[name] = json.loads(out.read_text())
        reports[name]["stdout"] = capsys.readouterr().out
    assert f"evaluate: tta on, threshold 0.7 ({copy / 'config.json'})" in reports["auto"]["stdout"]
    assert "config.json" not in reports["plain"]["stdout"]  # both given: nothing read
    assert reports["auto"]["mean_dice"] == reports["explicit"]["mean_dice"]
    masks = {}
    for name, extra in (("auto", []), ("explicit", ["--tta", "--threshold", "0.7"])):
        assert main(["predict", "--model", model, "--input", str(data / "images"),
                     "--out", str(tmp_path / name), *extra]) == 0  # fmt: skip
        masks[name] = cv2.imread(str(tmp_path / name / "0000.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(masks["auto"], masks["explicit"])


def test_predict_then_score_the_folder_equals_scoring_the_model(run, data, tmp_path):
    masks = tmp_path / "pred"
    assert main(["predict", "--model", str(run / "best.keras"), "--input",
                 str(data / "images"), "--out", str(masks), "--overlay"]) == 0  # fmt: skip
    written = sorted(p.name for p in masks.iterdir())
    assert "0000.png" in written and "0000_overlay.png" in written
    values = np.unique(cv2.imread(str(masks / "0000.png"), cv2.IMREAD_UNCHANGED))
    assert set(values.tolist()) <= {0, 255}  # the dataset's own encoding
    from_model, from_folder = tmp_path / "model.json", tmp_path / "folder.json"
    assert main(["evaluate", "--model", str(run / "best.keras"), "--data", str(data),
                 "--json", str(from_model), "--split", "all"]) == 0  # fmt: skip
    assert main(["evaluate", "--predictions", str(masks), "--data", str(data),
                 "--json", str(from_folder)]) == 0  # fmt: skip
    a, b = json.loads(from_model.read_text()), json.loads(from_folder.read_text())
    assert a["mean_dice"] == pytest.approx(b["mean_dice"], abs=1e-6)
    assert a["rand_error"] == pytest.approx(b["rand_error"], abs=1e-6)


def test_predict_tiled_with_tta(run, data, tmp_path):
    out = tmp_path / "tiled"
    code = main(["predict", "--model", str(run / "best.keras"), "--input",
                 str(data / "images" / "0001.png"), "--out", str(out), "--tile", "16",
                 "--tta"])  # fmt: skip
    assert code == 0 and (out / "0001.png").is_file()


def test_demo_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNET_DATA_DIR", str(tmp_path / "generated"))
    assert main(["demo", "--fast", "--out", str(tmp_path / "demo")]) == 0
    assert (tmp_path / "demo" / "curves.png").is_file()
    assert "Rand error" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["evaluate", "--model", "missing.keras", "--data", "."], "no model file at missing.keras"),
        (["predict", "--model", __file__, "--input", ".", "--out", "x"], "not a .keras model"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_not_a_model_file(tmp_path, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip archive")
    assert main(["evaluate", "--model", str(fake), "--data", str(tmp_path)]) == 1
    assert "is not a readable Keras model" in capsys.readouterr().err


def test_train_on_a_missing_folder_lists_the_problem(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_bad_option_is_a_usage_error(capsys):
    assert main(["train", "--data", "x", "--out", "y", "--loss", "hinge"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_traceback_on_request(tmp_path):
    args = [sys.executable, "-m", "unet_lib", "evaluate", "--model", "missing.keras", "--data", "."]
    quiet = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    loud = subprocess.run(args[:3] + ["--traceback"] + args[3:], capture_output=True, text=True,
                          cwd=tmp_path)  # fmt: skip
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def test_a_registered_loss_trains_from_the_command_line(data, tmp_path, monkeypatch):
    """Adding a loss: one function and one registry line; --loss then offers it."""
    from unet_lib.losses import DiceCELoss
    from unet_lib.training import LOSSES

    def light_ce(class_weights, ignore_class):
        return DiceCELoss(dice_weight=0.5, ignore_class=ignore_class)

    monkeypatch.setitem(LOSSES, "light_ce", light_ce)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1",
            "--steps-per-epoch", "1", "--loss", "light_ce", "--quiet", *TINY]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["loss"] == "light_ce"


def test_every_train_flag_has_help_and_its_default(capsys):
    import argparse

    from unet_lib.cli.parser import build_parser

    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    expected = [
        "--epochs N epochs to train (default: 50)",
        "--batch-size N images per step and replica (default: derived from the data; 8",
        "--loss {dice_ce,dice,ce,focal,tversky}",
        "--time-budget MINUTES",
        "--no-auto-configure switch off",
        "--val-data DIR | --val-fraction F",
    ]
    for flag in expected:
        assert flag in text, flag
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for action in commands.choices["train"]._actions:
        assert action.help, action.option_strings
