"""Assembling the assistant from its settings: model, web server, (later) Telegram.

Start-up is where operator mistakes surface: a bundle that was asked for but cannot be loaded
stops the process with the file and the problem named. With no settings at all the assistant
runs offline on the bundled model, or says plainly that no trained model is installed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.conversation import Conversation, FloodLimit
from bot.settings import Settings, SettingsError
from diagnosis.bundle import BundleError
from diagnosis.intake import DecodeSlots
from diagnosis.serving import Predictor
from diagnosis.serving import load_predictor as serving_predictor
from knowledge.embeddings import shared_encoder
from knowledge.resilient import ResilientKnowledge
from knowledge.seed import seed
from knowledge.store import KnowledgeStore, StoreError, open_store

log = logging.getLogger(__name__)


@dataclass
class Assistant:
    settings: Settings
    predictor: Predictor | None  # None: no trained model is installed
    store: KnowledgeStore | None = None  # opened by `open_knowledge` when the server starts
    knowledge: ResilientKnowledge | None = None  # what the conversation reads content through
    conversation: Conversation | None = None  # ready once the knowledge is open
    # Photos decoded at once, every transport together (the memory budget, diagnosis/intake.py).
    decode_slots: DecodeSlots = field(init=False)
    warming: asyncio.Task | None = None  # the FAQ index being built and embedded

    def __post_init__(self) -> None:
        self.decode_slots = DecodeSlots(self.settings.intake)

    @property
    def model_version(self) -> str | None:
        return self.predictor.card.version if self.predictor else None

    async def open_knowledge(self) -> None:
        """Open the configured store and seed it from knowledge/content (idempotent)."""
        try:
            self.store = await open_store(self.settings.store)
            report = await seed(self.store)
        except StoreError as exc:
            setting = "SKINCARE_DB" if self.settings.store.kind == "sqlite" else "SKINCARE_STORE"
            raise SettingsError(f"{setting}: the {self.settings.store.kind} store: {exc}") from exc
        self.knowledge = ResilientKnowledge(self.store)
        await self.knowledge.warm()
        self.conversation = Conversation(
            self.store,
            self.knowledge,
            self.predictor,
            intake=self.settings.intake,
            decode_slots=self.decode_slots,
            quality=self.settings.quality,
            flood=FloodLimit(self.settings.flood_max_messages, self.settings.flood_window_s),
            encoder=(
                shared_encoder(self.settings.faq_embedding_cache)
                if self.settings.faq_embeddings
                else None
            ),
            encoding_wait_s=self.settings.faq_encoding_wait_s,
        )
        # Seconds of CPU in a worker thread; questions meanwhile are matched by words.
        self.warming = asyncio.create_task(self.conversation.answers.warm())
        log.info(
            "Knowledge store %s ready; seed: %s",
            self.settings.store.kind,
            report.summary().replace("\n", "; "),
        )

    async def close(self) -> None:
        if self.warming is not None:
            self.warming.cancel()
        if self.predictor is not None:
            await self.predictor.close()
        if self.store is not None:
            await self.store.close()


def load_predictor(settings: Settings) -> Predictor | None:
    serving = settings.serving
    if not serving.model_explicit and not serving.model_path.exists():
        log.warning(
            "No trained model is installed at %s: photos will be answered with a notice "
            "instead of a prediction. Set SKINCARE_MODEL to a model bundle.",
            serving.model_path,
        )
        return None
    # diagnosis.serving picks the back-end: ONNX Runtime where it can, else torch, saying why.
    try:
        return serving_predictor(serving, warm_up=True)
    except BundleError as exc:
        raise SettingsError(f"SKINCARE_MODEL: {exc}") from exc


def build_assistant(settings: Settings) -> Assistant:
    return Assistant(settings=settings, predictor=load_predictor(settings))
