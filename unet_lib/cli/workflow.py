"""The workflow sub-commands of ``python -m unet_lib``: train, evaluate, predict, demo, each a
thin layer over the library function of the same name. The ``train`` flags are generated from
:class:`~unet_lib.training.TrainConfig`'s field metadata; options left out are not passed on,
so the library's defaults (and a resumed run's settings) apply."""

import argparse
import dataclasses
from pathlib import Path

_TYPES = {"int": (int, "N"), "float": (float, "F")}
_RUN_FLAGS = {  # train()'s own arguments, and the one flag that shapes another option
    "--elastic": dict(action="store_true", help="add elastic deformation to the augmentation"),
    "--devices": dict(
        metavar="SPEC",
        help="cpu, cpu:N (N logical CPUs), gpu, gpu:0,1 (default: "
        "UNET_DEVICES, else all GPUs); several: MirroredStrategy, TF_CONFIG workers: "
        "MultiWorkerMirroredStrategy; --batch-size is per replica",
    ),  # fmt: skip
    "--tensorboard": dict(action="store_true", help="write RUN/tensorboard logs"),
    "--overwrite": dict(action="store_true", help="start afresh in --out"),
    "--quiet": dict(action="store_true", help="one line per epoch, no progress bar"),
}


def train_flags() -> dict:
    """The ``train`` flags: one per :class:`TrainConfig` field that has one, from its metadata
    (help with the default or "derived from the data", type, choices, action)."""
    from unet_lib.training import TrainConfig

    flags = {
        "--data": dict(required=True, metavar="DIR", help="folder with images/, masks/"),
        "--out": dict(required=True, metavar="RUN", help="run folder to write"),
    }
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta["flag"]:
            continue
        kwargs = dict(meta["argparse"], dest=f.name, default=None)
        flag = meta["flag"] if isinstance(meta["flag"], str) else f"--{f.name.replace('_', '-')}"
        if flag.startswith("--no-"):
            kwargs.update(action="store_const", const=False)
        elif isinstance(f.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        else:
            kind, metavar = _TYPES.get(f.type.split(" ")[0], (str, "TEXT"))
            kwargs["type"] = kind
            kwargs.setdefault("metavar", None if "choices" in kwargs else metavar)
        off = flag.startswith("--no-")  # its help names the option only, its default "on"
        help = f"switch off {meta['help'].split(' (')[0]}" if off else meta["help"]
        default = _default(f).replace("True", "on")
        flags[flag] = dict(kwargs, help=f"{help} (default: {default})".replace("%", "%%"))
    return {**flags, **_RUN_FLAGS}


def _default(f) -> str:
    if not f.metadata["derived"]:
        return "none" if f.default is None else str(f.default)
    fixed = "" if f.default is None else f"; {f.default} with --no-auto-configure"
    return f"derived from the data{fixed}"


def train_options(args: argparse.Namespace) -> dict:
    """The :func:`unet_lib.train` keyword arguments for the options given on the line."""
    from unet_lib.training import TrainConfig

    options = {}
    for f in dataclasses.fields(TrainConfig):
        value, convert = getattr(args, f.name, None), f.metadata["convert"]
        if f.metadata["flag"] and value is not None:
            options[f.name] = convert(value) if convert else value
    if args.elastic and options.get("augment") is not False:
        options["augment"] = {"elastic": True}
    return options


def run_train(args: argparse.Namespace) -> int:
    from unet_lib.evaluation import format_report
    from unet_lib.training import train

    run = dict(verbose=2 if args.quiet else 1, tensorboard=args.tensorboard, devices=args.devices)
    result = train(args.data, args.out, overwrite=args.overwrite, **run, **train_options(args))
    state, devices = result.state, result.config.devices or {}
    print(
        f"train: {state['epochs_done']} epochs in {state['train_seconds']:.0f} s "
        f"({state['stopped_reason']}); best {state['monitor']} {state['best_score']:.4f} at "
        f"epoch {state['best_epoch']}; strategy {devices.get('strategy')}, "
        f"{devices.get('replicas')} replica(s); model: {result.run_dir / 'best.keras'}"
    )
    if result.config.val_stems:
        print(format_report(_evaluate_run(result)))
    return 0


def _evaluate_run(result) -> dict:
    from unet_lib.evaluation import evaluate, save_json
    from unet_lib.training import evaluation_settings

    cfg = result.config
    tta, threshold = evaluation_settings(cfg.to_dict())
    report = evaluate(
        result.model, cfg.data, labels=cfg.labels, stems=cfg.val_stems, tta=tta, threshold=threshold
    )
    save_json(report, result.run_dir / "evaluation_val.json")
    return report


_TILE_FLAGS = {
    "--tile": dict(type=int, metavar="N", help="predict in N x N tiles"),
    "--overlap": dict(type=float, default=0.25, metavar="F", help="tile overlap (default 0.25)"),
    "--tta": dict(
        nargs="?",
        const="on",
        default="auto",
        choices=("auto", "on", "off"),
        help="average flips and rotations; auto (default) = what training chose on the "
        "validation images (eval_tta in the model's config.json), off without one",
    ),
    "--threshold": dict(
        type=float,
        metavar="P",
        help="binary models: label 1 where p >= P (default: eval_threshold from the model's "
        "config.json, else 0.5)",
    ),
}
_LABELS = dict(metavar="JSON_OR_FILE", help="mapping overriding dataset.json")


def _inference(args: argparse.Namespace, command: str, run: dict) -> dict:
    """``tta`` and ``threshold`` (``--tta`` / ``--threshold``, else the choices recorded in the
    model's run folder: ``run``, its config.json), ``tile_size`` and ``overlap``."""
    from unet_lib.training import evaluation_settings

    run_tta, run_threshold = evaluation_settings(run)
    tta = {"on": True, "off": False}.get(args.tta, run_tta)
    threshold = run_threshold if args.threshold is None else args.threshold
    if args.tta == "auto" or args.threshold is None:
        source = Path(args.model).parent / "config.json" if run else "defaults"
        shown = "on" if tta is True else "off" if tta is False else f"{tta} transforms"
        print(f"{command}: tta {shown}, threshold {threshold:g} ({source})")
    return dict(tta=tta, threshold=threshold, tile_size=args.tile, overlap=args.overlap)


def run_evaluate(args: argparse.Namespace) -> int:
    from unet_lib.evaluation import evaluate, evaluate_folder, format_report, save_json
    from unet_lib.model import load_model

    if args.model:
        run = _run_config(args.model)  # read once: evaluation settings, labels, split
        options, labels = _inference(args, "evaluate", run), args.labels
        if labels is None and not (Path(args.data) / "dataset.json").is_file():
            labels = run.get("labels")  # from the model's run folder
        _check_labels(args.data, labels, run, args.model)
        stems = _split_stems(args, run)
        model = load_model(args.model)
        report = evaluate(model, args.data, labels=labels, stems=stems, verbose=1, **options)
    else:
        if args.split not in (None, "all"):
            raise ValueError(f"--split {args.split} needs --model (its run folder has the split)")
        report = evaluate_folder(args.predictions, args.data, labels=args.labels, verbose=1)
    print(format_report(report))
    if args.json:
        print(f"evaluate: wrote {save_json(report, args.json)}")
    return 0


def _split_stems(args: argparse.Namespace, run: dict) -> list[str] | None:
    """The stems ``--split`` selects (``None``: every image), and a line saying which: by
    default the run's validation images when ``--data`` is the folder the run trained on
    (scoring its training images would flatter the model), every image otherwise."""
    trained_here = (
        bool(run.get("data")) and Path(run["data"]).resolve() == Path(args.data).resolve()
    )
    split = args.split or ("val" if trained_here and run.get("val_stems") else "all")
    if split == "all":
        print(f"evaluate: every image of {args.data} (--split all)")
        return None
    if not trained_here:
        where = f"it trained on {run['data']}" if run.get("data") else "no run config.json"
        raise ValueError(
            f"--split {split} scores the run's own {split} images: give --data the folder the "
            f"run trained on ({where}) and keep config.json beside the model"
        )
    stems = list(run.get(f"{split}_stems") or [])
    if not stems:
        raise ValueError(f"--split {split}: the run has no {split} images; use --split all")
    name = "validation" if split == "val" else "training"
    print(f"evaluate: the run's {len(stems)} {name} images (--split {split}; --split all for "
          "every image)")  # fmt: skip
    return stems


def run_predict(args: argparse.Namespace) -> int:
    from unet_lib.inference import predict_folder
    from unet_lib.model import load_model

    run = _run_config(args.model)
    options, model = _inference(args, "predict", run), load_model(args.model)
    if args.labels:
        _check_labels(".", args.labels, run, args.model)
    mapping = args.labels or run.get("labels")
    written = predict_folder(
        model,
        args.input,
        args.out,
        mapping=mapping,
        overlay=args.overlay,
        verbose=1,
        skip_bad=args.skip_bad,
        **options,
    )
    print(f"predict: wrote {len(written)} files to {args.out}")
    return 0


def run_demo(args: argparse.Namespace) -> int:

    from unet_lib.data import ensure_default_dataset
    from unet_lib.evaluation import format_report
    from unet_lib.training import train

    data = ensure_default_dataset("binary")
    print(f"demo: data in {data}")
    options = dict(epochs=args.epochs, base_filters=16, depth=3)
    if args.fast:
        options = dict(epochs=2, base_filters=4, depth=2)
    result = train(data, args.out, verbose=2, **options)
    print(format_report(_evaluate_run(result)))
    print(f"demo: curves in {Path(args.out) / 'curves.png'} (train draws them)")
    return 0


def _check_labels(data: str, labels, run: dict, model_path: str) -> None:
    """The mapping the masks will be read with (``labels``, else ``data/dataset.json``) must
    be the one the model's run trained with (its ``config.json``), class for class."""
    from unet_lib.training import check_data_labels

    stored = Path(model_path).parent / "config.json"
    check_data_labels(data, labels, run.get("labels"), stored, option="--labels")


def _run_config(model_path: str) -> dict:
    """The ``config.json`` of the model's run folder, ``{}`` when there is none."""
    config = Path(model_path).parent / "config.json"
    if not config.is_file():
        return {}
    from unet_lib.fileio import read_json

    return read_json(config, "fix or remove it (evaluate / predict then use their defaults)")


#: name -> (help, description, flags or a function returning them, run); see parser.COMMANDS
COMMANDS = {
    "train": (
        "train a U-Net on a dataset folder into a run folder (resumable)",
        "Train a U-Net. Rerunning the same command on the same --out resumes after the last "
        "finished epoch. Options not given are derived from the data (see --no-auto-configure).",
        train_flags,
        run_train,
    ),
    "evaluate": (
        "score a model, or a folder of predicted masks, against a dataset",
        "Dice, IoU, precision, recall per class and per image, pixel accuracy and (binary "
        "data) the ISBI Rand error.",
        {
            "--data": dict(required=True, metavar="DIR", help="folder with images/, masks/"),
            "--labels": _LABELS,
            "--json": dict(metavar="OUT", help="write the results as JSON"),
            "--split": dict(
                choices=("val", "train", "all"),
                help="with --model: the run's validation or training images, or every image "
                "(default: val when --data is the folder the run trained on, else all)",
            ),
            **_TILE_FLAGS,
            "--model": dict(group="!", metavar="FILE", help="a .keras model (e.g. RUN/best.keras)"),
            "--predictions": dict(group="!", metavar="DIR", help="predicted masks, same stems"),
        },
        run_evaluate,
    ),
    "predict": (
        "predict masks for an image or a folder of images",
        "Write one mask per image (PNG, in the dataset's grey values when the model's run "
        "folder has them) and, with --overlay, a colour overlay.",
        {
            "--model": dict(required=True, metavar="FILE", help="a .keras model"),
            "--input": dict(required=True, metavar="FILE_OR_DIR", help="image(s)"),
            "--out": dict(required=True, metavar="DIR", help="folder for the masks"),
            **_TILE_FLAGS,
            "--overlay": dict(action="store_true", help="also write <stem>_overlay.png"),
            "--skip-bad": dict(
                action="store_true",
                help="skip unreadable images with a warning (default: report "
                "them all and write nothing)",
            ),  # fmt: skip
            "--labels": dict(_LABELS, help="mapping for the saved masks"),
        },
        run_predict,
    ),
    "demo": (
        "generate the built-in data, train briefly, evaluate and plot",
        "The whole workflow on the built-in synthetic membranes.",
        {
            "--out": dict(default="runs/demo", metavar="RUN", help="default runs/demo"),
            "--epochs": dict(type=int, default=20, metavar="N", help="default 20"),
            "--fast": dict(action="store_true", help="a tiny model for 2 epochs (smoke test)"),
        },
        run_demo,
    ),
}
