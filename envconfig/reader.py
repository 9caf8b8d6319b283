"""`EnvReader`: typed, range-checked reads of environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network


class SettingsError(ValueError):
    """A setting has a value the assistant cannot start with; the message names it."""


class EnvReader:
    """Typed, range-checked reads of environment variables; `fail` names the variable."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = os.environ if env is None else env

    @staticmethod
    def fail(name: str, problem: str) -> None:
        raise SettingsError(f"{name} {problem}")

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def choice(self, name: str, options: tuple[str, ...], default: str, upper=False) -> str:
        value = self.text(name)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in options:
            self.fail(name, f"must be one of {', '.join(options)}, not {value!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.fail(name, f"must be a whole number, not {value!r}")
        if not low <= number <= high:
            self.fail(name, f"must be between {low} and {high}, not {number}")
        return number

    def number(self, name: str, default: float, low=float("-inf"), high=float("inf")) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            self.fail(name, f"must be a number, not {value!r}")
        if not low <= number <= high:
            self.fail(name, f"must be between {low} and {high}, not {number}")
        return number

    def id_set(self, name: str) -> frozenset[int]:
        value = self.text(name)
        if value is None:
            return frozenset()
        parts = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
        if not all(re.fullmatch(r"-?\d+", part) for part in parts):
            self.fail(name, f"must be Telegram user ids separated by commas, not {value!r}")
        return frozenset(int(part) for part in parts)

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            self.fail(name, f"must be an http(s) URL, not {value!r}")
        return value

    def networks(self, name: str) -> tuple[IPv4Network | IPv6Network, ...]:
        """Addresses or CIDR ranges separated by commas ("10.0.0.0/8, 192.0.2.7")."""
        value = self.text(name)
        if value is None:
            return ()
        networks = []
        for part in filter(None, (part.strip() for part in value.split(","))):
            try:
                networks.append(ip_network(part, strict=False))
            except ValueError:
                self.fail(name, f"must be IP addresses or ranges (10.0.0.0/8), not {part!r}")
        return tuple(networks)
