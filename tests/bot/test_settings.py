from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError
from diagnosis.bundle import BUNDLED_MODEL_DIR
from knowledge.config import StoreConfig

VALID_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def test_defaults_run_offline():
    settings = Settings.from_env({})
    assert settings.serving.model_path == BUNDLED_MODEL_DIR and not settings.serving.model_explicit
    assert settings.telegram_token is None
    assert settings.store == StoreConfig()
    assert settings.web_host == "127.0.0.1" and settings.web_port == 8080
    assert settings.intake.max_bytes == 20 * 1024 * 1024
    assert settings.intake.max_pixels == 40_000_000


def test_values_are_read(tmp_path):
    settings = Settings.from_env(
        {
            "SKINCARE_MODEL": str(tmp_path),
            "TELEGRAM_BOT_TOKEN": VALID_TOKEN,
            "TELEGRAM_BASE_URL": "http://127.0.0.1:8081/bot",
            "TELEGRAM_BASE_FILE_URL": "http://127.0.0.1:8081/file/bot",
            "SKINCARE_STORE": "Firestore",
            "SKINCARE_DB": str(tmp_path / "x.db"),
            "SKINCARE_WEB_HOST": "0.0.0.0",
            "SKINCARE_WEB_PORT": "9000",
            "SKINCARE_QUALITY_MIN_SHARPNESS": "1.5",
        }
    )
    assert settings.serving.model_path == Path(tmp_path) and settings.serving.model_explicit
    assert settings.telegram_token == VALID_TOKEN
    assert settings.store.kind == "firestore"
    assert settings.store.sqlite_path == tmp_path / "x.db"
    assert settings.web_port == 9000
    assert settings.quality.min_sharpness == 1.5


@pytest.mark.parametrize(
    "env, named",
    [
        ({"SKINCARE_WEB_PORT": "eighty"}, "SKINCARE_WEB_PORT"),
        ({"SKINCARE_WEB_PORT": "70000"}, "SKINCARE_WEB_PORT"),
        ({"SKINCARE_STORE": "postgres"}, "SKINCARE_STORE"),
        ({"SKINCARE_FIRESTORE_TIMEOUT": "soon"}, "SKINCARE_FIRESTORE_TIMEOUT"),
        ({"SKINCARE_MODEL": "/no/such/bundle"}, "SKINCARE_MODEL"),
        ({"TELEGRAM_BOT_TOKEN": "hello"}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BASE_URL": "ftp://x"}, "TELEGRAM_BASE_URL"),
        ({"TELEGRAM_BASE_FILE_URL": "http://x/file"}, "TELEGRAM_BASE_FILE_URL"),
        ({"SKINCARE_MAX_PHOTO_BYTES": "-1"}, "SKINCARE_MAX_PHOTO_BYTES"),
        ({"SKINCARE_QUALITY_MIN_SHARPNESS": "sharp"}, "SKINCARE_QUALITY_MIN_SHARPNESS"),
        ({"SKINCARE_LOG_LEVEL": "LOUD"}, "SKINCARE_LOG_LEVEL"),
        ({"SKINCARE_OUTBOX_POLL_S": "0"}, "SKINCARE_OUTBOX_POLL_S"),
        ({"SKINCARE_OUTBOX_GIVE_UP_S": "forever"}, "SKINCARE_OUTBOX_GIVE_UP_S"),
    ],
)
def test_bad_values_name_the_setting(env, named):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(named)


def test_inference_and_telegram_rate_settings():
    defaults = Settings.from_env({})
    assert defaults.serving.inference == "fp32" and defaults.telegram_max_rate == 30
    settings = Settings.from_env({"SKINCARE_INFERENCE": "FP32", "SKINCARE_TELEGRAM_MAX_RATE": "0"})
    assert settings.serving.inference == "fp32" and settings.telegram_max_rate == 0
    with pytest.raises(SettingsError, match="SKINCARE_INFERENCE"):
        Settings.from_env({"SKINCARE_INFERENCE": "int8"})
    with pytest.raises(SettingsError, match="SKINCARE_TELEGRAM_MAX_RATE"):
        Settings.from_env({"SKINCARE_TELEGRAM_MAX_RATE": "-1"})


def test_outbox_settings():
    defaults = Settings.from_env({})
    assert (defaults.outbox_poll_s, defaults.outbox_give_up_s) == (1.0, 900.0)
    env = {"SKINCARE_OUTBOX_POLL_S": "0.5", "SKINCARE_OUTBOX_GIVE_UP_S": "3600"}
    settings = Settings.from_env(env)
    assert (settings.outbox_poll_s, settings.outbox_give_up_s) == (0.5, 3600.0)


def test_derived_secrets_are_resolved_once_for_every_part():
    with_token = Settings.from_env({"TELEGRAM_BOT_TOKEN": VALID_TOKEN})
    # The web chat and Telegram key users with the same secret: the token, when not set.
    assert with_token.user_key_secret == VALID_TOKEN
    # Every replica derives the same webhook secret from the token, in Telegram's alphabet.
    again = Settings.from_env({"TELEGRAM_BOT_TOKEN": VALID_TOKEN})
    assert with_token.webhook_secret == again.webhook_secret
    assert len(with_token.webhook_secret) == 48 and VALID_TOKEN not in with_token.webhook_secret
    explicit = Settings.from_env(
        {
            "TELEGRAM_BOT_TOKEN": VALID_TOKEN,
            "SKINCARE_USER_KEY_SECRET": "users",
            "SKINCARE_WEBHOOK_SECRET": "hook",
        }
    )
    assert (explicit.user_key_secret, explicit.webhook_secret) == ("users", "hook")
    offline = Settings.from_env({})
    assert offline.user_key_secret == "web" and offline.webhook_secret is None
    assert offline.admin_session_secret is None
