"""The Telegram transport: python-telegram-bot handlers that are thin adapters over Conversation.

Each handler turns an update into one Conversation call and sends the replies it gets. What
Telegram-specific work there is lives here: downloading photos, chat actions while working,
keyboards, venues, and getting every reply delivered (PTB's AIORateLimiter keeps within
Telegram's limits and waits out 429 `retry_after`; network errors and 5xx are retried here for
a few seconds, and a reply that still fails waits in the store's outbox: bot/outbox.py).
Every update is handled once: its id is recorded in the store before it is handled, and a
second delivery of it (a webhook Telegram sent again) is acknowledged without a reply.
Polling by default; with SKINCARE_WEBHOOK_URL the aiohttp server receives updates
(bot/web/webhook.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    LinkPreviewOptions,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.conversation import COMMANDS, ActionKind, Chatter, Conversation, Reply, user_key
from bot.outbox import Delivery, Outbox
from bot.redaction import redact_in_logs
from bot.settings import Settings
from bot.telegram_http import AiohttpRequest
from bot.texts import TELEGRAM_MESSAGE_LIMIT, language_for, plain_text, telegram_problems
from knowledge.geo import is_coordinate
from knowledge.store import StoreError

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 5  # network errors; 429s are waited out by the rate limiter
CAPTION_LIMIT = 1024
# How long an update id is remembered: Telegram keeps an unconfirmed update for 24 hours.
UPDATE_MEMORY_S = 24 * 3600.0
T = TypeVar("T")


def file_url_for(settings: Settings) -> str:
    """TELEGRAM_BASE_FILE_URL, or the file URL that goes with TELEGRAM_BASE_URL (…/bot ->
    …/file/bot, as on api.telegram.org)."""
    if settings.telegram_base_file_url:
        return settings.telegram_base_file_url
    base = settings.telegram_base_url.rstrip("/")
    root, _, last = base.rpartition("/")
    return f"{root}/file/{last}" if last == "bot" else f"{base}/file/bot"


class TelegramTransport:
    def __init__(self, settings: Settings, conversation: Conversation):
        # Before PTB is built: its first DEBUG line already holds the token (in the API URL).
        redact_in_logs(settings.telegram_token, settings.webhook_secret)
        self.settings = settings
        self.conversation = conversation
        self.user_secret = settings.user_key_secret
        # One update at a time per chat (a photo's answer before the question that follows it),
        # many chats at once.
        self._chat_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.store = conversation.store
        self.outbox = Outbox(
            self.store,
            self._deliver_queued,
            self._chat_lock,
            poll_s=settings.outbox_poll_s,
            give_up_s=settings.outbox_give_up_s,
        )
        # Update ids are per bot: the bot id (the token's first part) keeps two bots sharing a
        # store apart.
        self._update_prefix = f"tg:{settings.telegram_token.partition(':')[0]}:"
        builder = (
            Application.builder()
            .token(settings.telegram_token)
            .rate_limiter(
                AIORateLimiter(
                    overall_max_rate=settings.telegram_max_rate, max_retries=SEND_ATTEMPTS
                )
            )
            .concurrent_updates(True)
            # aiohttp instead of PTB's httpx: the HTTP client was the bot's largest CPU cost per
            # text message (bot/telegram_http.py).
            .request(AiohttpRequest())
            .get_updates_request(AiohttpRequest(connection_pool_size=1))
        )
        # As PTB takes them: the token is appended, e.g. http://localhost:8081/bot<TOKEN>/getMe.
        if settings.telegram_base_url:
            builder = builder.base_url(settings.telegram_base_url)
            builder = builder.base_file_url(file_url_for(settings))
        if settings.webhook_url:
            builder = builder.updater(None)  # updates arrive through bot/web/webhook.py
        self.application = builder.build()
        self._add_handlers()

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = self.application
        await _retrying(app.initialize, "initialize")
        await app.start()
        await self.outbox.start()
        if self.settings.webhook_url:
            await _retrying(
                lambda: app.bot.set_webhook(
                    self.settings.webhook_url,
                    secret_token=self.settings.webhook_secret,
                    allowed_updates=Update.ALL_TYPES,
                ),
                "setWebhook",
            )
            log.info("Telegram: webhook mode")
        else:
            await app.updater.start_polling(allowed_updates=Update.ALL_TYPES)
            log.info("Telegram: polling as @%s", app.bot.username)

    async def stop(self) -> None:
        await self.outbox.stop()
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    async def process_webhook_update(self, data: Any) -> None:
        """Queue one update POSTed to the webhook; ValueError when `data` is not an update."""
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise ValueError("not a JSON object with an integer update_id")
        try:
            update = Update.de_json(data, self.application.bot)
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            # PTB builds its objects with keyword arguments: a field of the wrong shape is a
            # TypeError/AttributeError deep inside; to the sender it is one bad request.
            raise ValueError(f"not a Telegram update ({type(error).__name__}: {error})") from error
        await self.application.update_queue.put(update)

    # ---- handlers --------------------------------------------------------------------------

    def _add_handlers(self) -> None:
        app = self.application
        app.add_handler(TypeHandler(Update, self._skip_repeated_update), group=-1)
        app.add_handler(CommandHandler(list(COMMANDS), self._on_command))
        app.add_handler(MessageHandler(filters.COMMAND, self._on_command))
        app.add_handler(MessageHandler(filters.PHOTO, self._on_photo))
        app.add_handler(MessageHandler(filters.Document.ALL, self._on_document))
        app.add_handler(MessageHandler(filters.LOCATION, self._on_location))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self._on_text))
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_handler(MessageHandler(filters.ALL, self._on_other))
        app.add_error_handler(self._on_error)

    async def _skip_repeated_update(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        """Runs before every handler: an update seen before is acknowledged and not answered."""
        now = time.time()
        key = f"{self._update_prefix}{update.update_id}"
        try:
            first = await self.store.record_update(key, now, now + UPDATE_MEMORY_S)
        except StoreError as error:
            # Answering twice is the lesser harm than not answering at all.
            log.warning("cannot check whether an update is new (%s): handling it", error)
            return
        if not first:
            log.info("update delivered again: already handled, not answered twice")
            raise ApplicationHandlerStop

    def _chat_lock(self, chat_id: int) -> asyncio.Lock:
        lock = self._chat_locks.get(chat_id)
        if lock is None:
            lock = self._chat_locks[chat_id] = asyncio.Lock()
        return lock

    def _chatter(self, update: Update) -> Chatter:
        user = update.effective_user
        return Chatter(
            key=user_key(self.user_secret, "tg", user.id), language_code=user.language_code
        )

    async def _serve(
        self,
        update: Update,
        work: Callable[[Chatter], Awaitable[list[Reply]]],
        action: str | None = None,
    ) -> None:
        chat_id = update.effective_chat.id
        async with self._chat_lock(chat_id):
            if action is not None:
                await self._chat_action(chat_id, action)
            replies = await work(self._chatter(update))
            await self._send_all(chat_id, replies)

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        name = (update.effective_message.text or "/").split()[0]
        is_admin = update.effective_user.id in self.settings.admin_telegram_ids
        await self._serve(
            update, lambda chatter: self.conversation.command(chatter, name, is_admin=is_admin)
        )

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        text = update.effective_message.text
        await self._serve(update, lambda chatter: self.conversation.text(chatter, text))

    async def _on_location(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        where = update.effective_message.location
        if not is_coordinate(where.latitude, where.longitude):
            # Telegram's own clients cannot send this; a forged webhook update can.
            await self._serve(update, lambda chatter: self.conversation.other(chatter, "location"))
            return
        await self._serve(
            update,
            lambda chatter: self.conversation.location(chatter, where.latitude, where.longitude),
        )

    async def _on_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        largest = update.effective_message.photo[-1]
        await self._photo(update, largest.file_id, largest.file_size)

    async def _on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        document = update.effective_message.document
        await self._photo(update, document.file_id, document.file_size)

    async def _photo(self, update: Update, file_id: str, size: int | None) -> None:
        album = update.effective_message.media_group_id
        if album is not None:
            await self._album_photo(update, album, file_id, size)
            return

        async def work(chatter: Chatter) -> list[Reply]:
            data = await self._fetch(file_id, size)
            if data is None:
                return await self.conversation.refuse(chatter, "file_too_large")
            return await self.conversation.photo(chatter, data, photo_ref=file_id)

        await self._serve(update, work, action=ChatAction.TYPING)

    async def _album_photo(self, update: Update, album: str, file_id: str, size: int | None):
        """A photo of an album: kept now; the album answered once, after its last photo."""
        photo_id = ""

        async def keep(chatter: Chatter) -> list[Reply]:
            nonlocal photo_id
            data = await self._fetch(file_id, size)
            photo_id, replies = await self.conversation.album_photo(
                chatter, album, data, file_id, sequence=update.effective_message.message_id
            )
            return replies

        await self._serve(update, keep, action=ChatAction.TYPING)
        # Outside the chat's lock, so that the album's next photos are kept meanwhile.
        await asyncio.sleep(self.conversation.album_wait_s)
        await self._serve(
            update, lambda chatter: self.conversation.answer_album(chatter, album, photo_id)
        )

    async def _fetch(self, file_id: str, size: int | None) -> bytes | None:
        """The photo's bytes; None when it is over the size limit."""
        if not self.settings.intake.fits(size):  # known from the update: no download
            return None
        return await self._download(file_id)

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        try:
            await query.answer()  # stops the button's spinner; the answer follows as messages
        except TelegramError as exc:
            log.info("answerCallbackQuery failed: %s", exc)
        action = query.data or ""
        chat_action = ChatAction.UPLOAD_PHOTO if action.startswith(ActionKind.HEATMAP) else None
        await self._serve(
            update,
            lambda chatter: self.conversation.button(chatter, action, self._download),
            action=chat_action,
        )

    async def _on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or update.effective_user is None:
            return  # edited messages, channel posts, ...: nothing to answer
        what = next(
            (
                kind
                for kind in ("sticker", "voice", "video", "audio", "contact", "poll")
                if getattr(message, kind, None)
            ),
            "message",
        )
        await self._serve(update, lambda chatter: self.conversation.other(chatter, what))

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling an update", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat and update.effective_user:
            lang = language_for(update.effective_user.language_code)
            text = self.conversation.texts.word("error_try_again", lang)
            try:
                await self._send_all(update.effective_chat.id, [Reply(text=text)])
            except TelegramError as exc:  # refused: there is nothing left to tell the user
                log.info("the error reply was refused too: %s", exc)

    # ---- Telegram I/O ------------------------------------------------------------------------

    async def _download(self, file_id: str | None) -> bytes | None:
        if not file_id:
            return None
        try:
            telegram_file = await _retrying(
                lambda: self.application.bot.get_file(file_id), "getFile"
            )
            if not self.settings.intake.fits(telegram_file.file_size):
                return None
            return bytes(await _retrying(telegram_file.download_as_bytearray, "download"))
        except TelegramError as exc:  # e.g. "file is too big" from the Bot API
            log.info("could not download a file: %s", exc)
            return None

    async def _chat_action(self, chat_id: int, action: str) -> None:
        try:
            await self.application.bot.send_chat_action(chat_id, action)
        except TelegramError as exc:  # a missing "typing..." is not worth failing over
            log.debug("sendChatAction failed: %s", exc)

    async def _send_all(self, chat_id: int, replies: list[Reply]) -> None:
        """Send `replies` in order; what Telegram will not take now goes to the outbox."""
        # Earlier replies are queued: these go behind them (unless the store fails: then now).
        if self.outbox.is_waiting(chat_id) and await self.outbox.put(chat_id, replies):
            return
        for index, reply in enumerate(replies):
            try:
                await _retrying(lambda r=reply: self._send(chat_id, r), "send")
            except Forbidden:
                log.info("the user blocked the bot; dropping the rest of the replies")
                return
            except BadRequest:
                raise  # the reply itself is wrong: queueing it cannot help
            except (NetworkError, RetryAfter) as exc:
                log.warning("Telegram still failing after retries (%s): replies queued", exc)
                await self.outbox.put(chat_id, replies[index:])
                return

    async def _deliver_queued(self, chat_id: int, reply: Reply) -> Delivery:
        """One attempt at a reply from the outbox (which does the retrying)."""
        try:
            await self._send(chat_id, reply)
        except (Forbidden, BadRequest) as exc:
            log.info("a queued reply was refused: %s", exc)
            return Delivery.UNDELIVERABLE
        except (NetworkError, RetryAfter) as exc:
            log.info("a queued reply could not be sent yet: %s", exc)
            return Delivery.RETRY
        except TelegramError as exc:  # e.g. the chat migrated: this reply cannot go out
            log.warning("a queued reply was refused: %s", exc)
            return Delivery.UNDELIVERABLE
        return Delivery.SENT

    async def _send(self, chat_id: int, reply: Reply) -> None:
        bot = self.application.bot
        markup = _markup(reply)
        if reply.venue is not None:
            venue = reply.venue
            await bot.send_venue(
                chat_id,
                latitude=venue.lat,
                longitude=venue.lon,
                title=venue.title[:64] or "Clinic",
                address=venue.address[:256] or " ",
            )
        elif reply.photo is not None:
            # A caption Telegram would refuse (too long, or bad HTML) goes as its own message.
            short = not reply.text or not telegram_problems(reply.text, CAPTION_LIMIT)
            await bot.send_photo(
                chat_id,
                reply.photo,
                caption=reply.text if short else None,
                parse_mode=ParseMode.HTML,
                reply_markup=markup if short else None,
            )
            if not short:
                await self._send_text(chat_id, reply.text, markup)
        else:
            await self._send_text(chat_id, reply.text, markup)

    async def _send_text(self, chat_id: int, text: str, markup: Any) -> None:
        problems = telegram_problems(text)
        if problems:
            # Telegram would refuse it, and the user would get nothing: send the words without
            # their formatting instead, and say loudly that a template or the splitter is wrong.
            log.error("a reply Telegram would refuse (%s): sent as plain text", "; ".join(problems))
            plain = plain_text(text).strip() or "…"
            parts = [
                plain[i : i + TELEGRAM_MESSAGE_LIMIT]
                for i in range(0, len(plain), TELEGRAM_MESSAGE_LIMIT)
            ]
            for number, part in enumerate(parts, 1):
                await self.application.bot.send_message(
                    chat_id,
                    part,
                    reply_markup=markup if number == len(parts) else None,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            return
        await self.application.bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        )


def _markup(reply: Reply) -> Any:
    if reply.buttons:
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(button.text, callback_data=button.action) for button in row]
                for row in reply.buttons
            ]
        )
    if reply.ask_location:
        return ReplyKeyboardMarkup(
            [[KeyboardButton(reply.location_button or "📍", request_location=True)]],
            resize_keyboard=True,
            one_time_keyboard=True,
        )
    if reply.close_keyboard:
        return ReplyKeyboardRemove()
    return None


async def _retrying(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call()`, again after network errors (with back-off), so that no reply is lost.

    429s normally never reach here (the rate limiter waits them out); one that does is waited
    out too.
    """
    delay = 0.5
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            return await call()
        except RetryAfter as exc:
            if attempt == SEND_ATTEMPTS:
                raise
            wait = exc.retry_after
            await asyncio.sleep(wait.total_seconds() if hasattr(wait, "total_seconds") else wait)
        except BadRequest:
            raise  # the request itself is wrong: sending it again cannot help
        except NetworkError as exc:
            if attempt == SEND_ATTEMPTS:
                raise
            log.info("%s: network error (%s), retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")
