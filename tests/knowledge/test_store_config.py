"""`StoreConfig.from_env`: defaults that run offline, and a bad value named at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from envconfig import SettingsError
from knowledge.config import DEFAULT_SQLITE_PATH, StoreConfig


def test_defaults_are_the_embedded_store():
    config = StoreConfig.from_env({})
    assert config == StoreConfig()
    assert config.kind == "sqlite" and config.sqlite_path == DEFAULT_SQLITE_PATH
    assert config.firestore_project == "skincare-local" and config.firestore_timeout_s == 5.0


def test_values_are_read(tmp_path):
    config = StoreConfig.from_env(
        {
            "SKINCARE_STORE": " Firestore ",
            "SKINCARE_DB": str(tmp_path / "x.db"),
            "SKINCARE_FIRESTORE_PROJECT": "mine",
            "GOOGLE_CLOUD_PROJECT": "cloud-run's",
            "SKINCARE_FIRESTORE_TIMEOUT": "1.5",
        }
    )
    assert config == StoreConfig("firestore", Path(tmp_path / "x.db"), "mine", 1.5)


def test_google_cloud_project_when_ours_is_unset():
    assert StoreConfig.from_env({"GOOGLE_CLOUD_PROJECT": "p"}).firestore_project == "p"
    assert StoreConfig.from_env({"SKINCARE_FIRESTORE_PROJECT": " "}).firestore_project == (
        "skincare-local"
    )


@pytest.mark.parametrize(
    "env, named",
    [
        ({"SKINCARE_STORE": "postgres"}, "SKINCARE_STORE"),
        ({"SKINCARE_FIRESTORE_TIMEOUT": "soon"}, "SKINCARE_FIRESTORE_TIMEOUT"),
        ({"SKINCARE_FIRESTORE_TIMEOUT": "0"}, "SKINCARE_FIRESTORE_TIMEOUT"),
        ({"SKINCARE_FIRESTORE_TIMEOUT": "-2"}, "SKINCARE_FIRESTORE_TIMEOUT"),
        ({"SKINCARE_FIRESTORE_TIMEOUT": "600"}, "SKINCARE_FIRESTORE_TIMEOUT"),
        ({"SKINCARE_FIRESTORE_TIMEOUT": "nan"}, "SKINCARE_FIRESTORE_TIMEOUT"),
    ],
)
def test_bad_values_fail_in_from_env_naming_the_variable(env, named):
    # Checked whatever the store: the timeout is wrong before anyone switches to Firestore.
    with pytest.raises(SettingsError) as caught:
        StoreConfig.from_env(env)
    assert str(caught.value).startswith(named)
