"""`Predictor`: the asyncio face of a back-end, gathering concurrent photos into batches.

The bot is asyncio; the model must not run on the event loop, and one forward pass over several
photos costs far less than one per photo. So requests wait a few milliseconds for company and
run together on one worker thread (the back-end is never used by two threads at once).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from diagnosis.bundle import ModelCard
from diagnosis.serving.backend import Backend
from diagnosis.serving.postprocess import Prediction

log = logging.getLogger(__name__)


@dataclass
class _Request:
    image: Image.Image
    future: asyncio.Future


class Predictor:
    """Async, batching front of a back-end.

    Requests wait at most `max_wait_ms` for company and are run `max_batch` at a time on a
    single worker thread (so the model is never used by two threads at once).
    """

    def __init__(
        self,
        backend: Backend,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        warm_up: bool = False,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictor")
        if warm_up:
            # On the worker thread, ahead of any request (they queue behind it), while the rest
            # of start-up goes on; a failure is logged and the first request builds it again.
            self._executor.submit(self._warm_up)
        self._queue: asyncio.Queue[_Request] | None = None
        self._batcher: asyncio.Task | None = None
        self.batches_run = 0  # observability: how many forward passes served the requests

    @property
    def card(self) -> ModelCard:
        return self.backend.card

    def _warm_up(self) -> None:
        try:
            self.backend.warm_up()
        except Exception:  # noqa: BLE001 - start-up goes on; requests will show the problem
            log.exception("model warm-up failed")

    async def predict(self, image: Image.Image) -> Prediction:
        self._ensure_started()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(image, future))
        return await future

    async def predict_many(self, images: list[Image.Image]) -> list[Prediction]:
        return list(await asyncio.gather(*(self.predict(image) for image in images)))

    async def gradcam_png(self, image: Image.Image, label: str | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.backend.gradcam_png, image, label)

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
            self._batcher = None
        self._executor.shutdown(wait=True)

    def _ensure_started(self) -> None:
        if self._batcher is None or self._batcher.done():
            self._queue = asyncio.Queue()
            self._batcher = asyncio.get_running_loop().create_task(self._run_batches())

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            batch = [await queue.get()]
            # Give concurrent callers a moment to join this forward pass. A plain sleep and
            # get_nowait avoid cancelling a pending get(), which can drop an item on 3.11.
            if queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.max_wait)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            batch = [request for request in batch if not request.future.cancelled()]
            if not batch:
                continue
            try:
                predictions = await loop.run_in_executor(
                    self._executor, self.backend.predict_batch, [r.image for r in batch]
                )
            except Exception as exc:  # noqa: BLE001 - every waiting caller must hear of it
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self.batches_run += 1
            for request, prediction in zip(batch, predictions, strict=True):
                if not request.future.done():
                    request.future.set_result(prediction)
