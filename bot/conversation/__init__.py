"""The conversation core: what the assistant says next, whatever the transport.

core.py routes each update (the COMMANDS and BUTTONS tables); results.py, clinics.py and
answers.py do the work per concern; state.py holds the typed values remembered between
messages (`LastResult`, `Awaiting`) and carried by buttons (`Action`); replies.py the plain
values a transport exchanges with it (`Chatter` in, `Reply` out). Nothing here knows Telegram.
"""

from bot.conversation.core import BUTTONS, COMMANDS, Conversation, FloodLimit
from bot.conversation.replies import Button, Chatter, Reply, Venue, platform_of, user_key
from bot.conversation.results import PhotoLoader
from bot.conversation.state import Action, ActionKind, Awaiting, LastResult

__all__ = [
    "BUTTONS",
    "COMMANDS",
    "Action",
    "ActionKind",
    "Awaiting",
    "Button",
    "Chatter",
    "Conversation",
    "FloodLimit",
    "LastResult",
    "PhotoLoader",
    "Reply",
    "Venue",
    "platform_of",
    "user_key",
]
