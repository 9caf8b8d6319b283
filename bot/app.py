"""Assembling the assistant from its settings: model, web server, (later) Telegram.

Start-up is where operator mistakes surface: a bundle that was asked for but cannot be loaded
stops the process with the file and the problem named. With no settings at all the assistant
runs offline on the bundled model, or says plainly that no trained model is installed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.conversation import Conversation, FloodLimit
from bot.settings import Settings, SettingsError
from diagnosis.bundle import BundleError
from diagnosis.onnx_classifier import OnnxClassifier
from diagnosis.prediction import Backend, Predictor
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
            quality=self.settings.quality,
            flood=FloodLimit(self.settings.flood_max_messages, self.settings.flood_window_s),
        )
        log.info(
            "Knowledge store %s ready; seed: %s",
            self.settings.store.kind,
            report.summary().replace("\n", "; "),
        )

    async def close(self) -> None:
        if self.predictor is not None:
            await self.predictor.close()
        if self.store is not None:
            await self.store.close()


def load_predictor(settings: Settings) -> Predictor | None:
    if not settings.model_explicit and not settings.model_path.exists():
        log.warning(
            "No trained model is installed at %s: photos will be answered with a notice "
            "instead of a prediction. Set SKINCARE_MODEL to a model bundle.",
            settings.model_path,
        )
        return None
    try:
        classifier = load_classifier(settings)
    except BundleError as exc:
        raise SettingsError(f"SKINCARE_MODEL: {exc}") from exc
    log.info(
        "Model %s (%s) loaded; inference %s on %d threads",
        classifier.version,
        classifier.card.architecture,
        classifier.precision,
        classifier.threads,
    )
    return Predictor(
        classifier,
        max_batch=settings.max_batch,
        max_wait_ms=settings.batch_wait_ms,
        warm_up=True,
    )


def load_classifier(settings: Settings) -> Backend:
    """ONNX Runtime where it can serve the bundle (SKINCARE_RUNTIME auto or onnx, fp32), else
    torch; `auto` says in the log why it fell back, `onnx` stops start-up instead."""
    if settings.runtime != "torch" and settings.inference == "fp32":
        try:
            return OnnxClassifier(settings.model_path)
        except (BundleError, ImportError) as exc:  # no/stale model.onnx, no onnxruntime
            if settings.runtime == "onnx":
                raise SettingsError(f"SKINCARE_RUNTIME=onnx: {exc}") from exc
            log.warning("Serving the model with torch: %s", exc)
    # torch only here: importing it costs ~500 MB and 1.6 s of start-up
    from diagnosis.bundle import load_bundle
    from diagnosis.predictor import Classifier as TorchClassifier
    from diagnosis.predictor import configure_threads

    configure_threads()
    return TorchClassifier(load_bundle(settings.model_path), inference=settings.inference)


def build_assistant(settings: Settings) -> Assistant:
    return Assistant(settings=settings, predictor=load_predictor(settings))
