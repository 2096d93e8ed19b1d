"""A real browser against a real server: headless Chromium (Playwright) drives `streamlit run human_eval/app.py`.

Two items are answered, the page is reloaded, the server is restarted (through `clvq-judge study serve`),
and progress must have survived; the annotator's HTML never holds a method name or a preselected answer;
the results page opens only with the password. A second test walks one annotator through every condition of a
two-method study: each page's source has only opaque widget keys, Submit is on screen at 1000 px height, and
a server stopped mid-item gives a visible "not saved" state with the choice kept in the form until the
restarted server stores it. Screenshots go to the test's temporary folder (printed) and, when
CLVQ_SCREENSHOT_DIR is set, there too: study-condition-concept.png, study-condition-sentence.png,
study-condition-both.png, study-not-saved-reconnecting.png, plus those of the first test.
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
    # no answer preselected (Streamlit replaces the previous item's form element by element: give it time)
    page.wait_for_function("document.querySelectorAll('input[type=radio]:checked').length === 0", timeout=15_000)
    content = page.content()
    return content


def answer(page, store, choice_for):
    item, display = store.next_item(1)
    # Streamlit updates the page element by element: wait until this item's sentence is on screen, or the
    # click may land on the previous item's form while it is being replaced.
    if display["text"]:
        page.locator(".study-sentence", has_text=display["text"][:40]).wait_for(timeout=TIMEOUT_MS)
    choice = display["instruction"] or choice_for
    choose(page, choice, 3)
    page.get_by_role("button", name="Submit").click()
    return item


def choose(page, label, confidence):
    page.locator('[data-testid="stRadio"]').nth(0).locator("label", has_text=re.compile(rf"^{re.escape(label)}$")).click()
    page.locator('[data-testid="stRadio"]').nth(1).locator("label", has_text=re.compile(rf"^{confidence}$")).click()


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
        page.get_by_text("Which label did the model predict").first.wait_for(timeout=TIMEOUT_MS)
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
        page.get_by_role("button", name="Submit").wait_for(timeout=TIMEOUT_MS)
        annotator_html_is_clean(page)
        shoot(page, tmp_path, "study-annotate-after-restart.png")
        assert len(Store.open(study).tables()["answers"]) == 2

        admin = f"http://127.0.0.1:{port}/?admin=1"
        page.goto(admin)
        page.get_by_label("Admin password").fill("not-the-password")
        page.get_by_role("button", name="Show results").click()
        page.get_by_text("Wrong password.").wait_for(timeout=TIMEOUT_MS)
        content = page.content()
        assert "Accuracy per condition" not in content and "not-the-password" not in content + page.url
        shoot(page, tmp_path, "study-results-wrong-password.png")

        page.get_by_label("Admin password").fill(PASSWORD)
        page.get_by_role("button", name="Show results").click()
        page.get_by_text("Accuracy per condition and method").wait_for(timeout=TIMEOUT_MS)
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


def test_every_condition_in_the_browser_with_opaque_keys_and_a_server_stopped_mid_item(make_study, study_browser,
                                                                                       tmp_path):
    # 2 methods x (concept, both) + sentence = 5 items per sentence; 5 sentences, 5 annotators: one item per cell each
    study = make_study(items=5, overlap=1, annotators=5, attention_checks=0, method=("clvq", "kmeans"),
                       condition=("concept", "sentence", "both"))
    store = Store.open(study)
    token = store.invites()[0][1]
    total = store.progress(1).total
    labels = store.labels()
    port = free_port()
    server = start_streamlit(streamlit_run_command(study, port), port)
    print(f"screenshots in {tmp_path}")
    shots = []
    try:
        context = study_browser.new_context(viewport={"width": 1000, "height": 1000})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        seen = set()
        for answered in range(total):
            wait_progress(page, answered, total)
            item, display = store.next_item(1)
            key = store.widget_key(1, item)
            page.locator(f".st-key-a-{key}").wait_for(timeout=TIMEOUT_MS)
            content = annotator_html_is_clean(page)
            # every widget key on the page is this (annotator, item)'s opaque one: no id, method or numbering
            keys = set(re.findall(r"st-key-([\w-]+)", content))
            assert keys and all(re.fullmatch(rf"(FormSubmitter-)?[acf]-{key}(-Submit)?", k) for k in keys), keys
            submit = page.get_by_role("button", name="Submit")
            box = submit.bounding_box()
            assert box and box["y"] + box["height"] <= 1000, f"Submit below the fold: {box}"
            condition = display["condition"]
            if condition not in seen:
                seen.add(condition)
                shots.append(shoot(page, tmp_path, f"study-condition-{condition}.png").name)
            if answered == 1:
                # the server goes away while the annotator is on this item: nothing is stored, the page says so,
                # and the choice stays in the form
                choose(page, labels[1], 4)
                stop_process(server)
                submit.click(force=True, timeout=5_000, no_wait_after=True)
                page.get_by_text("Not saved").first.wait_for(timeout=TIMEOUT_MS)
                shots.append(shoot(page, tmp_path, "study-not-saved-reconnecting.png").name)
                assert store.progress(1).answered == 1
                assert page.locator("input[type=radio]:checked").count() == 2
                server = start_streamlit(streamlit_run_command(study, port), port)
                page.get_by_text("Not saved").first.wait_for(state="hidden", timeout=TIMEOUT_MS)
                page.locator(f".st-key-a-{key}").wait_for(timeout=TIMEOUT_MS)
                if page.locator("input[type=radio]:checked").count() < 2:
                    choose(page, labels[1], 4)
                # the browser's websocket reconnects a moment after the server answers again; a person whose
                # first press lands before that presses again, as the banner told them
                for _ in range(6):
                    page.get_by_role("button", name="Submit").click()
                    try:
                        page.get_by_text(f"2 of {total} answered").wait_for(timeout=10_000)
                        break
                    except Exception:
                        continue
                wait_progress(page, 2, total)
                assert store.tables()["answers"][-1][2] == labels[1]
                continue
            answer(page, store, labels[0])
        wait_progress(page, total, total)
        assert seen == {"concept", "sentence", "both"}
        context.close()
    finally:
        stop_process(server)
    assert len(store.tables()["answers"]) == total
    print("screenshots:", ", ".join(shots))
