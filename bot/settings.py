"""Every setting of the assistant, read once from the environment, with defaults that run offline.

An operator's mistake (a port that is not a number, a model path that does not exist, a store
name with a typo) stops start-up with a SettingsError that names the variable, instead of
surfacing later as a confusing failure in the middle of a chat.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Network, IPv6Network, ip_address
from pathlib import Path

from bot.web.admin.auth import is_password_hash
from diagnosis.config import ServingConfig
from diagnosis.intake import IntakeLimits
from diagnosis.quality import QualityThresholds
from envconfig import EnvReader, SettingsError  # noqa: F401 (SettingsError: re-exported)
from knowledge.config import StoreConfig

# Telegram tokens look like 123456789:AA... (bot id, colon, 35 url-safe characters).
_TOKEN_PATTERN = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{20,}$")


@dataclass(frozen=True)
class Settings:
    telegram_token: str | None = None
    telegram_base_url: str | None = None
    telegram_base_file_url: str | None = None
    webhook_url: str | None = None  # set: Telegram POSTs updates to this URL (else polling)
    # Secrets with defaults derived from other settings, resolved once in __post_init__ so
    # every part of the assistant (web chat, Telegram, webhook, admin) uses the same value.
    webhook_secret: str | None = None  # default: derived from the token (None without one)
    user_key_secret: str | None = None  # keys users' pseudonyms; default: the bot token
    admin_password_hash: str | None = None  # unset: the admin panel is closed
    # Signs admin cookies. Required when the server is public (`is_public`); on a loopback-only
    # server it defaults to one derived from the password hash.
    admin_session_secret: str | None = None
    admin_telegram_ids: frozenset[int] = frozenset()  # may use /stats, /reload, /feedback
    store: StoreConfig = field(default_factory=StoreConfig)  # SKINCARE_STORE, SKINCARE_DB, ...
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    # Peers whose X-Forwarded-For is believed (a load balancer); none: the header is ignored.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    # A connection that sends no request for this long is closed (a browser reconnects at
    # once): idle or half-open connections would otherwise each hold a socket and memory.
    web_idle_timeout_s: float = 15.0
    # The most a request's body may take to arrive; slower: 408 (a 20 MB photo at 3 Mbit/s
    # takes about 55 s). Bounds how long a stalled upload holds its part-read body.
    web_body_timeout_s: float = 90.0
    # Request bodies held at once (photos being uploaded or analysed); more wait their turn.
    # With the decode budget it keeps a replica under 1 GiB (docs/deploy.md, Sizing).
    upload_budget_bytes: int = 64 * 2**20
    log_level: str = "INFO"
    flood_max_messages: int = 20  # per user per flood window; more gets one "slow down"
    flood_window_s: float = 60.0
    telegram_max_rate: float = 30.0  # messages/s to Telegram in all (its limit); 0: no limit
    # Replies Telegram would not take now wait in the store's outbox (bot/outbox.py): checked
    # every `outbox_poll_s`, retried with back-off, dropped after `outbox_give_up_s`.
    outbox_poll_s: float = 1.0
    outbox_give_up_s: float = 900.0
    # Follow-up questions matched by meaning too (knowledge/embeddings.py), not only by words.
    faq_embeddings: bool = True
    # The FAQ phrasings' vectors, kept between runs (None: encoded anew at every start-up).
    faq_embedding_cache: Path | None = None  # SKINCARE_FAQ_CACHE, default DEFAULT_FAQ_CACHE
    faq_encoding_wait_s: float = 1.0  # then a question is answered by its words alone
    # The diagnosis engine's own settings, each read by its own from_env (SKINCARE_MODEL,
    # SKINCARE_RUNTIME..., SKINCARE_MAX_PHOTO_*, SKINCARE_QUALITY_*).
    serving: ServingConfig = field(default_factory=ServingConfig)
    intake: IntakeLimits = field(default_factory=IntakeLimits)
    quality: QualityThresholds = field(default_factory=QualityThresholds)

    def __post_init__(self) -> None:
        resolve = partial(object.__setattr__, self)  # frozen: set once, here
        if not self.webhook_secret and self.telegram_token:
            # Every replica derives the same secret from the token, without another setting.
            digest = hashlib.sha256(f"webhook:{self.telegram_token}".encode()).hexdigest()
            resolve("webhook_secret", digest[:48])
        # Pseudonyms must not change when the web chat and Telegram run together: one secret.
        resolve("user_key_secret", self.user_key_secret or self.telegram_token or "web")
        if not self.admin_session_secret and self.admin_password_hash:
            resolve("admin_session_secret", self.admin_password_hash)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        reader = EnvReader(env)
        defaults = cls()
        settings = cls(
            telegram_token=reader.text("TELEGRAM_BOT_TOKEN"),
            telegram_base_url=reader.url("TELEGRAM_BASE_URL"),
            telegram_base_file_url=reader.url("TELEGRAM_BASE_FILE_URL"),
            webhook_url=reader.url("SKINCARE_WEBHOOK_URL"),
            webhook_secret=reader.text("SKINCARE_WEBHOOK_SECRET"),
            user_key_secret=reader.text("SKINCARE_USER_KEY_SECRET"),
            admin_password_hash=reader.text("SKINCARE_ADMIN_PASSWORD_HASH"),
            admin_session_secret=reader.text("SKINCARE_ADMIN_SESSION_SECRET"),
            admin_telegram_ids=reader.id_set("SKINCARE_ADMIN_TELEGRAM_IDS"),
            store=StoreConfig.from_env(env),
            web_host=reader.text("SKINCARE_WEB_HOST") or defaults.web_host,
            web_port=reader.integer("SKINCARE_WEB_PORT", defaults.web_port, 0, 65535),
            trusted_proxies=reader.networks("SKINCARE_TRUSTED_PROXIES"),
            web_idle_timeout_s=reader.number(
                "SKINCARE_WEB_IDLE_TIMEOUT_S", defaults.web_idle_timeout_s, 1, 3600
            ),
            web_body_timeout_s=reader.number(
                "SKINCARE_WEB_BODY_TIMEOUT_S", defaults.web_body_timeout_s, 1, 3600
            ),
            upload_budget_bytes=reader.integer(
                "SKINCARE_UPLOAD_BUDGET_MB", defaults.upload_budget_bytes // 2**20, 1, 65536
            )
            * 2**20,
            log_level=reader.choice(
                "SKINCARE_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", upper=True
            ),
            flood_max_messages=reader.integer(
                "SKINCARE_FLOOD_MAX_MESSAGES", defaults.flood_max_messages, 1, 10_000
            ),
            flood_window_s=reader.number(
                "SKINCARE_FLOOD_WINDOW_S", defaults.flood_window_s, 1, 86_400
            ),
            telegram_max_rate=reader.number(
                "SKINCARE_TELEGRAM_MAX_RATE", defaults.telegram_max_rate, 0, 10_000
            ),
            outbox_poll_s=reader.number("SKINCARE_OUTBOX_POLL_S", defaults.outbox_poll_s, 0.1, 60),
            outbox_give_up_s=reader.number(
                "SKINCARE_OUTBOX_GIVE_UP_S", defaults.outbox_give_up_s, 10, 7 * 86_400
            ),
            faq_embeddings=reader.choice("SKINCARE_FAQ_EMBEDDINGS", ("on", "off"), "on") == "on",
            faq_embedding_cache=_faq_cache(reader.text("SKINCARE_FAQ_CACHE")),
            faq_encoding_wait_s=reader.number(
                "SKINCARE_FAQ_ENCODING_WAIT_S", defaults.faq_encoding_wait_s, 0, 60
            ),
            serving=ServingConfig.from_env(env),
            intake=IntakeLimits.from_env(env),
            quality=QualityThresholds.from_env(env),
        )
        settings._check(reader)
        return settings

    @property
    def is_public(self) -> bool:
        """Reachable from other machines: a webhook URL, or a host other than loopback."""
        if self.webhook_url:
            return True
        if self.web_host == "localhost":
            return False
        try:
            return not ip_address(self.web_host).is_loopback
        except ValueError:  # a host name (or "" = every interface): assume the worst
            return True

    def _check(self, reader: EnvReader) -> None:
        if self.telegram_token is not None and not _TOKEN_PATTERN.match(self.telegram_token):
            reader.fail("TELEGRAM_BOT_TOKEN", "does not look like a bot token (123456:ABC...)")
        if self.telegram_base_file_url and not self.telegram_base_url:
            reader.fail("TELEGRAM_BASE_FILE_URL", "is set but TELEGRAM_BASE_URL is not")
        if self.webhook_url and not self.telegram_token:
            reader.fail("SKINCARE_WEBHOOK_URL", "is set but TELEGRAM_BOT_TOKEN is not")
        if self.webhook_url and not self.webhook_url.startswith("https://"):
            # Telegram delivers webhooks over HTTPS only (a self-hosted Bot API server can
            # use http, hence only when TELEGRAM_BASE_URL is not set).
            if not self.telegram_base_url:
                reader.fail("SKINCARE_WEBHOOK_URL", "must be an https:// URL for Telegram")
        if self.webhook_secret and not re.match(r"^[A-Za-z0-9_-]{1,256}$", self.webhook_secret):
            reader.fail("SKINCARE_WEBHOOK_SECRET", "may only use A-Z, a-z, 0-9, _ and - (1-256)")
        if self.admin_password_hash and not is_password_hash(self.admin_password_hash):
            reader.fail(
                "SKINCARE_ADMIN_PASSWORD_HASH",
                "is not a password hash: make one with `python -m bot hash-password`",
            )
        session_secret = reader.text("SKINCARE_ADMIN_SESSION_SECRET")
        if session_secret is not None and len(session_secret) < 32:
            reader.fail("SKINCARE_ADMIN_SESSION_SECRET", "is too short: use `openssl rand -hex 32`")
        if self.admin_password_hash and session_secret is None and self.is_public:
            # Derived from the hash, anyone who can read the hash (a deploy config, a
            # console) could sign session cookies.
            reader.fail(
                "SKINCARE_ADMIN_SESSION_SECRET",
                "must be set when the admin panel is reachable from other machines "
                "(SKINCARE_WEB_HOST is not loopback or SKINCARE_WEBHOOK_URL is set): "
                "`openssl rand -hex 32`, the same on every replica",
            )


# Beside the default SQLite file: a start-up then encodes only the phrasings that changed.
DEFAULT_FAQ_CACHE = Path("data/faq-embeddings.npz")


def _faq_cache(value: str | None) -> Path | None:
    if value is None:
        return DEFAULT_FAQ_CACHE
    return None if value.strip().lower() == "off" else Path(value).expanduser()
