"""The checklist in the conversation: a photo's answer, then one question a message, then one
line saying how the answers changed the advice; answers kept in the store (replicas: each
answer goes to another `Conversation` over the same store), deleted by /forget, counted for
/stats. A real SQLite store seeded with the shipped content, a real photo through the real
intake and quality checks; the prediction is fixed so that each tier is reached on purpose."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image, ImageFilter

from bot.conversation import Chatter, Conversation, Reply, user_key
from diagnosis.bundle import BUNDLED_MODEL_DIR, load_bundle
from diagnosis.serving.postprocess import Prediction, RankedLabel
from knowledge.checklist import PIGMENTED, QUESTIONS, RASH
from knowledge.resilient import ResilientKnowledge

from helpers import image_bytes

ALICE = Chatter(user_key("test-secret", "telegram", 2001), "en")
BORA = Chatter(user_key("test-secret", "telegram", 2002), "ko-KR")
PHOTO = "acne/dermnet-0121064acd137936.jpg"  # any real photo: the prediction is fixed


@pytest.fixture(scope="module")
def card():
    return load_bundle(BUNDLED_MODEL_DIR).card


class FixedPredictor:
    """Every photo gets the given prediction (the intake and quality checks still run)."""

    def __init__(self, card, prediction: Prediction):
        self.card, self.prediction = card, prediction

    async def predict(self, image) -> Prediction:
        return self.prediction


def prediction(card, top, *, urgent=False, likely=True, **more) -> Prediction:
    ranked = tuple(
        RankedLabel(label, card.display_name(label, "en"), card.display_name(label, "ko"), p)
        for label, p in top
    )
    probabilities = {label: 0.0 for label in card.labels} | dict(top) | more
    return Prediction(ranked, probabilities, False, urgent, card.version, cancer_likely=likely)


def possible_melanoma(card) -> Prediction:
    """A naevus on top, melanoma 7 %: "a skin cancer can't be ruled out"."""
    top = [("melanocytic_nevus", 0.70), ("benign_keratosis", 0.12), ("melanoma", 0.07)]
    return prediction(card, top, urgent=True, likely=False)


def likely_melanoma(card) -> Prediction:
    top = [("melanoma", 0.55), ("melanocytic_nevus", 0.30), ("benign_keratosis", 0.05)]
    return prediction(card, top, urgent=True)


def benign_mole(card) -> Prediction:
    top = [("melanocytic_nevus", 0.90), ("benign_keratosis", 0.05), ("acne", 0.01)]
    return prediction(card, top)


def rash(card, first="eczema") -> Prediction:
    top = [(first, 0.80), ("fungal_infection", 0.08), ("acne", 0.05)]
    return prediction(card, top)


def acne_only(card) -> Prediction:
    return prediction(card, [("acne", 0.90), ("other", 0.05), ("melanoma", 0.0)])


@pytest.fixture
def photo(dataset_dir) -> bytes:
    return (dataset_dir / PHOTO).read_bytes()


@pytest.fixture
def replicas(store, card):
    """Two conversations over one store, as two bot replicas; `.predict(p)` fixes both."""

    class Replicas(list):
        def predict(self, fixed: Prediction) -> None:
            for conversation in self:
                conversation.predictor = FixedPredictor(card, fixed)

    return Replicas(Conversation(store, ResilientKnowledge(store), None) for _ in range(2))


def question_actions(reply: Reply) -> dict[str, str]:
    """The question's buttons by answer: {"yes": "check:<id>:size:yes", ...}."""
    return {b.action.rsplit(":", 1)[1]: b.action for row in reply.buttons for b in row}


async def answer_all(replicas, chatter, first: Reply, answers: dict[str, str]) -> Reply:
    """Answer question after question (each on the other replica), `answers` by question id
    ("no" when not given); returns the outcome line."""
    reply, turn = first, 0
    while reply.buttons and question_actions(reply).keys() == {"yes", "no", "unsure", "skip"}:
        action = question_actions(reply)["yes"]
        question = action.split(":")[2]
        turn += 1
        [reply] = await replicas[turn % 2].button(
            chatter, question_actions(reply)[answers.get(question, "no")]
        )
    return reply


async def photo_answer(replicas, chatter, photo) -> tuple[Reply, Reply]:
    *answer, question = await replicas[0].photo(chatter, photo)
    assert answer and answer[-1].buttons, "the result with its own buttons comes first"
    return answer[-1], question


async def test_a_possible_cancer_all_no_leaves_the_cancer_tier_at_a_routine_check(
    replicas, store, card, photo
):
    replicas.predict(possible_melanoma(card))
    result, question = await photo_answer(replicas, ALICE, photo)
    assert "can't be ruled out" in "".join(r.text for r in [result])
    assert "A few questions a photo can't answer" in question.text
    assert "1/8" in question.text and "changed in size" in question.text
    assert list(question_actions(question)) == ["yes", "no", "unsure", "skip"]
    state = await store.get_user(ALICE.key)
    assert state.last_result["checklist_group"] == PIGMENTED

    outcome = await answer_all(replicas, ALICE, question, {})
    assert "Your answers make a skin cancer less likely" in outcome.text
    assert "routine check" in outcome.text
    stored = (await store.get_user(ALICE.key)).last_result
    assert stored["checklist"] == {q: "no" for q in QUESTIONS[PIGMENTED]}
    assert (stored["urgent"], stored["cancer_tier"], stored["checklist_advice"]) == (
        False,
        "",
        "routine",
    )
    [record] = await store.list_analyses("2000-01-01T00:00:00Z")
    assert record.checklist_rules == ["all_clear"] and record.urgent  # as first answered


async def test_in_korean_a_changed_size_and_shape_raise_to_two_weeks(replicas, store, card, photo):
    replicas.predict(possible_melanoma(card))
    result, question = await photo_answer(replicas, BORA, photo)
    assert "사진만으로는 알 수 없는 몇 가지 질문" in question.text
    assert "크기가 변했나요" in question.text
    assert [b.text for row in question.buttons for b in row] == [
        "예",
        "아니요",
        "잘 모르겠어요",
        "건너뛰기",
    ]
    outcome = await answer_all(replicas, BORA, question, {"size": "yes", "shape": "yes"})
    assert "답에 따라 안내가 바뀝니다" in outcome.text and "2주 이내" in outcome.text
    assert "4점" in outcome.text
    stored = (await store.get_user(BORA.key)).last_result
    assert (stored["cancer_tier"], stored["level"], stored["checklist_advice"]) == (
        "likely",
        "urgent",
        "two_weeks",
    )
    # The care tips follow the raised advice: no self-care, a dermatologist within 2 weeks.
    [care] = await replicas[1].button(BORA, f"care:{stored['id']}")
    assert "2주 이내" in care.text


async def test_a_benign_mole_yes_to_size_only_changes_nothing(replicas, store, card, photo):
    replicas.predict(benign_mole(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    outcome = await answer_all(replicas, ALICE, question, {"size": "yes"})
    assert "don't change the advice" in outcome.text and "score 2" in outcome.text
    [record] = await store.list_analyses("2000-01-01T00:00:00Z")
    assert record.checklist_rules == []


async def test_bleeding_raises_a_benign_mole(replicas, store, card, photo):
    replicas.predict(benign_mole(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    outcome = await answer_all(replicas, ALICE, question, {"bleeding": "yes"})
    assert "within 2 weeks" in outcome.text and "it bleeds" in outcome.text
    [record] = await store.list_analyses("2000-01-01T00:00:00Z")
    assert record.checklist_rules == ["bleeding"]


async def test_a_likely_cancer_is_never_lowered(replicas, store, card, photo):
    replicas.predict(likely_melanoma(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    outcome = await answer_all(replicas, ALICE, question, {})
    assert "don't change the advice" in outcome.text
    stored = (await store.get_user(ALICE.key)).last_result
    assert (stored["urgent"], stored["cancer_tier"]) == (True, "likely")


async def test_one_not_sure_keeps_the_possible_tier(replicas, store, card, photo):
    replicas.predict(possible_melanoma(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    outcome = await answer_all(replicas, ALICE, question, {"colour": "unsure"})
    assert "don't change the advice" in outcome.text
    assert (await store.get_user(ALICE.key)).last_result["cancer_tier"] == "possible"


async def test_skip_ends_the_questions_and_keeps_the_answers_given(replicas, store, card, photo):
    replicas.predict(possible_melanoma(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    [outcome] = await replicas[1].button(ALICE, question_actions(question)["skip"])
    assert "No answers: the advice above stands." == outcome.text
    assert not outcome.buttons
    # The questions are over: an old question's button is stale.
    [stale] = await replicas[0].button(ALICE, question_actions(question)["no"])
    assert "older answer" in stale.text


async def test_fever_with_a_spreading_rash_means_same_day(replicas, store, card, photo):
    replicas.predict(rash(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    assert (await store.get_user(ALICE.key)).last_result["checklist_group"] == RASH
    assert "fever" in question.text and f"1/{len(QUESTIONS[RASH])}" in question.text
    outcome = await answer_all(replicas, ALICE, question, {"fever": "yes", "spreading": "yes"})
    assert "get care today" in outcome.text and "119" in outcome.text
    [record] = await store.list_analyses("2000-01-01T00:00:00Z")
    assert record.checklist_rules == ["fever_spreading"]


async def test_a_possible_shingles_near_the_eye_means_same_day_in_korean(
    replicas, store, card, photo
):
    replicas.predict(rash(card, first="viral_infection"))
    _, question = await photo_answer(replicas, BORA, photo)
    outcome = await answer_all(replicas, BORA, question, {"eye": "yes"})
    assert "오늘 진료를 받으세요" in outcome.text and "눈 주위" in outcome.text


async def test_no_questions_after_an_answer_they_do_not_fit(replicas, store, card, photo):
    replicas.predict(acne_only(card))
    [answer] = await replicas[0].photo(ALICE, photo)
    assert "check:" not in str(answer.buttons)
    assert (await store.get_user(ALICE.key)).last_result["checklist_group"] == ""


async def test_a_double_tap_or_a_made_up_answer_is_a_stale_button(replicas, card, photo):
    replicas.predict(benign_mole(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    no = question_actions(question)["no"]
    [second] = await replicas[0].button(ALICE, no)
    assert "2/8" in second.text
    for action in (no, no.replace(":no", ":maybe"), no.replace(":size:", ":diameter:")):
        [stale] = await replicas[1].button(ALICE, action)
        assert "older answer" in stale.text
    # A new photo makes the old questions stale.
    await replicas[0].photo(ALICE, photo)
    [stale] = await replicas[1].button(ALICE, question_actions(second)["no"])
    assert "older answer" in stale.text


async def test_forget_deletes_the_answers(replicas, store, card, photo):
    replicas.predict(possible_melanoma(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    await replicas[1].button(ALICE, question_actions(question)["yes"])
    assert (await store.get_user(ALICE.key)).last_result["checklist"] == {"size": "yes"}
    await replicas[0].command(ALICE, "forget")
    assert await store.get_user(ALICE.key) is None


async def test_the_questions_use_the_wording_an_admin_saved(replicas, store, card, photo):
    [size] = [q for q in await store.list_questions() if q.id == "size"]
    edited = dataclasses.replace(size, text={"en": "Bigger lately?", "ko": "최근 커졌나요?"})
    await store.save_question(edited, size.version, "admin")
    replicas.predict(benign_mole(card))
    _, question = await photo_answer(replicas, ALICE, photo)
    assert "Bigger lately?" in question.text
    _, question = await photo_answer(replicas, BORA, photo)
    assert "최근 커졌나요?" in question.text


async def test_a_retake_after_a_result_asks_nothing(replicas, store, card, photo):
    """A blurry photo gets retake advice and no questions about the result before it."""
    replicas.predict(benign_mole(card))
    await replicas[0].photo(ALICE, photo)
    state = await store.get_user(ALICE.key)
    state.last_result = {**state.last_result, "checklist_group": ""}  # as before the questions
    await store.save_user(state)
    blurred = Image.open(io.BytesIO(photo)).convert("RGB").filter(ImageFilter.GaussianBlur(6))
    [retake] = await replicas[1].photo(ALICE, image_bytes(blurred, "JPEG", quality=92))
    assert not retake.buttons


async def test_an_album_and_a_web_upload_are_followed_by_the_questions_too(
    replicas, store, card, photo
):
    """Several photos of one spot are one result: the questions follow its one answer, and
    answering them changes that result's advice as after a single photo."""
    replicas.predict(possible_melanoma(card))
    ids = [(await replicas[0].album_photo(ALICE, "album-9", photo, f"ref-{n}"))[0] for n in (1, 2)]
    assert await replicas[1].answer_album(ALICE, "album-9", ids[0]) == []
    answer, question = await replicas[1].answer_album(ALICE, "album-9", ids[1])
    assert "2 photos" in answer.text and "can't be ruled out" in answer.text
    assert "1/8" in question.text
    outcome = await answer_all(replicas, ALICE, question, {})
    assert "Your answers make a skin cancer less likely" in outcome.text

    # The web chat's several photos in one upload: the same.
    answer, question = await replicas[0].photos(BORA, [photo, photo])
    assert "사진 2장" in answer.text and "1/8" in question.text
