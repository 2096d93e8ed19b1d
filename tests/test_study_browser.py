"""A real browser against a real server: headless Chromium (Playwright) drives `streamlit run human_eval/app.py`.

Two items are answered, the page is reloaded, the server is restarted (through `clvq-judge study serve`),
and progress must have survived; the annotator's HTML never holds a method name or a preselected answer;
the results page opens only with the password. Screenshots go to a temporary folder and, when
CLVQ_SCREENSHOT_DIR is set, there too.
"""

import os
import re
import shutil
import sys

import pytest
from fixtures_study import STUDY_METHODS, free_port, start_streamlit, stop_process, streamlit_run_command

from clvq_judge.human_eval.store import Store

pytestmark = pytest.mark.slow
PASSWORD = "browser-test-pw"
TIMEOUT_MS = 60_000


def shoot(page, folder, name):
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("CLVQ_SCREENSHOT_DIR")
    if extra:
        os.makedirs(extra, exist_ok=True)
        shutil.copy(path, os.path.join(extra, name))
    return path


def wait_progress(page, answered, total):
    page.get_by_text(f"{answered} of {total} answered").wait_for(timeout=TIMEOUT_MS)


def annotator_html_is_clean(page):
    content = page.content()
    for method in STUDY_METHODS:
        assert not re.search(rf"\b{method}\b", content, re.IGNORECASE), f"method name {method!r} in the annotator page"
    assert page.locator("input[type=radio]:checked").count() == 0  # no answer preselected
    return content


def answer(page, store, choice_for):
    item, display = store.next_item(1)
    # Streamlit updates the page element by element: wait until this item's sentence is on screen, or the
    # click may land on the previous item's form while it is being replaced.
    page.locator(".study-sentence", has_text=display["text"][:40]).wait_for(timeout=TIMEOUT_MS)
    choice = display["instruction"] or choice_for
    page.locator('[data-testid="stRadio"] label', has_text=re.compile(rf"^{re.escape(choice)}$")).click()
    page.get_by_role("button", name="Submit").click()
    return item


def test_browser_session_survives_reload_and_restart(make_study, study_browser, tmp_path):
    study = make_study(items=4, overlap=1, annotators=3, attention_checks=1)
    store = Store.open(study)
    token = store.invites()[0][1]
    total = store.progress(1).total
    labels = store.labels()
    port = free_port()
    env = {"CLVQ_STUDY_ADMIN_PASSWORD": PASSWORD}
    server = start_streamlit(streamlit_run_command(study, port), port, env)
    try:
        context = study_browser.new_context(viewport={"width": 1000, "height": 1100})
        page = context.new_page()
        url = f"http://127.0.0.1:{port}/?token={token}"
        page.goto(url)
        wait_progress(page, 0, total)
        page.locator("mark").first.wait_for(timeout=TIMEOUT_MS)
        annotator_html_is_clean(page)
        shoot(page, tmp_path, "study-annotate-first-item.png")

        answer(page, store, labels[0])
        wait_progress(page, 1, total)
        answer(page, store, labels[1])
        wait_progress(page, 2, total)
        annotator_html_is_clean(page)
        assert store.progress(1).answered == 2

        page.reload()
        wait_progress(page, 2, total)
        shoot(page, tmp_path, "study-annotate-after-reload.png")
        context.close()
    finally:
        stop_process(server)

    # restart, this time as an installed user would: `clvq-judge study serve`
    command = [sys.executable, "-m", "clvq_judge.cli.main", "study", "serve", "--study", str(study),
               "--port", str(port), "--address", "127.0.0.1"]
    server = start_streamlit(command, port, env)
    try:
        other_device = study_browser.new_context(viewport={"width": 1000, "height": 1100})
        page = other_device.new_page()
        page.goto(url)
        wait_progress(page, 2, total)
        page.locator("mark").first.wait_for(timeout=TIMEOUT_MS)
        annotator_html_is_clean(page)
        shoot(page, tmp_path, "study-annotate-after-restart.png")
        assert len(Store.open(study).tables()["answers"]) == 2

        admin = f"http://127.0.0.1:{port}/?admin=1"
        page.goto(admin)
        page.get_by_label("Admin password").fill("not-the-password")
        page.get_by_role("button", name="Show results").click()
        page.get_by_text("Wrong password.").wait_for(timeout=TIMEOUT_MS)
        content = page.content()
        assert "Accuracy per method" not in content and "not-the-password" not in content + page.url
        shoot(page, tmp_path, "study-results-wrong-password.png")

        page.get_by_label("Admin password").fill(PASSWORD)
        page.get_by_role("button", name="Show results").click()
        page.get_by_text("Accuracy per method").wait_for(timeout=TIMEOUT_MS)
        page.get_by_text("Download annotators.csv").wait_for(timeout=TIMEOUT_MS)
        page.locator('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg').first.wait_for(timeout=TIMEOUT_MS)
        assert PASSWORD not in page.content() and PASSWORD not in page.url
        shoot(page, tmp_path, "study-results.png")
        other_device.close()
    finally:
        stop_process(server)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted([
        "study-annotate-first-item.png", "study-annotate-after-reload.png", "study-annotate-after-restart.png",
        "study-results-wrong-password.png", "study-results.png"])
