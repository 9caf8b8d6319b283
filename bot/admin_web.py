"""The admin panel at /admin: care content, FAQ and clinics, edited without code or restarts.

Plain HTML forms (templates/admin/), no JavaScript needed. Every change goes through the store's
versioned saves: the form carries the version it was loaded from, a save on top of someone
else's newer save is refused with their name and a side-by-side of both versions, and every
version can be rolled back (knowledge/versions.py). The conversation reads the store on each
answer, so a saved change is what the next user sees.

Security: a password (its scrypt hash is SKINCARE_ADMIN_PASSWORD_HASH), a signed HttpOnly
SameSite=Strict session cookie, a CSRF token in every form, failed sign-ins rate-limited per
address; `require_admin` refuses every /admin route without a valid session.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aiohttp import web

from bot.admin_auth import AdminSession, LoginLimiter, SessionSigner, verify_password
from bot.conversation.views import condition_view
from bot.texts import LANGUAGES, default_texts
from knowledge.cli import clinic_row
from knowledge.content import (
    CLINIC_COLUMNS,
    MODEL_LABELS,
    ContentError,
    clinic_from_row,
    parse_clinics_csv,
    validate_condition,
)
from knowledge.faq import validate_faq
from knowledge.models import (
    Condition,
    FaqEntry,
    Ingredient,
    Source,
    Triage,
    to_dict,
)
from knowledge.store import KnowledgeStore, StaleWriteError
from knowledge.store.rules import content_of
from knowledge.versions import diff, history, rollback

log = logging.getLogger(__name__)

SESSION_COOKIE = "skincare_admin"
LOGIN_COOKIE = "skincare_admin_login"  # double-submit CSRF token for the sign-in form
KINDS = ("condition", "faq", "clinic")
SIGNER = web.AppKey("admin_signer", SessionSigner)
LIMITER = web.AppKey("admin_limiter", LoginLimiter)
SESSION = web.RequestKey("admin_session", AdminSession)  # the signed-in admin


# ---- auth ---------------------------------------------------------------------------------


@web.middleware
async def require_admin(request: web.Request, handler):
    """Every /admin route but the sign-in page needs a session; every POST a CSRF token."""
    if not request.path.startswith("/admin"):
        return await handler(request)
    from bot.web import ASSISTANT

    if not request.app[ASSISTANT].settings.admin_password_hash:
        return web.Response(
            status=404, text="The admin panel is closed: set SKINCARE_ADMIN_PASSWORD_HASH."
        )
    if request.path in ("/admin/login", "/admin/login/"):
        return await handler(request)
    session = request.app[SIGNER].read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"/admin/login?next={request.path}")
        raise web.HTTPForbidden(text="Sign in first.")
    if request.method == "POST":
        form = await request.post()
        if not request.app[SIGNER].check_csrf(session, form.get("csrf")):
            raise web.HTTPForbidden(text="Invalid or missing CSRF token: reload the page.")
    request[SESSION] = session
    if request.method != "POST":
        return await handler(request)
    try:
        return await handler(request)
    finally:
        # Any admin change (a save, a delete, a rollback, an import) shows in this replica's
        # next answer; the conversation otherwise reuses content read in the last second.
        knowledge = request.app[ASSISTANT].knowledge
        if knowledge is not None:
            knowledge.forget()


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


async def login_page(request: web.Request) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or _new_token()
    response = _render(request, "login", token=token, error=None, next=_next(request))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/admin")
    return response


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or form.get("token") != cookie:
        raise web.HTTPForbidden(text="Invalid sign-in form: reload the page.")
    limiter = request.app[LIMITER]
    client = _client(request)
    if limiter.blocked(client):
        response = _render(
            request, "login", token=cookie, error="Too many attempts. Wait 10 minutes.", next="/"
        )
        response.set_status(429)
        return response
    from bot.web import ASSISTANT

    name = str(form.get("name", "")).strip()[:60]
    password = str(form.get("password", ""))
    if not name or not verify_password(
        password, request.app[ASSISTANT].settings.admin_password_hash
    ):
        limiter.failed(client)
        log.warning("admin sign-in failed")
        response = _render(
            request, "login", token=cookie, error="Wrong name or password.", next=_next(request)
        )
        response.set_status(401)
        return response
    limiter.succeeded(client)
    value, _ = request.app[SIGNER].issue(name)
    log.info("admin signed in")
    response = web.HTTPSeeOther(_next(request, form.get("next")))
    response.set_cookie(
        SESSION_COOKIE,
        value,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/admin",
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(SESSION_COOKIE, path="/admin")
    raise response


def _next(request: web.Request, value: Any = None) -> str:
    target = str(value or request.query.get("next") or "/admin/conditions")
    # Only local admin pages: never an open redirect.
    return target if target.startswith("/admin/") and "//" not in target else "/admin/conditions"


def _new_token() -> str:
    import secrets

    return secrets.token_urlsafe(24)


# ---- rendering ---------------------------------------------------------------------------


def _render(request: web.Request, page: str, status: int = 200, **context: Any) -> web.Response:
    from bot.web import TEMPLATES

    session: AdminSession | None = request.get(SESSION)
    csrf = request.app[SIGNER].csrf_token(session) if session else ""
    html = (
        request.app[TEMPLATES]
        .get_template(f"admin/{page}.html.j2")
        .render(admin=session, csrf=csrf, languages=LANGUAGES, **context)
    )
    return web.Response(text=html, content_type="text/html", status=status)


def _store(request: web.Request) -> KnowledgeStore:
    from bot.web import ASSISTANT

    return request.app[ASSISTANT].store


# ---- conditions --------------------------------------------------------------------------


async def conditions(request: web.Request) -> web.Response:
    items = sorted(await _store(request).list_conditions(), key=lambda c: c.label)
    return _render(request, "conditions", conditions=items)


async def condition_page(request: web.Request) -> web.Response:
    label = request.match_info["label"]
    condition = await _store(request).get_condition(label)
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
    return _render(
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


def render_preview(condition: Condition) -> tuple[dict[str, dict[str, str]], list[str]]:
    """What a user would see after a photo of this condition, in both languages: the result
    (this condition at 80 %, two others below) and the care tips. Template errors are problems."""
    texts = default_texts()
    level = str(condition.triage)
    others = [label for label in MODEL_LABELS if label not in (condition.label, "other")][:2]
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
                "result": texts.render(
                    "result",
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
        except Exception as error:  # noqa: BLE001 - any template failure blocks the save
            problems.append(f"the {lang} reply templates do not render: {error}")
    return rendered, problems


async def save_condition(request: web.Request) -> web.Response:
    label = request.match_info["label"]
    store = _store(request)
    stored = await store.get_condition(label)
    if stored is None:
        raise web.HTTPNotFound(text=f"No condition {label!r}.")
    form = await request.post()
    condition, problems = condition_from_form(label, form)
    problems += validate_condition(condition)
    preview, template_problems = render_preview(condition)
    problems += template_problems
    expected = _int(form.get("expected_version"))
    if problems or form.get("action") == "preview":
        return _condition_form(
            request, condition, expected, problems, preview, status=422 if problems else 200
        )
    try:
        saved = await store.save_condition(condition, expected, _actor(request))
    except StaleWriteError as stale:
        current = await store.get_condition(label)
        return _condition_form(
            request,
            condition,
            stale.actual,  # saving again now overwrites theirs, after this page showed it
            preview=preview,
            conflict=_conflict(stale, current, condition),
            status=409,
        )
    log.info("condition %s saved as version %s", label, saved.version)
    return _condition_form(request, saved, saved.version, preview=preview, saved=True)


def _conflict(stale: StaleWriteError, current: Any, mine: Any) -> dict:
    return {
        "changed_by": stale.changed_by or "someone",
        "version": stale.actual,
        "changes": diff(content_of(current) if current else None, content_of(mine)),
    }


def _actor(request: web.Request) -> str:
    return f"admin:{request[SESSION].name}"


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


# ---- history and rollback ------------------------------------------------------------------


async def history_page(request: web.Request) -> web.Response:
    kind, key = request.match_info["kind"], request.match_info["key"]
    if kind not in KINDS:
        raise web.HTTPNotFound()
    entries = await history(_store(request), kind, key)
    current = entries[0].version if entries and entries[0].after is not None else 0
    if entries and entries[0].after is None:
        current = entries[0].version  # deleted: restoring creates it again
    rows = [{"entry": entry, "changes": diff(entry.before, entry.after)} for entry in entries]
    return _render(
        request,
        "history",
        kind=kind,
        key=key,
        rows=rows,
        current=current,
        message=request.query.get("message"),
    )


async def rollback_to(request: web.Request) -> web.Response:
    kind, key = request.match_info["kind"], request.match_info["key"]
    if kind not in KINDS:
        raise web.HTTPNotFound()
    form = await request.post()
    try:
        await rollback(
            _store(request),
            kind,
            key,
            _int(form.get("to_version")),
            _int(form.get("expected_version")),
            _actor(request),
        )
        message = f"Rolled back to version {_int(form.get('to_version'))}."
    except StaleWriteError as stale:
        message = f"Not rolled back: {stale}. Look at the newest version first."
    except (ValueError, LookupError) as error:
        message = f"Not rolled back: {error}"
    raise web.HTTPSeeOther(
        request.app.router["admin_history"].url_for(kind=kind, key=key).with_query(message=message)
    )


# ---- FAQ -------------------------------------------------------------------------------------


def _matches(query: str, document: Any) -> bool:
    return not query or query.lower() in str(to_dict(document)).lower()


async def faq_list(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    entries = [e for e in await _store(request).list_faq() if _matches(query, e)]
    entries.sort(key=lambda e: (e.label or "", e.id))
    return _render(request, "faq_list", entries=entries, q=query)


def faq_from_form(form: Any, entry_id: str) -> FaqEntry:
    label = str(form.get("label", "")).strip()
    return FaqEntry(
        id=entry_id,
        label=label or None,
        topic=str(form.get("topic", "")).strip(),
        questions={
            lang: [
                q.strip() for q in str(form.get(f"questions_{lang}", "")).splitlines() if q.strip()
            ]
            for lang in LANGUAGES
        },
        answer={lang: str(form.get(f"answer_{lang}", "")).strip() for lang in LANGUAGES},
    )


def _edit_page(
    request: web.Request,
    page: str,
    expected_version: int,
    problems=(),
    conflict: dict | None = None,
    saved: bool = False,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """An edit form (FAQ entry or clinic) with its problems, conflict or "saved" notice."""
    return _render(
        request,
        page,
        status=status,
        expected_version=expected_version,
        problems=list(problems),
        conflict=conflict,
        saved=saved,
        is_new=expected_version == 0 and not saved,
        **context,
    )


def _faq_form(request, entry, expected_version, *args, **kwargs):
    return _edit_page(
        request, "faq_edit", expected_version, *args, entry=entry, labels=MODEL_LABELS, **kwargs
    )


async def faq_new(request: web.Request) -> web.Response:
    empty = FaqEntry(id="", label=None, topic="", questions={}, answer={})
    return _faq_form(request, empty, 0)


async def faq_page(request: web.Request) -> web.Response:
    entry = await _find_faq(request, request.match_info["entry_id"])
    return _faq_form(request, entry, entry.version)


async def _find_faq(request: web.Request, entry_id: str) -> FaqEntry:
    for entry in await _store(request).list_faq():
        if entry.id == entry_id:
            return entry
    raise web.HTTPNotFound(text=f"No FAQ entry {entry_id!r}.")


async def faq_save(request: web.Request) -> web.Response:
    form = await request.post()
    entry_id = request.match_info.get("entry_id") or str(form.get("id", "")).strip()
    entry = faq_from_form(form, entry_id)
    expected = _int(form.get("expected_version"))
    problems = validate_faq([entry], MODEL_LABELS)
    if not entry.topic:
        problems.append("topic: empty")
    if problems:
        return _faq_form(request, entry, expected, problems, status=422)
    store = _store(request)
    try:
        saved = await store.save_faq(entry, expected, _actor(request))
    except StaleWriteError as stale:
        current = next((e for e in await store.list_faq() if e.id == entry_id), None)
        conflict = _conflict(stale, current, entry)
        if expected == 0:
            conflict["exists"] = True
        return _faq_form(request, entry, stale.actual, conflict=conflict, status=409)
    return _faq_form(request, saved, saved.version, saved=True)


async def faq_delete(request: web.Request) -> web.Response:
    form = await request.post()
    entry_id = request.match_info["entry_id"]
    try:
        await _store(request).delete_faq(
            entry_id, _int(form.get("expected_version")), _actor(request)
        )
    except StaleWriteError as stale:
        raise web.HTTPConflict(text=f"Not deleted: {stale}.") from stale
    except LookupError as error:
        raise web.HTTPNotFound(text=str(error)) from error
    raise web.HTTPSeeOther("/admin/faq")


# ---- clinics --------------------------------------------------------------------------------


async def clinic_list(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    clinics = [c for c in await _store(request).list_clinics() if _matches(query, c)]
    clinics.sort(key=lambda c: c.id)
    return _render(request, "clinics", clinics=clinics, q=query)


def _clinic_form(request, row, expected_version, *args, **kwargs):
    return _edit_page(
        request, "clinic_edit", expected_version, *args, row=row, columns=CLINIC_COLUMNS, **kwargs
    )


async def clinic_new(request: web.Request) -> web.Response:
    return _clinic_form(request, {column: "" for column in CLINIC_COLUMNS} | {"sample": "false"}, 0)


async def clinic_page(request: web.Request) -> web.Response:
    clinic = await _store(request).get_clinic(request.match_info["clinic_id"])
    if clinic is None:
        raise web.HTTPNotFound(text="No such clinic.")
    return _clinic_form(request, clinic_row(clinic), clinic.version)


async def clinic_save(request: web.Request) -> web.Response:
    form = await request.post()
    row = {column: str(form.get(column, "")).strip() for column in CLINIC_COLUMNS}
    if "clinic_id" in request.match_info:
        row["id"] = request.match_info["clinic_id"]
    expected = _int(form.get("expected_version"))
    problems: list[str] = []
    clinic = clinic_from_row(row, problems)
    if clinic is None:
        return _clinic_form(request, row, expected, problems, status=422)
    store = _store(request)
    try:
        saved = await store.save_clinic(
            dataclasses.replace(clinic, updated_by=""), expected, _actor(request)
        )
    except StaleWriteError as stale:
        current = await store.get_clinic(row["id"])
        return _clinic_form(
            request, row, stale.actual, conflict=_conflict(stale, current, clinic), status=409
        )
    return _clinic_form(request, clinic_row(saved), saved.version, saved=True)


async def clinic_delete(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        await _store(request).delete_clinic(
            request.match_info["clinic_id"], _int(form.get("expected_version")), _actor(request)
        )
    except StaleWriteError as stale:
        raise web.HTTPConflict(text=f"Not deleted: {stale}.") from stale
    except LookupError as error:
        raise web.HTTPNotFound(text=str(error)) from error
    raise web.HTTPSeeOther("/admin/clinics")


async def clinic_import_page(request: web.Request) -> web.Response:
    return _render(request, "clinic_import", report=None, csv_text="", problems=[], done=None)


async def clinic_import(request: web.Request) -> web.Response:
    """Upload a CSV: first a dry run (what would be created, updated, unchanged, or every bad
    line); the import itself only when the admin confirms the same text."""
    form = await request.post()
    upload = form.get("file")
    if upload is not None and hasattr(upload, "file"):
        csv_text = upload.file.read().decode("utf-8-sig", errors="replace")
    else:
        csv_text = str(form.get("csv_text", ""))
    store = _store(request)
    try:
        clinics = parse_clinics_csv(csv_text, "the uploaded CSV")
    except ContentError as error:
        return _render(
            request,
            "clinic_import",
            status=422,
            report=None,
            csv_text=csv_text,
            problems=error.problems,
            done=None,
        )
    existing = {clinic.id: clinic for clinic in await store.list_clinics()}
    report = {"create": [], "update": [], "unchanged": []}
    for clinic in clinics:
        old = existing.get(clinic.id)
        if old is None:
            report["create"].append(clinic.id)
        elif content_of(old) == content_of(clinic):
            report["unchanged"].append(clinic.id)
        else:
            report["update"].append(clinic.id)
    if form.get("confirm") != "yes":
        return _render(
            request, "clinic_import", report=report, csv_text=csv_text, problems=[], done=None
        )
    try:
        result = await store.import_clinics(clinics, _actor(request))
    except ValueError as error:
        return _render(
            request,
            "clinic_import",
            status=422,
            report=None,
            csv_text=csv_text,
            problems=[str(error)],
            done=None,
        )
    return _render(request, "clinic_import", report=None, csv_text="", problems=[], done=result)


# ---- wiring -------------------------------------------------------------------------------


def add_admin_routes(app: web.Application, password_hash: str | None, secret: str | None) -> None:
    app[SIGNER] = SessionSigner(secret or password_hash or "closed")
    app[LIMITER] = LoginLimiter()
    app.middlewares.append(require_admin)
    r = app.router
    r.add_get("/admin", admin_home)
    r.add_get("/admin/login", login_page)
    r.add_post("/admin/login", login)
    r.add_post("/admin/logout", logout)
    r.add_get("/admin/conditions", conditions)
    r.add_get("/admin/conditions/{label}", condition_page)
    r.add_post("/admin/conditions/{label}", save_condition)
    r.add_get("/admin/history/{kind}/{key}", history_page, name="admin_history")
    r.add_post("/admin/history/{kind}/{key}/rollback", rollback_to)
    r.add_get("/admin/faq", faq_list)
    r.add_get("/admin/faq/new", faq_new)
    r.add_post("/admin/faq/new", faq_save)
    r.add_get("/admin/faq/{entry_id}", faq_page)
    r.add_post("/admin/faq/{entry_id}", faq_save)
    r.add_post("/admin/faq/{entry_id}/delete", faq_delete)
    r.add_get("/admin/clinics", clinic_list)
    r.add_get("/admin/clinics/new", clinic_new)
    r.add_post("/admin/clinics/new", clinic_save)
    r.add_get("/admin/clinics/import", clinic_import_page)
    r.add_post("/admin/clinics/import", clinic_import)
    r.add_get("/admin/clinics/{clinic_id}", clinic_page)
    r.add_post("/admin/clinics/{clinic_id}", clinic_save)
    r.add_post("/admin/clinics/{clinic_id}/delete", clinic_delete)


async def admin_home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/admin/conditions")
