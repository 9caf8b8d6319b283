"""The plain values a transport exchanges with the conversation: who wrote, and what to send."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from bot.conversation.state import Action
from bot.texts import split_message


@dataclass(frozen=True)
class Chatter:
    """Who sent an update: the store key (a keyed hash, never the raw id) and their locale."""

    key: str
    language_code: str | None = None


def user_key(secret: str, platform: str, user_id: int | str) -> str:
    """A stable pseudonym: the same user gets the same key on every replica sharing `secret`."""
    digest = hmac.new(secret.encode(), f"{platform}:{user_id}".encode(), hashlib.sha256)
    return f"{platform}-{digest.hexdigest()[:32]}"


def platform_of(key: str) -> str:
    """The platform a `user_key` was made for ("tg", "web"), without the pseudonym itself."""
    platform, separator, _ = key.partition("-")
    return platform if separator and platform else "chat"


@dataclass(frozen=True)
class Button:
    text: str
    action: str  # an encoded `Action`, e.g. "care:3f2a" (at most 64 bytes: Telegram's limit)

    @classmethod
    def of(cls, text: str, action: Action) -> Button:
        return cls(text, action.encode())


@dataclass(frozen=True)
class Venue:
    title: str
    address: str
    lat: float
    lon: float
    map_url: str


@dataclass
class Reply:
    text: str = ""  # Telegram-HTML; the caption when there is a photo
    buttons: list[list[Button]] = field(default_factory=list)
    photo: bytes | None = None  # PNG (the Grad-CAM heatmap)
    venue: Venue | None = None
    ask_location: bool = False  # offer a "send my location" keyboard
    location_button: str = ""  # that keyboard's label
    close_keyboard: bool = False  # remove that keyboard again

    def to_dict(self) -> dict[str, Any]:
        """As JSON, for the web chat and the outbox; never the photo (the web chat sends it
        separately as base64; the outbox does not keep photos)."""
        return {
            "text": self.text,
            "buttons": [
                [{"text": b.text, "action": b.action} for b in row] for row in self.buttons
            ],
            "venue": None if self.venue is None else self.venue.__dict__,
            "ask_location": self.ask_location,
            "location_button": self.location_button,
            "close_keyboard": self.close_keyboard,  # the web page hides its location button
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        """The reply `to_dict` wrote (without a photo)."""
        venue = data.get("venue")
        return cls(
            text=data.get("text", ""),
            buttons=[[Button(b["text"], b["action"]) for b in row] for row in data["buttons"]],
            venue=None if venue is None else Venue(**venue),
            ask_location=data.get("ask_location", False),
            location_button=data.get("location_button", ""),
            close_keyboard=data.get("close_keyboard", False),
        )

    def split(self) -> list[Reply]:
        """This reply as messages that each fit Telegram's limit."""
        if self.photo is not None or self.venue is not None:
            return [self]
        parts = split_message(self.text)
        if len(parts) <= 1:
            return [self]
        # Buttons and keyboards belong under the last part, where the user's eye ends.
        head = [Reply(text=part) for part in parts[:-1]]
        last = Reply(
            text=parts[-1],
            buttons=self.buttons,
            ask_location=self.ask_location,
            location_button=self.location_button,
            close_keyboard=self.close_keyboard,
        )
        return [*head, last]
