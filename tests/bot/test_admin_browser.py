"""The admin panel in a real browser (headless Debian chromium via Playwright): sign in, edit
acne's Korean care steps, preview, save, see the next acne answer of the conversation core use
the new text, then roll back. With SKINCARE_SCREENSHOTS=1 it saves docs/figures/admin-edit.png
(the edit page with its preview)."""

from __future__ import annotations

import os
import shutil

import pytest
from aiohttp import web

from bot.app import build_assistant
from bot.conversation import Chatter
from bot.settings import Settings
from bot.web.admin.auth import hash_password
from bot.web.app import build_web_app
from bot.web.keys import ASSISTANT
from diagnosis.serving.postprocess import Prediction, RankedLabel
from knowledge.config import StoreConfig

from helpers import REPO_ROOT

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

PASSWORD = "a long admin password"
NEW_STEP = "순한 세안제로 하루 두 번 씻고, 각질 제거제는 쓰지 마세요. (관리자가 고친 문장)"
SCREENSHOT = REPO_ROOT / "docs" / "figures" / "admin-edit.png"


class AcnePredictor:
    """Answers every photo with acne, so the test sees the acne reply whatever the model says."""

    def __init__(self, real):
        self.real = real
        self.card = real.card

    async def predict(self, image):
        return Prediction(
            top=(
                RankedLabel("acne", "Acne", "여드름", 0.82),
                RankedLabel("fungal_infection", "Fungal", "진균", 0.1),
                RankedLabel("eczema", "Eczema", "습진", 0.03),
            ),
            probabilities={"acne": 0.82, "fungal_infection": 0.1, "eczema": 0.03},
            abstain=False,
            urgent=False,
            model_version="test",
        )


@pytest.fixture
async def admin_server(tmp_path):
    settings = Settings(
        store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"),
        admin_password_hash=hash_password(PASSWORD),
    )
    app = build_web_app(build_assistant(settings))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield app, f"http://{host}:{port}"
    await runner.cleanup()


async def acne_answer(app, dataset_dir) -> str:
    """The conversation core's reply to an acne photo, in Korean, with its "More"."""
    conversation = app[ASSISTANT].conversation
    conversation.predictor = AcnePredictor(conversation.predictor)
    photo = (dataset_dir / "acne" / "dermnet-0121064acd137936.jpg").read_bytes()
    chatter = Chatter("web-admin-browser", "ko")
    replies = await conversation.photo(chatter, photo)
    # The answer's own buttons (a checklist question may follow it).
    buttons = [button.action for row in replies[0].buttons for button in row]
    more = next(action for action in buttons if action.startswith("more:"))
    replies += await conversation.button(chatter, more)
    return "\n".join(reply.text for reply in replies)


async def test_admin_edits_korean_care_steps_previews_saves_and_rolls_back(
    admin_server, dataset_dir
):
    app, url = admin_server
    expect = playwright_api.expect
    assert NEW_STEP not in await acne_answer(app, dataset_dir)
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = await browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        await page.goto(f"{url}/admin/conditions/acne")  # redirected to sign in
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await page.get_by_label("Your name").fill("Dr. Kim")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("h1")).to_contain_text("Acne")

        steps = page.locator("#care_steps_ko")
        lines = (await steps.input_value()).splitlines()
        await steps.fill("\n".join([NEW_STEP, *lines[1:]]))
        await page.locator("#preview-button").click()
        preview = page.locator('[data-preview="result-ko"]')
        await expect(preview).to_contain_text(NEW_STEP)
        await expect(page.locator('[data-preview="result-en"]')).to_contain_text("First-line care")
        if os.environ.get("SKINCARE_SCREENSHOTS"):
            await page.locator("#preview").scroll_into_view_if_needed()
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
        # Previewing saved nothing.
        assert NEW_STEP not in await acne_answer(app, dataset_dir)

        await page.locator("#save-button").click()
        await expect(page.get_by_role("status")).to_contain_text("Saved as version")
        assert NEW_STEP in await acne_answer(app, dataset_dir)  # at once, no restart

        await page.get_by_role("link", name="History and rollback").click()
        await expect(page.locator("table")).to_contain_text("admin:Dr. Kim")
        await page.get_by_role("button", name="Roll back to").first.click()
        await expect(page.get_by_role("status")).to_contain_text("Rolled back")
        await browser.close()
    assert NEW_STEP not in await acne_answer(app, dataset_dir)
    assert not errors
