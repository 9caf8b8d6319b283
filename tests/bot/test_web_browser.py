"""The web chat in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright)
against the real server, the bundled model and a real SQLite store.

`make test` installs chromium and fonts-nanum (Korean glyphs) when they are missing; never
`playwright install`. With SKINCARE_SCREENSHOTS=1 the Korean run saves docs/figures/web-chat.png.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import build_assistant
from bot.settings import Settings
from bot.texts import default_texts
from bot.web.app import build_web_app
from knowledge.config import StoreConfig

from helpers import REPO_ROOT

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)

PHOTO = "acne/dermnet-0121064acd137936.jpg"
GANGNAM = {"latitude": 37.4986, "longitude": 127.0284}
SCREENSHOT = REPO_ROOT / "docs" / "figures" / "web-chat.png"
TIMEOUT_MS = 30_000
# What the page should say, from the chat templates (so wording changes don't break the test).
EXPECTED = {
    "en": {
        "welcome": "Hello! I am a skin-care assistant.",
        "disclaimer": "This is not a diagnosis",
    },
    "ko": {"welcome": "안녕하세요! 피부 관리 도우미입니다.", "disclaimer": "진단이 아닙니다"},
}


def starts_with(prefix: str) -> re.Pattern:
    return re.compile("^" + re.escape(prefix))


@pytest.fixture
async def server_url(tmp_path):
    """The real app on a free local port (the browser needs a real socket)."""
    app = build_web_app(
        build_assistant(Settings(store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3")))
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.fixture
async def browser():
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        await browser.close()


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_photo_heatmap_question_and_clinics_in_the_browser(
    browser, server_url, dataset_dir: Path, lang: str
):
    words = default_texts()
    expect = playwright_api.expect
    context = await browser.new_context(
        viewport={"width": 480, "height": 900},
        locale="ko-KR" if lang == "ko" else "en-US",
        geolocation=GANGNAM,
        permissions=["geolocation"],
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.goto(f"{server_url}/?lang={lang}")
    bot = page.locator(".msg.bot:not(.working)")
    await expect(bot.first).to_contain_text(EXPECTED[lang]["welcome"])
    await expect(bot.first).to_contain_text(EXPECTED[lang]["disclaimer"])

    # A real photo through the file input: the user's bubble shows it, then the result.
    await page.set_input_files("#photo-input", dataset_dir / PHOTO)
    await expect(page.locator(".msg.user img")).to_have_count(1)
    result = bot.filter(has=page.locator("button.action")).last
    await expect(result).to_contain_text(EXPECTED[lang]["disclaimer"])
    for kind in ("gradcam", "care", "clinic", "feedback"):
        await expect(result.locator(f'button[data-action^="{kind}:"]').first).to_be_visible()

    # "Where did it look?" sends the photo again: the heatmap image appears, decoded.
    await result.get_by_role("button", name=words.word("button_gradcam", lang)).click()
    heatmap = page.locator("img.heatmap")
    await expect(heatmap).to_have_count(1)
    await expect(heatmap).to_have_attribute("src", starts_with("data:image/png;base64,"))
    assert await heatmap.evaluate("img => img.complete && img.naturalWidth > 0")

    # A Korean follow-up question gets a Korean answer, whatever the page's language.
    await page.fill("#text-input", "전염되나요?")
    await page.press("#text-input", "Enter")
    await expect(bot.last).to_contain_text("일반적인 정보이며 진단이 아닙니다")
    await expect(page.locator(".msg.user").last).to_have_text("전염되나요?")

    # "Find a clinic" shows the location button; the browser's location lists clinics.
    location_row = page.locator("#location-row")
    await expect(location_row).to_be_hidden()
    await result.get_by_role("button", name=words.word("button_clinic", lang)).click()
    await expect(location_row).to_be_visible()
    await page.click("#location-button")
    await expect(page.locator(".msg.venue").first).to_be_visible()
    await expect(page.locator(".msg.venue a").first).to_have_attribute(
        "href", starts_with("https://map.kakao.com/")
    )
    await expect(location_row).to_be_hidden()

    if lang == "ko" and os.environ.get("SKINCARE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A lost session (cookies cleared) shows the page's error line instead of nothing.
    await context.clear_cookies()
    await page.fill("#text-input", "hello")
    await page.press("#text-input", "Enter")
    await expect(page.locator(".msg.bot.working").last).to_have_text(
        words.word("error_try_again", lang)
    )
    assert errors == []
    await context.close()


async def test_the_checklist_in_the_browser(browser, server_url, dataset_dir: Path):
    """A photo whose answer is "a skin cancer can't be ruled out" (eczema, melanoma 6 %): the
    checklist questions one by one as buttons, then the line saying how the advice changed."""
    words = default_texts()
    expect = playwright_api.expect
    page = await browser.new_page(viewport={"width": 480, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{server_url}/?lang=en")
    await page.set_input_files("#photo-input", dataset_dir / "eczema/dermnet-02358d75ea987d22.jpg")
    bot = page.locator(".msg.bot:not(.working)")
    for number in range(1, 9):
        question = bot.filter(has_text=f"{number}/8").last
        await expect(question.locator('button[data-action^="check:"]')).to_have_count(4)
        await question.get_by_role(
            "button", name=words.word("checklist_no", "en"), exact=True
        ).click()
    await expect(bot.last).to_contain_text("Your answers make a skin cancer less likely")
    assert not errors, errors


PHONE = {"width": 390, "height": 844}  # a common phone's CSS viewport
ALBUM = (PHOTO, "acne/dermnet-01fca6939cd391ec.jpg")
PHONE_SCREENSHOT = REPO_ROOT / "docs" / "figures" / "phone-{lang}.png"


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_on_a_phone_a_long_answer_is_shown_from_its_start(
    browser, server_url, dataset_dir: Path, lang: str
):
    words = default_texts()
    expect = playwright_api.expect
    context = await browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="ko-KR" if lang == "ko" else "en-US",
        geolocation=GANGNAM,
        permissions=["geolocation"],
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{server_url}/?lang={lang}")
    bot = page.locator(".msg.bot:not(.working)")
    await expect(bot.first).to_contain_text(EXPECTED[lang]["welcome"])

    # Two photos chosen at once: one bubble with both, one answer with a heatmap per photo.
    await page.set_input_files("#photo-input", [dataset_dir / name for name in ALBUM])
    await expect(page.locator(".msg.user").last.locator("img")).to_have_count(2)
    result = bot.filter(has=page.locator("button.action")).last
    await expect(result).to_contain_text(EXPECTED[lang]["disclaimer"])
    numbered = words.word("button_gradcam_photo", lang)
    for number in (1, 2):
        await expect(result.get_by_role("button", name=f"{numbered} {number}")).to_be_visible()
    # Korean breaks between words, never inside one.
    assert await result.evaluate("el => getComputedStyle(el).wordBreak") == "keep-all"
    if os.environ.get("SKINCARE_SCREENSHOTS") == "1":
        await page.evaluate("document.activeElement && document.activeElement.blur()")
        await page.screenshot(path=str(PHONE_SCREENSHOT).format(lang=lang))

    # "More" is longer than the screen: the page shows its start (where it begins to say
    # what it is), not its end.
    answers = await bot.count()
    await result.get_by_role("button", name=words.word("button_more", lang)).click()
    await expect(bot).to_have_count(answers + 1)
    more = bot.last
    await expect(more).to_contain_text(EXPECTED[lang]["disclaimer"])
    box = await more.bounding_box()
    assert box["height"] > PHONE["height"], "not a long answer: the test would prove nothing"
    top = await more.evaluate("el => el.getBoundingClientRect().top")
    assert -1 < top < 10, f"the answer starts {top}px from the top of the screen"
    assert await page.evaluate("window.scrollY + window.innerHeight") < await page.evaluate(
        "document.body.scrollHeight"
    ), "scrolled to the end"

    # "🔍 Photo 2" sends the second photo again: its heatmap appears.
    # (Playwright does not show a multipart body: the page's fetch is watched instead.)
    await page.evaluate(
        """() => {
        window.photosSent = [];
        const fetchFirst = window.fetch;
        window.fetch = (url, options) => {
          const form = options.body instanceof FormData ? options.body : null;
          if (form) window.photosSent.push(form.get("photo").name);
          return fetchFirst(url, options);
        };
    }"""
    )
    await result.get_by_role("button", name=f"{numbered} 2").click()
    heatmap = page.locator("img.heatmap")
    await expect(heatmap).to_have_count(1)
    assert await heatmap.evaluate("img => img.complete && img.naturalWidth > 0")
    assert await page.evaluate("window.photosSent") == [Path(ALBUM[1]).name]

    # The clinics' phone numbers can be tapped to call.
    await result.get_by_role("button", name=words.word("button_clinic", lang)).click()
    await page.click("#location-button")
    listing = bot.filter(has_text="km").last
    phone = listing.locator('a[href^="tel:"]').first
    await expect(phone).to_have_attribute("href", re.compile(r"^tel:\+?\d{9,}$"))
    assert errors == []
    await context.close()
