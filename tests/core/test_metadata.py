import pytest

from fer_emotion.app.core.metadata import ModelInfo, ModelMetadataError
from tests.conftest import tiny_model_info


def test_props_round_trip():
    info = tiny_model_info(metrics={"val_acc": 0.7})
    again = ModelInfo.from_props(info.to_props())
    assert again == info


def test_missing_keys_are_named_with_a_fix():
    props = tiny_model_info().to_props()
    del props["labels"], props["mean"]
    with pytest.raises(ModelMetadataError, match=r"no labels, mean metadata.*fer-train export"):
        ModelInfo.from_props(props, source="m.onnx")


@pytest.mark.parametrize("key, value, message", [
    ("labels", "not json", "unreadable"),
    ("labels", "[]", "non-empty"),
    ("input_size", "4", "outside 8..512"),
    ("std", "0", "std must be positive"),
    ("grayscale", "maybe", "grayscale must be"),
    ("emoji", '{"joy": "1f604"}', "labels the model lacks"),
])
def test_bad_values_are_refused(key, value, message):
    props = tiny_model_info().to_props()
    props[key] = value
    with pytest.raises(ModelMetadataError, match=message):
        ModelInfo.from_props(props)
