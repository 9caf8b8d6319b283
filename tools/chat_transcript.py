"""Print a transcript of a real conversation with the bot over Telegram's HTTP protocol.

    python tools/chat_transcript.py --lang ko [--photo PATH] [--full]

Starts the whole assistant (bundled model, a temporary SQLite store) against the local Bot API
server used by the end-to-end tests, plays one user, and prints what each side sent.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "bot")]

from telegram_server import FakeTelegram  # noqa: E402
from telegram_support import running_bot  # noqa: E402

DEFAULT_PHOTO = ROOT.parent / "shared/datasets/skin-photos/acne/dermnet-0121064acd137936.jpg"
SCRIPT = {
    "en": ["is it contagious?", "can I use a steroid cream?", "Gangnam"],
    "ko": ["전염되나요?", "스테로이드 연고 써도 되나요?", "강남구"],
}


def plain(text: str, full: bool) -> str:
    text = re.sub(r"<[^>]+>", "", text).replace("&#39;", "'").replace("&#34;", '"')
    text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    if not full and len(text) > 700:
        text = text[:700] + " […]"
    return "\n      ".join(text.splitlines())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lang", choices=("en", "ko"), default="en")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--full", action="store_true", help="do not shorten long messages")
    args = parser.parse_args()
    questions = SCRIPT[args.lang]
    with tempfile.TemporaryDirectory() as folder:
        async with FakeTelegram() as tg, running_bot(tg, Path(folder) / "db.sqlite3"):
            user = tg.user(first_name="Mina", language_code=args.lang)
            seen = 0

            async def show(step: str, send, count: int = 1) -> list[dict]:
                nonlocal seen
                print(f"User: {step}")
                send()
                messages = await tg.wait_for_messages(user.id, seen + count, timeout=60)
                await asyncio.sleep(0.5)  # let multi-part answers arrive
                new = tg.messages_to(user.id)[seen:]
                seen += len(new)
                for message in new:
                    if "venue" in message:
                        venue = message["venue"]
                        print(f"Bot:  [venue] {venue['title']} — {venue['address']}")
                        continue
                    body = message.get("text") or message.get("caption") or ""
                    prefix = "[photo: Grad-CAM heatmap] " if "photo" in message else ""
                    print(f"Bot:  {prefix}{plain(body, args.full)}")
                    buttons = [
                        b["text"]
                        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
                        for b in row
                    ]
                    if buttons:
                        print(f"      [buttons: {' | '.join(buttons)}]")
                print()
                return messages

            await show("/start", lambda: tg.send_command(user, "/start"))
            await show(
                f"[photo {args.photo.name}]",
                lambda: tg.send_photo(user, args.photo.read_bytes()),
            )
            result = tg.messages_to(user.id)[-1]
            actions = {
                b["callback_data"].rsplit(":", 1)[0]: b["callback_data"]
                for row in result["reply_markup"]["inline_keyboard"]
                for b in row
            }
            await show(
                "[button: Where did it look?]",
                lambda: tg.press_button(user, result, actions["gradcam"]),
            )
            await show(f"{questions[0]}", lambda: tg.send_text(user, questions[0]))
            await show(f"{questions[1]}", lambda: tg.send_text(user, questions[1]))
            await show(
                "[button: Find a clinic]", lambda: tg.press_button(user, result, actions["clinic"])
            )
            await show(f"{questions[2]}", lambda: tg.send_text(user, questions[2]))
            await show(
                "[button: 👍]", lambda: tg.press_button(user, result, actions["feedback:yes"])
            )


if __name__ == "__main__":
    asyncio.run(main())
