import json
import shutil

import pytest
import torch

from diagnosis.bundle import CARD_FILE, WEIGHTS_FILE, BundleError, load_bundle, read_card

from helpers import LABELS, make_bundle


def copy_of(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def edit_card(directory, **changes):
    path = directory / CARD_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_round_trip_gives_the_same_model(tmp_path):
    directory = make_bundle(tmp_path / "b", seed=3)
    first, second = load_bundle(directory), load_bundle(directory)
    batch = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(first.model(batch), second.model(batch))
    assert first.card.labels == LABELS
    assert len(first.card.weights_sha256) == 64


def test_half_precision_bundle_is_smaller_and_close(tmp_path):
    full = make_bundle(tmp_path / "full", seed=1)
    half = make_bundle(tmp_path / "half", seed=1, half=True)
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (full / WEIGHTS_FILE).stat().st_size
    batch = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = load_bundle(full).model(batch), load_bundle(half).model(batch)
    assert torch.allclose(a.softmax(1), b.softmax(1), atol=1e-2)


def test_missing_folder_and_files_name_the_path(tmp_path, tiny_bundle):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")
    no_weights = copy_of(tiny_bundle, tmp_path)
    (no_weights / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match=str(no_weights / WEIGHTS_FILE)):
        load_bundle(no_weights)
    (no_weights / CARD_FILE).unlink()
    with pytest.raises(BundleError, match="model card not found"):
        load_bundle(no_weights)


def test_corrupt_card_is_refused(tmp_path, tiny_bundle):
    directory = copy_of(tiny_bundle, tmp_path)
    (directory / CARD_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(directory)


def test_replaced_weights_fail_the_checksum(tmp_path, tiny_bundle):
    directory = copy_of(tiny_bundle, tmp_path)
    other = make_bundle(tmp_path / "other", seed=99)
    shutil.copy(other / WEIGHTS_FILE, directory / WEIGHTS_FILE)
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(directory)


def test_garbage_weights_are_refused(tmp_path, tiny_bundle):
    directory = copy_of(tiny_bundle, tmp_path)
    (directory / WEIGHTS_FILE).write_bytes(b"\0" * 100)
    edit_card(directory, weights_sha256="")
    with pytest.raises(BundleError, match="cannot read the weights"):
        load_bundle(directory)


def test_card_that_does_not_match_the_weights(tmp_path, tiny_bundle):
    directory = copy_of(tiny_bundle, tmp_path)
    edit_card(directory, labels=LABELS[:5], other_label=None, malignant_labels=[])
    with pytest.raises(BundleError, match="shapes do not match"):
        load_bundle(directory)
    edit_card(directory, labels=LABELS, architecture="test_resnet")
    with pytest.raises(BundleError, match="do not fit test_resnet"):
        load_bundle(directory)
    edit_card(directory, architecture="no_such_net")
    with pytest.raises(BundleError, match="unknown architecture"):
        load_bundle(directory)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"temperature": 0}, "temperature"),
        ({"abstain_threshold": 1.5}, "abstain_threshold"),
        ({"mean": [0.5]}, "mean and std"),
        ({"input_size": [3, 64]}, "input_size"),
        ({"other_label": "unknown"}, "other_label"),
        ({"labels": ["a", "a"]}, "labels"),
    ],
)
def test_invalid_card_values(tmp_path, tiny_bundle, changes, message):
    directory = copy_of(tiny_bundle, tmp_path)
    edit_card(directory, **changes)
    with pytest.raises(BundleError, match=message):
        read_card(directory)


def test_card_missing_required_fields(tmp_path, tiny_bundle):
    directory = copy_of(tiny_bundle, tmp_path)
    (directory / CARD_FILE).write_text(json.dumps({"architecture": "test_efficientnet"}))
    with pytest.raises(BundleError, match="lacks labels"):
        read_card(directory)
