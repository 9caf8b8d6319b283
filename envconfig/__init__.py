"""Reading settings from the environment: the one reader every layer's config uses.

Each layer owns a small frozen config with its own `from_env` (`knowledge.StoreConfig`,
`diagnosis.ServingConfig`, ...); `bot.Settings` composes them. They all read through
`EnvReader`, so a bad value fails the same way everywhere: a `SettingsError` whose message
starts with the variable's name, raised at start-up instead of mid-conversation.
This package imports nothing of the project, so any layer may use it.
"""

from envconfig.reader import EnvReader, SettingsError

__all__ = ["EnvReader", "SettingsError"]
