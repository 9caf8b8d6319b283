"""Places typed anywhere in the conversation: which messages ask for clinics, and where.

Against the real clinic list and regions file. The false positives matter as much as the hits:
a follow-up question that happens to hold a word that is also a place ("수성", water-based;
"연수", training; "대구", cod) must still reach the FAQ.
"""

from __future__ import annotations

import pytest

from knowledge.content import load_clinics_csv
from knowledge.places import Gazetteer, load_regions


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    return Gazetteer(load_clinics_csv(), load_regions())


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Busan", "Busan"),
        ("busan please", "Busan"),
        ("부산", "부산"),
        ("부산이요", "부산"),
        ("find a dermatologist in Busan", "Busan"),
        ("where is a dermatologist near Gangnam", "Gangnam-gu, Seoul"),
        ("any good clinics in busan?", "Busan"),
        ("dermatologists in gangnam-gu", "Gangnam-gu, Seoul"),
        ("Haeundae dermatologist", "Haeundae-gu, Busan"),
        ("강남역 근처 피부과", "서울 강남구"),
        ("부산에 있는 피부과 알려줘", "부산"),
        ("나 부산 사는데 피부과 추천해줘", "부산"),
        ("해운대 피부과", "부산 해운대구"),
    ],
)
def test_a_known_place_asks_for_its_clinics(gazetteer, text: str, name: str) -> None:
    request = gazetteer.request(text)
    assert request is not None and request.place is not None
    assert request.place.name == name
    assert request.unknown == ""


@pytest.mark.parametrize(
    ("text", "unknown", "nearest"),
    [
        ("Jeju", "Jeju", "Gwangju"),
        ("제주도", "제주", "광주"),
        ("제주도 피부과 알려줘", "제주", "광주"),
        ("find a dermatologist in Ulsan", "Ulsan", "Busan"),
        ("Chuncheon", "Chuncheon", "Seoul"),
    ],
)
def test_a_region_without_clinics_names_the_nearest_place_with_some(
    gazetteer, text: str, unknown: str, nearest: str
) -> None:
    request = gazetteer.request(text)
    assert request is not None and request.place is None
    assert request.unknown == unknown
    assert request.nearest is not None and request.nearest.name == nearest
    assert 20 < request.nearest_km < 400


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("find a dermatologist in Xyz", "Xyz"),
        ("is there a clinic near Springfield?", "Springfield"),
        ("울릉도 근처 피부과 있어요?", "울릉도"),
    ],
)
def test_an_unknown_place_is_named_as_typed(gazetteer, text: str, unknown: str) -> None:
    request = gazetteer.request(text)
    assert request is not None and request.place is None and request.nearest is None
    assert request.unknown == unknown


@pytest.mark.parametrize(
    "text",
    [
        "is it contagious?",
        "How do I find a dermatologist?",
        "피부과 어디로 가야 해요?",
        "clinic near me",
        "가까운 피부과 어디 있어요?",
        "집 근처 피부과",
        "should I see a doctor in person?",
        "I got acne after a trip to Busan, should I see a doctor?",
        "수성 연고 써도 되나요?",  # 수성: water-based (also Suseong-gu, Daegu)
        "연수 끝나고 병원 가야 하나요?",  # 연수: training (also Yeonsu-gu, Incheon)
        "대구 먹어도 되나요?",  # 대구: cod (also Daegu)
        "수정 후에 점이 변했어요",  # 수정: fertilisation (also Sujeong-gu)
        "제주도에 여행 갔다가 생겼는데 병원 가야 하나요?",
        "Tokyo",
    ],
)
def test_questions_that_hold_a_place_word_are_not_searches(gazetteer, text: str) -> None:
    assert gazetteer.request(text) is None


def test_when_asked_for_a_location_any_place_named_counts(gazetteer) -> None:
    text = "I'm in Busan but my skin is itchy"
    assert gazetteer.request(text) is None
    request = gazetteer.request(text, asked=True)
    assert request is not None and request.place is not None and request.place.name == "Busan"
