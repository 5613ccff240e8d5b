"""Tests for unet_lib.data.labels: label mappings (encode, decode, dict form) and inference."""

from __future__ import annotations

import numpy as np
import pytest

from unet_lib import IGNORE_LABEL
from unet_lib.data.labels import DatasetError, LabelMapping, infer_label_mapping

VNC_LABELS = {
    "labels": {
        "membrane": [0, 32, 64, 96, 128],
        "glia": 159,
        "mitochondria": 191,
        "synapse": 223,
        "intracellular": 255,
    }
}


@pytest.mark.parametrize(
    "values, fg_value, names",
    [
        ({0, 255}, 255, ("background", "foreground")),
        ({0, 1}, 1, ("background", "foreground")),
        ({255}, 255, ("background", "foreground")),
        ({0, 1, 2, 3}, None, ("background", "class_1", "class_2", "class_3")),
    ],
)
def test_infer_label_mapping(values, fg_value, names):
    m = infer_label_mapping(values)
    assert m.class_names == names
    if fg_value is not None:
        assert m.is_binary and m.values == ((0,), (fg_value,)) and m.model_num_classes == 1
    else:
        assert m.num_classes == 4 and m.model_num_classes == 4


@pytest.mark.parametrize("values", [{0, 128, 255}, {0, 2}, {1, 2, 3}, set(range(1, 200))])
def test_infer_rejects_other_values_and_shows_dataset_json(values):
    with pytest.raises(DatasetError) as e:
        infer_label_mapping(values, data_dir="/some/dir")
    msg = str(e.value)
    assert "/some/dir/dataset.json" in msg and '{"labels": {' in msg
    assert str(min(values)) in msg


@pytest.mark.parametrize(
    "d, match",
    [
        ({"labels": {"only": 0}}, "at least 2 classes"),
        ({"labels": {"a": 0, "b": 1}, "ignore_value": 1}, "ignore_value 1"),
        ({"labels": {"a": 0, "b": 70000}}, "0..65535"),
        ({"labels": {"a": 0, "b": "x"}}, "integer"),
        ({"labels": {"a": 0, "b": []}}, "no grey values"),
        ({"labels": {}}, "empty"),
        ([1, 2], "must be a dict"),
    ],
)
def test_label_mapping_rejects_bad_dicts(d, match):
    with pytest.raises(ValueError, match=match):
        LabelMapping.from_dict(d)


def test_label_mapping_round_trip_encode_decode():
    m = LabelMapping.from_dict({**VNC_LABELS, "ignore_value": 7})
    assert LabelMapping.from_dict(m.to_dict()) == m
    assert m.to_dict()["labels"]["membrane"] == [0, 32, 64, 96, 128]
    raw = np.array([[0, 96, 159], [223, 255, 7]], np.uint8)
    labels = m.encode(raw)
    assert labels.dtype == np.int32 and labels.tolist() == [[0, 0, 1], [3, 4, IGNORE_LABEL]]
    # decode gives the first value of each class (96 -> 0) and the ignore value
    assert m.decode(labels).tolist() == [[0, 0, 159], [223, 255, 7]]
    assert m.decode(labels).dtype == np.uint8
    with pytest.raises(ValueError, match="outside"):
        m.decode(np.array([5]))
    with pytest.raises(DatasetError) as e:
        m.encode(np.array([[3, 0, 250, 300]]), path="masks/x.png")
    assert "masks/x.png" in str(e.value) and "{3, 250, 300}" in str(e.value)
