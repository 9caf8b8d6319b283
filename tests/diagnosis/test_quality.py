"""Photo-quality check on real photos from the skin-photos dataset and degraded copies of them."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from diagnosis.quality import (
    QualityIssue,
    QualityReport,
    QualityThresholds,
    check_quality,
)

# Degradations are sized for a 448 px wide photo and scale with the width, so the 180 px
# dermoscopic photos get the same relative damage (as in bench/quality_calibration.py).
REFERENCE_WIDTH = 448
SAMPLE_PER_SOURCE = {"dermnet": 24, "isic": 16}


@pytest.fixture(scope="module")
def dataset() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "skin-photos"
    if not (path / "manifest.csv").is_file():
        pytest.skip(f"the skin-photos dataset is not at {path}; these tests need real photos")
    return path


@pytest.fixture(scope="module")
def photos(dataset: Path) -> list[tuple[str, Image.Image]]:
    """A fixed spread of real photos: every Nth of each source's sorted file list."""
    with (dataset / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    sample = []
    for source, count in SAMPLE_PER_SOURCE.items():
        files = sorted(row["file"] for row in rows if row["source"] == source)
        assert len(files) >= count, f"only {len(files)} {source} photos in the manifest"
        for name in files[:: len(files) // count][:count]:
            with Image.open(dataset / name) as opened:
                sample.append((name, opened.convert("RGB")))
    return sample


def reencode(image: Image.Image) -> Image.Image:
    # Users' photos arrive as JPEGs; compression adds blocky detail a blur check must see past.
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=87)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def blurred(image: Image.Image, radius: float = 4.0) -> Image.Image:
    return reencode(image.filter(ImageFilter.GaussianBlur(radius * image.width / REFERENCE_WIDTH)))


def exposed(image: Image.Image, factor: float) -> Image.Image:
    return reencode(ImageEnhance.Brightness(image).enhance(factor))


def far_away(image: Image.Image, index: int, share: float = 0.25) -> Image.Image:
    """The photo shrunk and pasted on a grey wall or a white table, as if taken from afar."""
    backgrounds = ((150, 150, 146), (234, 232, 226), (200, 200, 198), (90, 90, 92))
    width, height = image.size
    noise = np.random.default_rng(index).normal(0.0, 3.0, (height, width, 1))
    colour = np.array(backgrounds[index % len(backgrounds)], dtype=np.float64)
    canvas = Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8))
    small = image.resize((round(width * share), round(height * share)), Image.Resampling.LANCZOS)
    canvas.paste(small, ((width - small.width) // 2, (height - small.height) // 2))
    return reencode(canvas)


def share_flagged(images: list[tuple[str, Image.Image]], issue: QualityIssue) -> tuple[float, list]:
    """The share of `images` flagged with `issue`, and the ones that were not."""
    missed = []
    for name, image in images:
        report = check_quality(image)
        if issue not in report.reasons:
            missed.append((name, report.reasons, report.measures))
    return 1.0 - len(missed) / len(images), missed


def test_sample_covers_both_sources(photos):
    names = [name for name, _ in photos]
    assert sum("/dermnet-" in name for name in names) == SAMPLE_PER_SOURCE["dermnet"]
    assert sum("/isic-" in name for name in names) == SAMPLE_PER_SOURCE["isic"]


def test_real_photos_mostly_pass(photos):
    flagged = []
    for name, image in photos:
        report = check_quality(image)
        assert report.ok == (report.reasons == ())
        if not report.ok:
            flagged.append((name, report.reasons, report.measures))
    assert len(flagged) <= 0.1 * len(photos), f"real photos flagged: {flagged}"


def test_blurred_copies_are_blurry(photos):
    rate, missed = share_flagged([(n, blurred(image)) for n, image in photos], QualityIssue.BLURRY)
    assert rate >= 0.9, f"blurred copies not flagged: {missed}"


def test_darkened_copies_are_too_dark(photos):
    copies = [(n, exposed(image, 0.22)) for n, image in photos]
    rate, missed = share_flagged(copies, QualityIssue.TOO_DARK)
    assert rate >= 0.95, f"darkened copies not flagged: {missed}"
    # The dark photo is not also called blurry or far away: its colours and detail are buried.
    assert all(check_quality(image).reasons == (QualityIssue.TOO_DARK,) for _, image in copies)


def test_overexposed_copies_are_too_bright(photos):
    rate, missed = share_flagged(
        [(n, exposed(image, 3.0)) for n, image in photos], QualityIssue.TOO_BRIGHT
    )
    assert rate >= 0.9, f"overexposed copies not flagged: {missed}"


def test_far_away_copies_have_a_small_subject(photos):
    copies = [(n, far_away(image, i)) for i, (n, image) in enumerate(photos)]
    rate, missed = share_flagged(copies, QualityIssue.SUBJECT_TOO_SMALL)
    assert rate >= 0.9, f"far-away copies not flagged: {missed}"


def good_photo(photos) -> tuple[Image.Image, QualityReport]:
    for _, image in photos:
        report = check_quality(image)
        if report.ok:
            return image, report
    raise AssertionError("no real photo in the sample passes the check")


@pytest.mark.parametrize(
    ("field", "measure", "nudge", "issue"),
    [
        ("min_sharpness", "sharpness", +0.01, QualityIssue.BLURRY),
        ("min_subject_fraction", "subject_fraction", +0.01, QualityIssue.SUBJECT_TOO_SMALL),
        ("min_brightness", "brightness", +0.01, QualityIssue.TOO_DARK),
        ("min_highlights", "highlights", +0.01, QualityIssue.TOO_DARK),
        ("max_brightness", "brightness", -0.01, QualityIssue.TOO_BRIGHT),
        ("max_clipped", "clipped", -0.01, QualityIssue.TOO_BRIGHT),
    ],
)
def test_each_threshold_is_honoured(photos, field, measure, nudge, issue):
    image, report = good_photo(photos)
    stricter = replace(QualityThresholds(), **{field: report.measures[measure] + nudge})
    verdict = check_quality(image, stricter)
    assert not verdict.ok
    assert issue in verdict.reasons
    assert verdict.measures == report.measures  # thresholds judge, they do not change measuring


def test_lenient_thresholds_accept_a_blurred_photo(photos):
    image = blurred(good_photo(photos)[0], radius=5.0)
    assert QualityIssue.BLURRY in check_quality(image).reasons
    assert check_quality(image, QualityThresholds(min_sharpness=0.0)).ok


def test_report_to_dict_is_json(photos):
    for image in (photos[0][1], blurred(photos[0][1])):
        report = check_quality(image)
        data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
        assert set(data) == {"ok", "reasons", "measures"}
        assert data["ok"] is report.ok
        assert data["reasons"] == [str(reason) for reason in report.reasons]
        assert all(reason in {issue.value for issue in QualityIssue} for reason in data["reasons"])
        assert {"sharpness", "brightness", "subject_fraction"} <= set(data["measures"])
        assert all(isinstance(value, float) for value in data["measures"].values())
    blurry = check_quality(blurred(photos[0][1])).to_dict()
    assert blurry["ok"] is False and "blurry" in blurry["reasons"]


def assert_sane(report: QualityReport) -> None:
    assert isinstance(report, QualityReport)
    assert all(math.isfinite(value) for value in report.measures.values())
    assert report.ok == (not report.reasons)


def test_tiny_image(photos):
    for _, image in photos[:: len(photos) // 4]:
        assert_sane(check_quality(image.resize((64, 64), Image.Resampling.LANCZOS)))
    assert_sane(check_quality(Image.new("RGB", (64, 64), (180, 140, 120))))


def test_large_image_is_judged_like_the_original(photos):
    _, original = photos[0]
    large = original.resize((4000, 3000), Image.Resampling.BICUBIC)
    report = check_quality(large)
    assert_sane(report)
    small = check_quality(original)
    assert report.reasons == small.reasons
    for key in ("brightness", "highlights", "subject_fraction"):
        assert report.measures[key] == pytest.approx(small.measures[key], abs=0.03), key
    assert report.measures["sharpness"] == pytest.approx(small.measures["sharpness"], rel=0.25)


def test_grayscale_looking_photo(photos):
    # No colour means skin cannot be found by colour: that is no evidence of a far-away photo.
    for _, image in photos[:: len(photos) // 8]:
        gray = image.convert("L").convert("RGB")
        report = check_quality(gray)
        assert_sane(report)
        assert QualityIssue.SUBJECT_TOO_SMALL not in report.reasons
        assert report.measures["brightness"] == pytest.approx(
            check_quality(image).measures["brightness"], abs=0.02
        )
    assert_sane(check_quality(photos[0][1].convert("L")))  # a non-RGB mode is converted


def test_featureless_frames():
    flat = check_quality(Image.new("RGB", (300, 200), (128, 128, 128)))
    assert flat.measures["sharpness"] == 0.0
    assert QualityIssue.BLURRY in flat.reasons
    assert check_quality(Image.new("RGB", (300, 200), (0, 0, 0))).reasons == (
        QualityIssue.TOO_DARK,
    )
    assert QualityIssue.TOO_BRIGHT in check_quality(Image.new("RGB", (300, 200), "white")).reasons
