"""FAQ retrieval and place lookup, measured against the real content files.

The held-out questions below were written as a user would type a follow-up, without copying the
FAQ's phrasings; each names the topic of the entry that should answer it and the label of the
user's last result (None: no result yet). Retrieval must get the top-1 topic right for at least
80 % of them in each language.
"""

from __future__ import annotations

import pytest

from knowledge.content import load_clinics_csv, load_conditions
from knowledge.faq import load_faq
from knowledge.places import find_place
from knowledge.retrieval import MIN_SCORE, FaqIndex, question_language

MIN_ACCURACY = 0.8

# (question, label of the last result, expected topic)
HELD_OUT_EN: list[tuple[str, str | None, str]] = [
    ("can my friends catch this from me?", "acne", "contagious"),
    ("how long till it clears up", "fungal_infection", "duration"),
    ("is it okay to put hydrocortisone on it", "eczema", "steroid"),
    ("do I have to see a dermatologist about this", "psoriasis_lichen_planus", "see-doctor"),
    ("I'm pregnant, which treatments are safe for me", "acne", "pregnancy"),
    ("what caused this?", "eczema", "causes"),
    ("will it leave a mark on my face", "acne", "scarring"),
    ("is it bad to pop them", "acne", "scarring"),
    ("which foods make it worse", "psoriasis_lichen_planus", "diet"),
    ("can I still wear foundation", "acne", "makeup"),
    ("it keeps coming back every few months", "fungal_infection", "recurrence"),
    ("it itches like crazy at night, what helps", "eczema", "itching"),
    ("my son has it too, what should we do", "atopic_dermatitis", "children"),
    ("could this become cancer later", "benign_keratosis", "cancer-risk"),
    ("what's the best cream to get rid of it", "fungal_infection", "treatment"),
    ("do you store the pictures I upload", None, "privacy"),
    ("how accurate are your results", None, "accuracy"),
    ("please delete all my data", None, "delete-data"),
    ("find me a skin doctor near me", None, "find-clinic"),
    ("is going out in the sun good for it", "psoriasis_lichen_planus", "sun"),
    ("will it go away by itself", "viral_infection", "duration"),
    ("is basal cell carcinoma deadly", "basal_cell_carcinoma", "seriousness"),
    ("which soap should I wash with", "atopic_dermatitis", "bathing"),
    ("what does this result mean", "melanoma", "model-result"),
    ("are you a real doctor", None, "diagnosis"),
    ("can I send a picture of my private parts", None, "intimate-areas"),
    ("my photo came out blurry, how do I take a better one", None, "photo-tips"),
    ("do I need an operation", "basal_cell_carcinoma", "treatment"),
    ("is it fine to use while breastfeeding", "eczema", "pregnancy"),
    ("can I have it lasered off", "melanocytic_nevus", "removal"),
    ("how often should I check it myself", "melanocytic_nevus", "monitoring"),
    ("does it run in families, is it genetic", "psoriasis_lichen_planus", "causes"),
    ("can I take an antihistamine for the itch", "atopic_dermatitis", "itching"),
    ("is it an emergency", None, "emergency"),
]

HELD_OUT_KO: list[tuple[str, str | None, str]] = [
    ("이거 다른 사람한테 옮아요?", "acne", "contagious"),
    ("스테로이드 연고 써도 되나요?", "eczema", "steroid"),
    ("병원 가야 하나요?", "fungal_infection", "see-doctor"),
    ("임신 중에 써도 돼요?", "acne", "pregnancy"),
    ("언제쯤 나을까요?", "eczema", "duration"),
    ("흉터 생길까요?", "acne", "scarring"),
    ("너무 가려운데 어떻게 하죠", "eczema", "itching"),
    ("왜 생기는 거예요?", "psoriasis_lichen_planus", "causes"),
    ("먹으면 안 되는 음식 있어요?", "atopic_dermatitis", "diet"),
    ("화장해도 괜찮을까요?", "acne", "makeup"),
    ("나았다가 자꾸 다시 생겨요", "fungal_infection", "recurrence"),
    ("애들한테도 생길 수 있나요?", "psoriasis_lichen_planus", "children"),
    ("나중에 암으로 바뀔 수도 있나요?", "benign_keratosis", "cancer-risk"),
    ("치료 방법 알려주세요", "viral_infection", "treatment"),
    ("샤워는 매일 해도 돼요?", "atopic_dermatitis", "bathing"),
    ("햇빛 쬐어도 괜찮아요?", "psoriasis_lichen_planus", "sun"),
    ("제가 보낸 사진 저장돼요?", None, "privacy"),
    ("결과가 얼마나 정확해요?", None, "accuracy"),
    ("내 기록 전부 지워줘", None, "delete-data"),
    ("가까운 피부과 어디 있어요?", None, "find-clinic"),
    ("수술 받아야 돼요?", "melanoma", "treatment"),
    ("레이저로 없앨 수 있나요?", "melanocytic_nevus", "removal"),
    ("이 결과가 무슨 의미예요?", "melanoma", "model-result"),
    ("약국에서 파는 약 중에 뭐가 좋아요?", "fungal_infection", "treatment"),
    ("수유 중인데 연고 발라도 되나요?", "eczema", "pregnancy"),
    ("발톱 무좀도 가족한테 옮을까요?", "fungal_infection", "contagious"),
    ("점이 커지고 있는데 병원 가봐야 해요?", "melanocytic_nevus", "see-doctor"),
    ("이거 위험한 건가요? 죽을 수도 있어요?", "melanoma", "seriousness"),
    ("수건 같이 써도 되나요?", "fungal_infection", "washing"),
    ("혹시 의사 선생님이세요?", None, "diagnosis"),
    ("뾰루지 손으로 짜면 안 되나요?", "acne", "scarring"),
    ("사진 다시 보내 봐도 될까요?", "other", "retake"),
    ("밤마다 가려워서 못 자요", "atopic_dermatitis", "itching"),
]

OFF_TOPIC = [
    "what's the weather tomorrow",
    "asdfgh",
    "who won the football last night",
    "tell me a joke about cats",
    "비트코인 가격 알려줘",
    "내일 날씨 어때요?",
    "ㅋㅋㅋㅋ",
    "점심 메뉴 추천해줘",
    "",
    "?!",
]


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    return FaqIndex(load_faq(), load_conditions())


@pytest.fixture(scope="module")
def clinics():
    return load_clinics_csv()


def _accuracy(index: FaqIndex, cases, language: str) -> tuple[float, list[str]]:
    misses = []
    for question, label, topic in cases:
        matches = index.search(question, language, label)
        got = f"{matches[0].entry.id} ({matches[0].score:.2f})" if matches else "no match"
        if not matches or matches[0].entry.topic != topic:
            misses.append(f"{question!r} [{label}] expected {topic}, got {got}")
    return 1 - len(misses) / len(cases), misses


@pytest.mark.parametrize(
    ("cases", "language"), [(HELD_OUT_EN, "en"), (HELD_OUT_KO, "ko")], ids=["en", "ko"]
)
def test_held_out_top1_topic_accuracy(index: FaqIndex, cases, language: str) -> None:
    assert len(cases) >= 25
    assert all(question_language(question) == language for question, _, _ in cases)
    accuracy, misses = _accuracy(index, cases, language)
    print(f"{language}: top-1 topic accuracy {accuracy:.2f} ({len(cases)} questions)")
    assert accuracy >= MIN_ACCURACY, f"{language} accuracy {accuracy:.2f}; misses:\n" + "\n".join(
        misses
    )


def test_every_faq_phrasing_finds_its_own_entry(index: FaqIndex) -> None:
    # A sanity floor, not the measure: the FAQ's own phrasings, scoped to their own label.
    misses = []
    for entry in index.entries:
        for language in ("en", "ko"):
            for question in entry.questions[language]:
                matches = index.search(question, language, entry.label)
                if not matches or matches[0].entry.topic != entry.topic:
                    misses.append(question)
    total = sum(len(e.questions["en"]) + len(e.questions["ko"]) for e in index.entries)
    assert len(misses) / total <= 0.05, misses


@pytest.mark.parametrize("question", OFF_TOPIC)
@pytest.mark.parametrize("label", [None, "acne"])
def test_off_topic_questions_match_nothing(index: FaqIndex, question: str, label) -> None:
    matches = index.search(question, question_language(question), label)
    assert matches == [], [(m.entry.id, m.score) for m in matches]


@pytest.mark.parametrize(
    ("question", "language"),
    [("is it contagious?", "en"), ("다른 사람한테 옮나요?", "ko")],
)
@pytest.mark.parametrize("label", ["acne", "fungal_infection", "viral_infection"])
def test_the_last_result_scopes_the_answer(index: FaqIndex, question, language, label) -> None:
    matches = index.search(question, language, label)
    assert matches[0].entry.id == f"{label}-contagious"


@pytest.mark.parametrize(
    ("question", "language", "expected"),
    [
        ("is melanoma contagious?", "en", "melanoma-contagious"),
        ("can I use steroid cream on psoriasis?", "en", "psoriasis_lichen_planus-steroid"),
        ("흑색종도 옮나요?", "ko", "melanoma-contagious"),
        ("무좀에 스테로이드 발라도 돼요?", "ko", "fungal_infection-steroid"),
    ],
)
def test_a_named_condition_wins_over_the_last_result(index, question, language, expected) -> None:
    matches = index.search(question, language, "acne")
    assert matches[0].entry.id == expected


def test_without_a_result_a_condition_question_still_matches(index: FaqIndex) -> None:
    matches = index.search("is it contagious?", "en", None)
    assert matches and all(match.entry.topic == "contagious" for match in matches)


def test_without_a_result_general_entries_come_first(index: FaqIndex) -> None:
    matches = index.search("how accurate is it", "en", None)
    assert matches[0].entry.id == "general-accuracy"


def test_scores_are_normalised_and_sorted(index: FaqIndex) -> None:
    matches = index.search("Is acne contagious?", "en", "acne", limit=5)
    assert 1 <= len(matches) <= 5
    scores = [match.score for match in matches]
    assert scores == sorted(scores, reverse=True)
    assert all(MIN_SCORE <= score <= 1 for score in scores)
    assert scores[0] > 0.6  # its own phrasing, word for word


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("is my pimple contagious", ["acne"]),
        ("could this be a mole or melanoma?", ["melanocytic_nevus", "melanoma"]),
        ("I have athlete's foot", ["fungal_infection"]),
        ("are warts contagious", ["viral_infection"]),
        ("is it atopic eczema?", ["atopic_dermatitis"]),
        ("is it skin cancer", ["basal_cell_carcinoma", "melanoma"]),
        ("is it contagious?", []),
        ("여드름 옮아요?", ["acne"]),
        ("점이 커졌어요", ["melanocytic_nevus"]),
        ("갈색 반점이 점점 커져요", []),
        ("발에 무좀이 생겼어요", ["fungal_infection"]),
        ("손에 사마귀가 났어요", ["viral_infection"]),
        ("피부암일까요?", ["basal_cell_carcinoma", "melanoma"]),
        ("아토피 피부염인가요 습진인가요", ["atopic_dermatitis", "eczema"]),
    ],
)
def test_mentioned_labels(index: FaqIndex, question: str, expected: list[str]) -> None:
    assert index.mentioned_labels(question) == expected


def test_question_language() -> None:
    assert question_language("여드름 옮아요?") == "ko"
    assert question_language("is AI 정확해요") == "ko"
    assert question_language("is it contagious?") == "en"


@pytest.mark.parametrize(
    ("text", "district", "city"),
    [
        ("Gangnam", "Gangnam-gu", "Seoul"),
        ("gangnam-gu", "Gangnam-gu", "Seoul"),
        ("clinics near Haeundae please", "Haeundae-gu", "Busan"),
        ("Bundang", "Bundang-gu", "Seongnam"),
        ("강남구", "Gangnam-gu", "Seoul"),
        ("강남", "Gangnam-gu", "Seoul"),
        ("부산 해운대", "Haeundae-gu", "Busan"),
        ("부산해운대구 근처", "Haeundae-gu", "Busan"),
        ("서초구에 있는 피부과", "Seocho-gu", "Seoul"),
        ("대구 중구", "Jung-gu", "Daegu"),
        ("Seo-gu, Daejeon", "Seo-gu", "Daejeon"),
    ],
)
def test_find_place_district(clinics, text: str, district: str, city: str) -> None:
    place = find_place(text, clinics)
    in_district = [c for c in clinics if c.district == district and c.city == city]
    assert place is not None
    assert place.lat == pytest.approx(sum(c.lat for c in in_district) / len(in_district))
    assert place.lon == pytest.approx(sum(c.lon for c in in_district) / len(in_district))


@pytest.mark.parametrize(
    ("text", "city"),
    [
        ("Seoul", "Seoul"),
        ("서울", "Seoul"),
        ("부산", "Busan"),
        ("suwon", "Suwon"),
        ("in Daegu", "Daegu"),
    ],
)
def test_find_place_city(clinics, text: str, city: str) -> None:
    place = find_place(text, clinics)
    in_city = [c for c in clinics if c.city == city]
    assert place is not None
    assert place.lat == pytest.approx(sum(c.lat for c in in_city) / len(in_city))
    assert place.lon == pytest.approx(sum(c.lon for c in in_city) / len(in_city))


@pytest.mark.parametrize(
    "text",
    ["", "Tokyo", "Jeju", "제주", "hello there", "남구", "Seo-gu", "asdfgh", "is it contagious?"],
)
def test_find_place_unknown_or_ambiguous(clinics, text: str) -> None:
    # "남구" and "Seo-gu" exist in several cities: without the city there is no one answer.
    assert find_place(text, clinics) is None


def test_find_place_names_the_place(clinics) -> None:
    assert find_place("gangnam", clinics).name == "Gangnam-gu, Seoul"
    assert find_place("강남구", clinics).name == "서울 강남구"
    assert find_place("서울", clinics).name == "서울"
