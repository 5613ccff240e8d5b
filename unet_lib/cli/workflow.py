"""The workflow sub-commands of ``python -m unet_lib``: train, evaluate, predict, demo.

Each is a thin layer over the library function of the same name, so the shell and the
notebook give the same results. Options a user leaves out are not passed on, so the
library's defaults (and a resumed run's stored settings) apply.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


# ----------------------------------------------------------------------------- train
def add_train(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a U-Net on a dataset folder into a run folder (resumable)",
        description="Train a U-Net. Rerunning the same command on the same --out resumes "
        "after the last finished epoch.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="folder with images/, masks/")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-data", metavar="DIR", help="a separate validation folder")
    val.add_argument("--val-fraction", type=float, metavar="F", help="default 0.2")
    p.add_argument("--split", choices=("random", "contiguous"), help="validation split kind")
    p.add_argument("--labels", metavar="JSON_OR_FILE", help="mapping overriding dataset.json")
    p.add_argument("--channels", type=int, choices=(1, 3), help="convert images to 1 or 3")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument(
        "--time-budget", type=float, metavar="MINUTES", help="train for this wall-clock time"
    )
    p.add_argument("--steps-per-epoch", type=int, metavar="N")
    p.add_argument("--batch-size", type=int, metavar="B")
    p.add_argument("--patch-size", type=int, metavar="P", help="random crops of P x P")
    p.add_argument(
        "--foreground-fraction",
        type=float,
        metavar="F",
        help="share of patches centred on a foreground pixel (nnU-Net: 0.33)",
    )
    p.add_argument("--base-filters", type=int, metavar="F")
    p.add_argument("--depth", type=int, metavar="D")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--dropout", type=float, metavar="R")
    p.add_argument("--upsampling", choices=("transpose", "bilinear"))
    p.add_argument("--padding", choices=("same", "valid"))
    p.add_argument("--loss", choices=("dice_ce", "dice", "ce", "focal", "tversky"))
    p.add_argument("--class-weights", metavar="W", help="'balanced' or one weight per class: 1,5,2")
    p.add_argument("--weight-map", action="store_true", help="the U-Net paper's weight map")
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    p.add_argument("--learning-rate", type=float, metavar="LR")
    p.add_argument("--schedule", choices=("constant", "cosine", "plateau"))
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument("--elastic", action="store_true", help="add elastic deformation")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--deterministic", action="store_true", help="reproducible on this CPU")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument(
        "--devices",
        metavar="SPEC",
        help="cpu, cpu:N (N logical CPU devices), gpu, gpu:0,1 (default: UNET_DEVICES, else "
        "all GPUs); several devices train with MirroredStrategy, TF_CONFIG with several "
        "workers with MultiWorkerMirroredStrategy; --batch-size is per replica",
    )
    p.add_argument(
        "--no-auto-configure",
        action="store_true",
        help="use the library's fixed defaults instead of deriving them from the data",
    )
    p.add_argument(
        "--eval-tta",
        choices=("auto", "on", "off"),
        help="test-time augmentation when evaluating (auto: if it helps on validation)",
    )
    p.add_argument("--tensorboard", action="store_true", help="write RUN/tensorboard logs")
    p.add_argument("--overwrite", action="store_true", help="start afresh in --out")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    return p


_TRAIN_OPTIONS = {
    "foreground_fraction": "foreground_fraction",
    "val_data": "val_data",
    "val_fraction": "val_fraction",
    "split": "split",
    "labels": "labels",
    "channels": "channels",
    "epochs": "epochs",
    "time_budget": "time_budget_minutes",
    "steps_per_epoch": "steps_per_epoch",
    "batch_size": "batch_size",
    "patch_size": "patch_size",
    "base_filters": "base_filters",
    "depth": "depth",
    "batch_norm": "batch_norm",
    "dropout": "dropout",
    "upsampling": "upsampling",
    "padding": "padding",
    "loss": "loss",
    "optimizer": "optimizer",
    "learning_rate": "learning_rate",
    "schedule": "schedule",
    "seed": "seed",
    "precision": "precision",
}


def train_options(args: argparse.Namespace) -> dict:
    """The :func:`unet_lib.train` keyword arguments for the options given on the line."""
    options = {
        key: getattr(args, name)
        for name, key in _TRAIN_OPTIONS.items()
        if getattr(args, name) is not None
    }
    if isinstance(options.get("labels"), str):
        from unet_lib.data.folder import load_label_mapping

        options["labels"] = load_label_mapping(args.data, args.labels).to_dict()
    if args.class_weights is not None:
        text = args.class_weights.strip()
        options["class_weights"] = (
            "balanced" if text == "balanced" else [float(v) for v in text.split(",")]
        )
    if args.weight_map:
        options["weight_map"] = True
    if args.deterministic:
        options["deterministic"] = True
    if args.no_auto_configure:
        options["auto_configure"] = False
    if args.eval_tta is not None:
        options["eval_tta"] = {"auto": "auto", "on": True, "off": False}[args.eval_tta]
    if args.no_augment:
        options["augment"] = False
    elif args.elastic:
        options["augment"] = {"elastic": True}
    return options


def run_train(args: argparse.Namespace) -> int:
    from unet_lib.evaluation.evaluator import format_report
    from unet_lib.training.loop import train

    result = train(
        args.data,
        args.out,
        verbose=2 if args.quiet else 1,
        tensorboard=args.tensorboard,
        overwrite=args.overwrite,
        devices=args.devices,
        **train_options(args),
    )
    state = result.state
    devices = result.config.devices or {}
    print(
        f"train: {state['epochs_done']} epochs in {state['train_seconds']:.0f} s "
        f"({state['stopped_reason']}); best {state['monitor']} {state['best_score']:.4f} at "
        f"epoch {state['best_epoch']}; strategy {devices.get('strategy')}, "
        f"{devices.get('replicas')} replica(s); model: {result.run_dir / 'best.keras'}"
    )
    if result.config.val_stems:
        report = _evaluate_run(result)
        print(format_report(report))
    return 0


def _evaluate_run(result) -> dict:
    from unet_lib.evaluation.evaluator import evaluate, save_json
    from unet_lib.training.loop import evaluation_settings

    tta, threshold = evaluation_settings(result.config.to_dict())
    report = evaluate(
        result.model,
        result.config.data,
        labels=result.config.labels,
        stems=result.config.val_stems,
        tta=tta,
        threshold=threshold,
    )
    save_json(report, result.run_dir / "evaluation_val.json")
    return report


# ----------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="score a model, or a folder of predicted masks, against a dataset",
        description="Dice, IoU, precision, recall per class and per image, pixel accuracy "
        "and (binary data) the ISBI Rand error.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="FILE", help="a .keras model (e.g. RUN/best.keras)")
    source.add_argument("--predictions", metavar="DIR", help="predicted masks, same stems")
    p.add_argument("--data", required=True, metavar="DIR", help="folder with images/, masks/")
    p.add_argument("--labels", metavar="JSON_OR_FILE", help="mapping overriding dataset.json")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    _add_tta_and_threshold(p)
    p.add_argument("--tile", type=int, metavar="N", help="predict in N x N tiles")
    p.add_argument("--overlap", type=float, default=0.25, metavar="F", help="tile overlap")
    return p


def _add_tta_and_threshold(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        nargs="?",
        const="on",
        default="auto",
        choices=("auto", "on", "off"),
        help="average flips and rotations; auto (default) = what training chose on the "
        "validation images (eval_tta in the model's config.json), off without one",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="binary models: label 1 where p >= P (default: eval_threshold from the model's "
        "config.json, else 0.5)",
    )


def _tta_and_threshold(args: argparse.Namespace, command: str) -> tuple[bool, float]:
    """``--tta`` / ``--threshold``, else the choices recorded in the model's run folder."""
    from unet_lib.training.loop import evaluation_settings

    run = _run_config(args.model)
    run_tta, run_threshold = evaluation_settings(run)
    tta = {"on": True, "off": False}.get(args.tta, run_tta)
    threshold = run_threshold if args.threshold is None else args.threshold
    if args.tta == "auto" or args.threshold is None:
        source = Path(args.model).parent / "config.json" if run else "defaults"
        print(f"{command}: tta {'on' if tta else 'off'}, threshold {threshold:g} ({source})")
    return tta, threshold


def run_evaluate(args: argparse.Namespace) -> int:
    from unet_lib.evaluation.evaluator import evaluate, evaluate_folder, format_report, save_json

    if args.model:
        tta, threshold = _tta_and_threshold(args, "evaluate")
        model = load_model(args.model)
        report = evaluate(
            model,
            args.data,
            labels=_labels_for(args.data, args.labels, args.model),
            tta=tta,
            threshold=threshold,
            tile_size=args.tile,
            overlap=args.overlap,
        )
    else:
        report = evaluate_folder(args.predictions, args.data, labels=args.labels)
    print(format_report(report))
    if args.json:
        print(f"evaluate: wrote {save_json(report, args.json)}")
    return 0


# ----------------------------------------------------------------------------- predict
def add_predict(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="predict masks for an image or a folder of images",
        description="Write one mask per image (PNG, in the dataset's grey values when the "
        "model's run folder has them) and, with --overlay, a colour overlay.",
    )
    p.add_argument("--model", required=True, metavar="FILE", help="a .keras model")
    p.add_argument("--input", required=True, metavar="FILE_OR_DIR", help="image(s)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the masks")
    p.add_argument("--tile", type=int, metavar="N", help="predict in N x N tiles")
    p.add_argument("--overlap", type=float, default=0.25, metavar="F", help="tile overlap")
    _add_tta_and_threshold(p)
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png")
    p.add_argument("--labels", metavar="JSON_OR_FILE", help="mapping for the saved masks")
    return p


def run_predict(args: argparse.Namespace) -> int:
    from unet_lib.inference.predictor import predict_folder

    tta, threshold = _tta_and_threshold(args, "predict")
    model = load_model(args.model)
    written = predict_folder(
        model,
        args.input,
        args.out,
        mapping=args.labels or _run_labels(args.model),
        overlay=args.overlay,
        tile_size=args.tile,
        overlap=args.overlap,
        tta=tta,
        threshold=threshold,
    )
    print(f"predict: wrote {len(written)} files to {args.out}")
    return 0


# ----------------------------------------------------------------------------- demo
def add_demo(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="generate the built-in data, train briefly, evaluate and plot",
        description="The whole workflow on the built-in synthetic membranes.",
    )
    p.add_argument("--out", default="runs/demo", metavar="RUN", help="default runs/demo")
    p.add_argument("--epochs", type=int, default=20, metavar="N", help="default 20")
    p.add_argument("--fast", action="store_true", help="a tiny model for 2 epochs (smoke test)")
    return p


def run_demo(args: argparse.Namespace) -> int:
    from unet_lib import viz
    from unet_lib.data.synthetic import ensure_default_dataset
    from unet_lib.evaluation.evaluator import format_report
    from unet_lib.training.loop import train

    data = ensure_default_dataset("binary")
    print(f"demo: data in {data}")
    options = dict(epochs=args.epochs, base_filters=16, depth=3)
    if args.fast:
        options = dict(epochs=2, base_filters=4, depth=2)
    result = train(data, args.out, verbose=2, **options)
    report = _evaluate_run(result)
    print(format_report(report))
    figure = viz.plot_history(result.history, save=Path(args.out) / "curves.png")
    print(f"demo: curves in {Path(args.out) / 'curves.png'}")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return 0


# ----------------------------------------------------------------------------- helpers
def load_model(path: str):
    """Load a ``.keras`` model with ``safe_mode=True``, with one clear error line."""
    from unet_lib.model import load_model as load

    return load(path)


def _run_config(model_path: str) -> dict:
    """The ``config.json`` of the model's run folder, ``{}`` when there is none."""
    config = Path(model_path).parent / "config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def _run_labels(model_path: str) -> dict | None:
    """The label mapping recorded in the model's run folder (``config.json``), if any."""
    return _run_config(model_path).get("labels")


def _labels_for(data_dir: str, labels, model_path: str):
    """``--labels``, else the data's ``dataset.json``, else the model's run folder."""
    if labels is not None or (Path(data_dir) / "dataset.json").is_file():
        return labels
    return _run_labels(model_path)


COMMANDS = {
    "train": (add_train, run_train),
    "evaluate": (add_evaluate, run_evaluate),
    "predict": (add_predict, run_predict),
    "demo": (add_demo, run_demo),
}
