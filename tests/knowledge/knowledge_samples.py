"""Builders for small knowledge documents, shared by the knowledge tests and their fixtures.

A module of its own rather than conftest.py: test modules import it by name (`from
knowledge_samples import make_clinic`), and `conftest` already names tests/conftest.py.
"""

from __future__ import annotations

from knowledge.models import Clinic, Condition, FaqEntry, Ingredient, Source, Triage


def make_condition(label: str = "acne", triage: Triage = Triage.SELF_CARE, **changes) -> Condition:
    values = dict(
        label=label,
        names={"en": label.replace("_", " ").title(), "ko": f"{label} (한국어)"},
        summary={"en": f"About {label}.", "ko": f"{label}에 대하여."},
        triage=triage,
        care_steps={"en": ["Wash gently twice a day."], "ko": ["하루 두 번 부드럽게 씻으세요."]},
        ingredients=[
            Ingredient(
                name={"en": "benzoyl peroxide", "ko": "과산화벤조일"},
                use={"en": "kills bacteria", "ko": "세균을 줄입니다"},
                cautions={"en": "may bleach fabric", "ko": "옷감이 탈색될 수 있습니다"},
            )
        ],
        red_flags={"en": ["Painful deep lumps."], "ko": ["아픈 깊은 멍울."]},
        see_doctor_when={"en": ["No better after 8 weeks."], "ko": ["8주 뒤에도 그대로일 때."]},
        contagious={"en": "No.", "ko": "아니요."},
        improvement_time={"en": "6-8 weeks", "ko": "6-8주"},
        sources=[Source(name="NHS", url="https://www.nhs.uk/conditions/acne/")],
    )
    values.update(changes)
    return Condition(**values)


def make_faq(entry_id: str, label: str | None = "acne", topic: str = "contagious", **changes):
    values = dict(
        id=entry_id,
        label=label,
        topic=topic,
        questions={"en": [f"question about {entry_id}?"], "ko": [f"{entry_id} 질문?"]},
        answer={"en": f"Answer for {entry_id}.", "ko": f"{entry_id} 답변."},
    )
    values.update(changes)
    return FaqEntry(**values)


def make_clinic(
    clinic_id: str, lat: float, lon: float, treats=("acne",), city="Seoul", **changes
) -> Clinic:
    values = dict(
        id=clinic_id,
        name={"en": f"Clinic {clinic_id}", "ko": f"{clinic_id} 피부과"},
        address={"en": f"1 Street, {city}", "ko": f"{city} 1번지"},
        city=city,
        district="Jung-gu",
        lat=lat,
        lon=lon,
        phone="02-000-0000",
        hours={"en": "Mon-Fri 9-18", "ko": "월-금 9-18시"},
        languages=["ko", "en"],
        treats=list(treats),
    )
    values.update(changes)
    return Clinic(**values)


SEOUL_CITY_HALL = (37.5663, 126.9779)
BUSAN_STATION = (35.1152, 129.0422)
