"""What a rerun on a run folder may do: resume with the stored configuration when the
request agrees with it (every option given explicitly, whatever its value) and the data are
read with the same label mapping, or return a finished run's result."""

from pathlib import Path

from unet_lib.data import check_same_mapping, load_label_mapping
from unet_lib.fileio import read_json
from unet_lib.model import load_model
from unet_lib.training import runfolder
from unet_lib.training.callbacks import read_history
from unet_lib.training.config import CONFIG_FILE, TrainConfig, TrainResult

#: Resolved by the first run from the data and the machine: never compared on resume.
RESOLVED = {"labels", "channels", "num_classes", "train_stems", "val_stems", "devices",
            "class_weights"}  # fmt: skip


def config_for_resume(run_dir: Path, requested: TrainConfig, explicit=None) -> TrainConfig:
    """The run folder's stored configuration, if ``requested`` agrees with it on every
    option the caller gave (``explicit``: their names, whatever their values, and the data;
    ``None``: the options that differ from the defaults)."""
    fix = "restore it from a backup, or start the run again with --overwrite"
    stored = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE, fix))
    new, old = requested.to_dict(), stored.to_dict()
    if explicit is None:
        defaults = TrainConfig().to_dict()
        explicit = {k for k, v in new.items() if v != defaults[k]}
    given = {k: new[k] for k in {*explicit, "data"} if k in new and k not in RESOLVED}
    differing = [f"{key}={value!r} (the run has {old[key]!r})" for key, value in
                 sorted(given.items()) if not _same(key, value, old[key])]  # fmt: skip
    if differing:
        raise ValueError(
            f"{run_dir} holds a run started with other settings: {'; '.join(differing)}; "
            "use a new output folder, or overwrite=True (--overwrite) to start afresh."
        )
    return stored


def _same(key, a, b) -> bool:
    """Whether a given value ``a`` agrees with the stored ``b``: ``"auto"`` agrees with
    whatever the run decided; paths compare resolved."""
    if isinstance(a, str) and a == "auto":
        return True
    paths = key in ("data", "val_data") and a is not None and b is not None
    return Path(a).resolve() == Path(b).resolve() if paths else a == b


def load_result(run_dir: Path, config: TrainConfig, state: dict) -> TrainResult:
    """The :class:`TrainResult` of a run folder: its best model (else the last)."""
    best = run_dir / runfolder.BEST_MODEL
    model = load_model(best if best.exists() else run_dir / runfolder.LAST_MODEL)
    return TrainResult(model, read_history(run_dir), run_dir, config, state)


def check_resumed_labels(given, config, run_dir: Path) -> None:
    """The mapping the data would be read with now (``given``, else the data's dataset.json)
    must be the one the run trained with: else a resume would mix up the classes."""
    where = "the labels option" if given is not None else str(Path(config.data) / "dataset.json")
    found = load_label_mapping(config.data, given)
    check_same_mapping(found, config.labels, where, str(run_dir / CONFIG_FILE))
