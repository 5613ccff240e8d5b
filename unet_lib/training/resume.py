"""What a rerun on a run folder may do: resume with the stored configuration when the
request agrees with it (every option given explicitly, whatever its value) and the data are
read with the same label mapping (also checked by evaluate and predict), or return a
finished run's result."""

import json
from pathlib import Path

from unet_lib.data import DatasetError, LabelMapping, load_label_mapping
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
    check_data_labels(config.data, given, config.labels, run_dir / CONFIG_FILE)


def check_data_labels(data, labels, trained, config_path, option="the labels option") -> None:
    """The mapping ``data`` is read with (``labels``, named ``option`` in messages, else
    ``data/dataset.json``) against the one a run ``trained`` with (its ``config_path``):
    :func:`check_same_mapping`. Shared by resume, ``evaluate`` and ``predict``."""
    where = option if labels is not None else str(Path(data) / "dataset.json")
    check_same_mapping(load_label_mapping(data, labels), trained, where, str(config_path))


def check_same_mapping(found, trained, found_where: str, trained_where: str) -> None:
    """Raises ``DatasetError`` unless the mapping ``found`` (the data's, from ``found_where``)
    is the one a model was ``trained`` with (from ``trained_where``): the same class names and
    values in the same order. A reordered ``dataset.json`` would otherwise swap the classes
    without a word (membrane scored as background). Either may be a LabelMapping or a dict in
    the ``dataset.json`` form; ``None`` (nothing recorded) passes."""
    if found is None or trained is None:
        return
    found, trained = (
        m if isinstance(m, LabelMapping) else LabelMapping.from_dict(m) for m in (found, trained)
    )
    if found != trained:
        raise DatasetError(
            f"{found_where} maps {json.dumps(found.to_dict()['labels'])} but the model was "
            f"trained with {json.dumps(trained.to_dict()['labels'])} ({trained_where}): the "
            "classes would be mixed up; use the training run's dataset.json (or --labels) for "
            "these masks",
            header="the label mapping differs from the model's:",
        )
