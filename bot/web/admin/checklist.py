"""The checklist's questions (knowledge/checklist.py): their wording in every language, edited
here; which questions there are and what the answers change are rules in code, not editable."""

from __future__ import annotations

from aiohttp import web

from bot.web.admin.pages import actor, conflict_of, render, store_of, to_int
from knowledge.checklist import QUESTIONS, RULES, check_wording, shipped_questions
from knowledge.models import LANGUAGES, ChecklistQuestion
from knowledge.store import StaleWriteError


async def checklist_page(request: web.Request, status: int = 200, **notice) -> web.Response:
    stored = {q.id: q for q in await store_of(request).list_questions()}
    # A question the store lacks (a store seeded before the checklist) shows the shipped wording.
    questions = {q.id: stored.get(q.id, q) for q in shipped_questions()}
    groups = {group: [questions[q] for q in ids] for group, ids in QUESTIONS.items()}
    return render(request, "checklist", status=status, groups=groups, rules=RULES, **notice)


async def question_save(request: web.Request) -> web.Response:
    form = await request.post()
    question_id = request.match_info["question_id"]
    if not any(question_id in ids for ids in QUESTIONS.values()):
        raise web.HTTPNotFound(text=f"No checklist question {question_id!r}.")
    text = {lang: str(form.get(f"text_{lang}", "")).strip() for lang in LANGUAGES}
    edited = ChecklistQuestion(id=question_id, text=text)
    problems = [p for p in check_wording({question_id: text}) if "missing" not in p]
    if problems:
        return await checklist_page(request, status=422, problems=problems)
    store = store_of(request)
    try:
        saved = await store.save_question(
            edited, to_int(form.get("expected_version")), actor(request)
        )
    except StaleWriteError as stale:
        current = next((q for q in await store.list_questions() if q.id == question_id), None)
        conflict = conflict_of(stale, current, edited)
        return await checklist_page(request, status=409, conflict=conflict)
    return await checklist_page(request, saved=saved.id)
