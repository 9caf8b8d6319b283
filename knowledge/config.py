"""Which knowledge store to open and how: `StoreConfig`, read once from the environment.

Every variable the store layer uses is read here, through `envconfig.EnvReader`, so a bad value
stops start-up with a `SettingsError` naming the variable, not a traceback on the first call.
`bot.settings.Settings` composes this config; `python -m knowledge` reads it on its own.

FIRESTORE_EMULATOR_HOST is not in here: the Google client reads it from the process environment
itself, so a copy in the config could only disagree with what the client does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from envconfig import EnvReader

STORES = ("sqlite", "firestore")
DEFAULT_SQLITE_PATH = Path(__file__).resolve().parent.parent / "data" / "skincare.sqlite3"
DEFAULT_FIRESTORE_PROJECT = "skincare-local"
DEFAULT_FIRESTORE_TIMEOUT_S = 5.0
MAX_FIRESTORE_TIMEOUT_S = 600.0  # a "deadline" longer than this would hang chats instead


@dataclass(frozen=True)
class StoreConfig:
    kind: str = "sqlite"  # SKINCARE_STORE: one of STORES
    sqlite_path: Path = DEFAULT_SQLITE_PATH  # SKINCARE_DB
    # SKINCARE_FIRESTORE_PROJECT, else GOOGLE_CLOUD_PROJECT (what Cloud Run sets)
    firestore_project: str = DEFAULT_FIRESTORE_PROJECT
    firestore_timeout_s: float = DEFAULT_FIRESTORE_TIMEOUT_S  # SKINCARE_FIRESTORE_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        """The config the environment (`env`, default os.environ) names; SettingsError if wrong.

        Every variable is checked whichever store is chosen: a typo in the Firestore settings
        should not wait for the day someone switches to Firestore.
        """
        reader = EnvReader(env)
        sqlite_path = reader.text("SKINCARE_DB")
        timeout = reader.number(
            "SKINCARE_FIRESTORE_TIMEOUT", DEFAULT_FIRESTORE_TIMEOUT_S, 0, MAX_FIRESTORE_TIMEOUT_S
        )
        if not 0 < timeout < MAX_FIRESTORE_TIMEOUT_S:  # the reader's bounds are inclusive
            reader.fail(
                "SKINCARE_FIRESTORE_TIMEOUT",
                f"must be a number of seconds between 0 and {MAX_FIRESTORE_TIMEOUT_S:g}, "
                f"not {timeout:g}",
            )
        return cls(
            kind=reader.choice("SKINCARE_STORE", STORES, cls.kind),
            sqlite_path=Path(sqlite_path).expanduser() if sqlite_path else DEFAULT_SQLITE_PATH,
            firestore_project=(
                reader.text("SKINCARE_FIRESTORE_PROJECT")
                or reader.text("GOOGLE_CLOUD_PROJECT")
                or DEFAULT_FIRESTORE_PROJECT
            ),
            firestore_timeout_s=timeout,
        )
