import asyncio
import threading

import numpy as np
import pytest
from PIL import Image

from diagnosis.bundle import load_bundle
from diagnosis.serving.batcher import Predictor
from diagnosis.serving.torch_backend import TorchBackend, preprocess

from helpers import LABELS, make_bundle


def random_photos(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 255, (90 + i % 7, 120, 3), dtype=np.uint8))
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def classifier(tiny_bundle) -> TorchBackend:
    return TorchBackend(load_bundle(tiny_bundle))


def test_preprocess_follows_the_card(classifier):
    card = classifier.card
    card_48x80 = type(card)(**{**card.__dict__, "input_size": [3, 48, 80]})
    for size in [(300, 200), (200, 300), (64, 64)]:
        tensor = preprocess(Image.new("RGB", size, (128, 64, 255)), card_48x80)
        assert tuple(tensor.shape) == (3, 48, 80)
    # mean = std = 0.5: 255 maps to 1, 0 to -1.
    white = preprocess(Image.new("RGB", (100, 100), (255, 255, 255)), card)
    assert float(white.min()) == pytest.approx(1.0)


def test_probabilities_top3_and_names(classifier, real_photo_paths):
    images = [Image.open(path).convert("RGB") for path in real_photo_paths[:4]]
    for prediction in classifier.predict_batch(images):
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert len(prediction.top) == 3
        probs = [item.prob for item in prediction.top]
        assert probs == sorted(probs, reverse=True)
        assert prediction.best.label == max(
            prediction.probabilities, key=prediction.probabilities.get
        )
        assert prediction.best.name_ko.startswith("한국어")
        assert prediction.model_version == "test-0"


def test_temperature_flattens_probabilities(tmp_path):
    images = random_photos(3)
    sharp = TorchBackend(load_bundle(make_bundle(tmp_path / "t1", seed=5, temperature=1.0)))
    flat = TorchBackend(load_bundle(make_bundle(tmp_path / "t5", seed=5, temperature=5.0)))
    for a, b in zip(sharp.predict_batch(images), flat.predict_batch(images), strict=True):
        assert a.best.label == b.best.label
        assert b.best.prob < a.best.prob


def test_abstains_below_threshold_or_on_other(tmp_path):
    images = random_photos(4)
    cautious = TorchBackend(load_bundle(make_bundle(tmp_path / "c", abstain_threshold=1.0)))
    assert all(p.abstain for p in cautious.predict_batch(images))
    # With no threshold, abstention happens exactly when "other" is the top answer.
    bold = TorchBackend(load_bundle(make_bundle(tmp_path / "b", abstain_threshold=0.0)))
    for prediction in bold.predict_batch(images):
        assert prediction.abstain == (prediction.best.label == "other")
    # A model whose only strong answer is "other" abstains even when confident.
    other_only = TorchBackend(load_bundle(make_bundle(tmp_path / "o")))
    with_bias = other_only.model.get_classifier()
    with_bias.bias.data[:] = -20
    with_bias.bias.data[LABELS.index("other")] = 20
    assert all(p.abstain and p.best.label == "other" for p in other_only.predict_batch(images))


def test_urgent_when_malignant_labels_together_reach_the_threshold(tmp_path):
    images = random_photos(2)
    classifier = TorchBackend(load_bundle(make_bundle(tmp_path / "u")))
    head = classifier.model.get_classifier()
    head.weight.data[:] = 0
    head.bias.data[:] = 0
    # Melanoma and BCC at 0.2 each: neither is the top answer, together they pass 0.3.
    head.bias.data[LABELS.index("acne")] = np.log(0.6 / 0.2)
    for label in ("melanoma", "basal_cell_carcinoma"):
        head.bias.data[LABELS.index(label)] = 0.0
    others = [
        i
        for i, label in enumerate(LABELS)
        if label not in ("acne", "melanoma", "basal_cell_carcinoma")
    ]
    for index in others:
        head.bias.data[index] = -30
    for prediction in classifier.predict_batch(images):
        assert prediction.best.label == "acne"
        assert prediction.urgent
    head.bias.data[LABELS.index("acne")] = 5
    classifier.rebuild()  # the graphs were built from the weights as they were
    assert not any(p.urgent for p in classifier.predict_batch(images))


async def test_concurrent_callers_each_get_their_own_answer(classifier):
    images = random_photos(40, seed=1)
    expected = [p.best.label for p in classifier.predict_batch(images)]
    expected_probs = [p.best.prob for p in classifier.predict_batch(images)]
    predictor = Predictor(classifier, max_batch=8, max_wait_ms=20)
    try:
        results = await asyncio.gather(*(predictor.predict(image) for image in images))
    finally:
        await predictor.close()
    assert [r.best.label for r in results] == expected
    assert [r.best.prob for r in results] == pytest.approx(expected_probs, abs=1e-3)
    # Requests were gathered into shared forward passes, each no larger than max_batch.
    assert 5 <= predictor.batches_run < 40


async def test_inference_runs_off_the_event_loop_thread(classifier):
    loop_thread = threading.current_thread()
    seen_threads = set()

    class Recording(TorchBackend):
        def predict_batch(self, images):
            seen_threads.add(threading.current_thread())
            return super().predict_batch(images)

    recording = Recording.__new__(Recording)
    recording.__dict__.update(classifier.__dict__)
    predictor = Predictor(recording, max_batch=4)
    try:
        await predictor.predict_many(random_photos(8))
    finally:
        await predictor.close()
    assert seen_threads and loop_thread not in seen_threads
    assert len(seen_threads) == 1  # one worker: the model is never used by two threads at once


async def test_a_failing_batch_reaches_every_caller(classifier):
    class Broken(TorchBackend):
        def predict_batch(self, images):
            raise RuntimeError("model exploded")

    broken = Broken.__new__(Broken)
    broken.__dict__.update(classifier.__dict__)
    predictor = Predictor(broken, max_batch=4)
    try:
        results = await asyncio.gather(
            *(predictor.predict(image) for image in random_photos(6)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        # and the predictor keeps serving afterwards
        predictor.backend = classifier
        assert (await predictor.predict(random_photos(1)[0])).best.label in LABELS
    finally:
        await predictor.close()


async def test_gradcam_png_through_the_predictor(classifier):
    predictor = Predictor(classifier)
    try:
        png = await predictor.gradcam_png(random_photos(1)[0])
    finally:
        await predictor.close()
    assert png.startswith(b"\x89PNG")
