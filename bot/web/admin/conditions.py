"""Editing a condition's care content: the form, its validation, a preview of the replies a
user would get in both languages, and the versioned save."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot.conversation.views import condition_view
from bot.texts import default_texts, message_problems
from bot.web.admin.pages import actor, conflict_of, render, store_of, to_int
from knowledge.content import CONTENT_LABELS, validate_condition
from knowledge.models import LANGUAGES, Condition, Ingredient, Source, Triage
from knowledge.store import StaleWriteError

log = logging.getLogger(__name__)


async def conditions(request: web.Request) -> web.Response:
    items = sorted(await store_of(request).list_conditions(), key=lambda c: c.label)
    return render(request, "conditions", conditions=items)


async def condition_page(request: web.Request) -> web.Response:
    label = request.match_info["label"]
    condition = await store_of(request).get_condition(label)
    if condition is None:
        raise web.HTTPNotFound(text=f"No condition {label!r}.")
    return _condition_form(request, condition, condition.version)


def _condition_form(
    request: web.Request,
    condition: Condition,
    expected_version: int,
    problems: list[str] = (),
    preview: dict | None = None,
    conflict: dict | None = None,
    saved: bool = False,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "condition",
        status=status,
        condition=condition,
        expected_version=expected_version,
        triages=[str(t) for t in Triage],
        problems=list(problems),
        preview=preview,
        conflict=conflict,
        saved=saved,
    )


def condition_from_form(label: str, form: Any) -> tuple[Condition, list[str]]:
    """The condition an admin typed, and what is wrong with the form's own syntax."""
    problems: list[str] = []

    def text(name: str) -> dict[str, str]:
        return {lang: str(form.get(f"{name}_{lang}", "")).strip() for lang in LANGUAGES}

    def lines(name: str) -> dict[str, list[str]]:
        return {
            lang: [
                ln.strip() for ln in str(form.get(f"{name}_{lang}", "")).splitlines() if ln.strip()
            ]
            for lang in LANGUAGES
        }

    ingredients = []
    index = 0
    while f"ingredient{index}_name_en" in form:
        fields = {
            part: {
                lang: str(form.get(f"ingredient{index}_{part}_{lang}", "")).strip()
                for lang in LANGUAGES
            }
            for part in ("name", "use", "cautions")
        }
        if any(value for values in fields.values() for value in values.values()):
            ingredients.append(Ingredient(**fields))
        index += 1

    sources = []
    for number, line in enumerate(str(form.get("sources", "")).splitlines(), 1):
        if not line.strip():
            continue
        name, bar, url = line.rpartition("|")
        if not bar or not url.strip().startswith(("https://", "http://")) or not name.strip():
            problems.append(f"sources line {number}: write it as 'Name | https://...'")
            continue
        sources.append(Source(name=name.strip(), url=url.strip()))

    triage_value = str(form.get("triage", ""))
    try:
        triage = Triage(triage_value)
    except ValueError:
        problems.append(f"triage: unknown value {triage_value!r}")
        triage = Triage.SEE_DOCTOR
    condition = Condition(
        label=label,
        names=text("names"),
        summary=text("summary"),
        triage=triage,
        care_steps=lines("care_steps"),
        ingredients=ingredients,
        red_flags=lines("red_flags"),
        see_doctor_when=lines("see_doctor_when"),
        contagious=text("contagious"),
        improvement_time=text("improvement_time"),
        sources=sources,
    )
    return condition, problems


# The cancer the tier previews name (the care content's own melanoma text is not needed to
# show the wording around it).
MELANOMA_NAMES = {"en": "Melanoma", "ko": "흑색종"}
WARNING_SIGN_EXAMPLE = {
    "en": "(the cancer's own warning signs from its care content)",
    "ko": "(해당 피부암 관리 정보의 주의 징후)",
}


def render_preview(condition: Condition) -> tuple[dict[str, dict[str, str]], list[str]]:
    """What a user would see after a photo of this condition, in both languages: the result
    (this condition at 80 %, two others below) followed by its "More", and the care tips.
    Template errors are problems."""
    texts = default_texts()

    def answer(lang: str, **context) -> str:
        # The first message is short; the care content an editor changes is mostly in "More".
        return "\n\n".join(
            texts.render(template, lang, **context) for template in ("result", "result_more")
        )

    level = str(condition.triage)
    others = [label for label in CONTENT_LABELS if label not in (condition.label, "other")][:2]
    rendered: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for lang in LANGUAGES:
        ranked = [
            {
                "label": condition.label,
                "name": condition.names.get(lang) or condition.label,
                "percent": "80%",
                "likelihood": texts.word("very_likely", lang),
                "triage": level,
            }
        ] + [
            {
                "label": other,
                "name": other.replace("_", " "),
                "percent": percent,
                "likelihood": "",
                "triage": "see_doctor",
            }
            for other, percent in zip(others, ("9%", "4%"), strict=True)
        ]
        context = condition_view(condition, lang)
        try:
            rendered[lang] = {
                "result": answer(
                    lang,
                    level=level,
                    urgent=level == "urgent",
                    ranked=ranked,
                    condition=context,
                ),
                "care": texts.render(
                    "care", lang, level=level, urgent=level == "urgent", condition=context
                ),
            }
            # The referral tiers, so an editor sees what each says beside this condition.
            for tier, share in (("possible", "6%"), ("likely", "30%")):
                cancer = {
                    "label": "melanoma",
                    "name": MELANOMA_NAMES[lang],
                    "percent": share,
                    "tier": tier,
                    "warning_signs": [WARNING_SIGN_EXAMPLE[lang]],
                }
                rendered[lang][f"result_{tier}"] = answer(
                    lang,
                    level="urgent" if tier == "likely" else level,
                    urgent=tier == "likely" or level == "urgent",
                    ranked=ranked,
                    condition=context,
                    cancer=cancer,
                    emergency_signs=[],
                )
        except Exception as error:  # noqa: BLE001 - any template failure blocks the save
            problems.append(f"the {lang} reply templates do not render: {error}")
            continue
        # What the bot would send, message by message: a reply Telegram would refuse is refused
        # here, while the admin is still looking at it, not when a user waits for it.
        for name, reply in rendered[lang].items():
            problems += [f"the {lang} {name} reply: {p}" for p in message_problems(reply)]
    return rendered, problems


async def save_condition(request: web.Request) -> web.Response:
    label = request.match_info["label"]
    store = store_of(request)
    stored = await store.get_condition(label)
    if stored is None:
        raise web.HTTPNotFound(text=f"No condition {label!r}.")
    form = await request.post()
    condition, problems = condition_from_form(label, form)
    problems += validate_condition(condition)
    preview, template_problems = render_preview(condition)
    problems += template_problems
    expected = to_int(form.get("expected_version"))
    if problems or form.get("action") == "preview":
        return _condition_form(
            request, condition, expected, problems, preview, status=422 if problems else 200
        )
    try:
        saved = await store.save_condition(condition, expected, actor(request))
    except StaleWriteError as stale:
        current = await store.get_condition(label)
        return _condition_form(
            request,
            condition,
            stale.actual,  # saving again now overwrites theirs, after this page showed it
            preview=preview,
            conflict=conflict_of(stale, current, condition),
            status=409,
        )
    log.info("condition %s saved as version %s", label, saved.version)
    return _condition_form(request, saved, saved.version, preview=preview, saved=True)
