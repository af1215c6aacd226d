"""The studio in a real browser: Debian's Chromium, headless, driven by Playwright. One studio server and one
browser for the module; real runs (the quickstart, a tiny text classifier, a tiny causal LM) and a run
that is training, written by hand. Every wait is on a DOM condition, never a sleep. Screenshots of each
page go to $DANLU_STUDIO_SCREENSHOTS (else a tmp folder)."""

from importlib import resources

import pytest

from danlu.run import atomic_write_json
from studiokit import (BROWSER_ARGS, PATIENCE_S, chromium, json_of, live_server, move_run, screenshot_dir,
                       train_text_run, variants_table, write_run, write_variants)

playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")
WAIT_MS = PATIENCE_S * 1000
LM_TEXT = "".join(f"the cat sat on the mat {i % 7}.\nthe dog ran to the log.\n" for i in range(150))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from danlu.pipeline import train
    from danlu.recipe import load_recipe
    from lmkit import train_tiny_lm

    folder = tmp_path_factory.mktemp("studio-runs")
    with resources.as_file(resources.files("danlu.starters").joinpath("quickstart.yaml")) as recipe:
        train(load_recipe(recipe), folder / "quickstart")
    move_run(train_text_run(tmp_path_factory.mktemp("studio-text")), folder, "reviews")
    move_run(train_tiny_lm(tmp_path_factory.mktemp("studio-lm"), LM_TEXT, steps=20, batch_size=8), folder, "tiny-lm")
    train(colour_recipe(tmp_path_factory.mktemp("studio-images")), folder / "colours")
    write_run(folder, "training-now", status="running", value=None)
    compressed = write_run(folder, "compressed", value=0.91)
    write_variants(compressed, variants_table([("pytorch-fp32", 0.91, 4.0, 4_000_000),
                                               ("onnx-int8", 0.90, 1.0, 1_000_000),
                                               ("prune-magnitude-0.5", 0.89, 3.0, 4_000_000)]))
    return folder


def colour_recipe(root):
    """A tiny CNN telling colour squares apart (imagekit's), trained by the plain loop in a second or two."""
    import pandas as pd

    from danlu.recipe import recipe_from_dict
    from imagekit import colour_squares

    table = root / "colours.csv"
    pd.DataFrame(colour_squares(root / "pics", per_class=10), columns=["image", "label"]).to_csv(table, index=False)
    return recipe_from_dict({
        "name": "colours", "task": "image-classification", "quality": {"on_fail": "warn"},
        "data": {"source": str(table), "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "model": {"arch": "cnn", "channels": [4], "hidden": [8], "image_size": 16},
        "train": {"epochs": 5, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "progress": False},
    })


@pytest.fixture(scope="module")
def studio(runs):
    from danlu.studio.app import create_studio

    with live_server(create_studio(runs)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=BROWSER_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return screenshot_dir(tmp_path_factory)


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(base_url=studio, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"the page's scripts failed: {errors}"


def test_the_runs_page_lists_the_quickstart_run_and_sorts(page, runs, shots):
    page.goto("/")
    row = page.locator('tr[data-run="quickstart"]')
    expect = playwright.expect
    expect(row).to_contain_text("tabular-classification")
    expect(row).to_contain_text("done")
    metrics = json_of(runs / "quickstart" / "metrics.json")
    expect(row).to_contain_text(f"accuracy {metrics['test']['accuracy']:.4f}")
    best = max(metrics["baselines"]["test"].items(), key=lambda item: item[1]["accuracy"])
    expect(row).to_contain_text(f"{best[0]} {best[1]['accuracy']:.4f}")  # the best baseline beside it
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    page.click('th a[data-column="metric"]')
    page.wait_for_url("**/?sort=metric**")
    page.locator("#runs tbody tr").first.wait_for()
    assert page.locator("#runs tbody tr").count() == 6


def test_a_run_page_draws_its_loss_curve(page, runs, shots):
    page.goto("/runs/quickstart")
    path = page.locator("#loss-chart .scatterlayer .trace path.js-line").first
    path.wait_for()
    assert len(path.get_attribute("d")) > 100  # a drawn line, not an empty container
    drawn = page.evaluate("document.getElementById('loss-chart').data.map(t => [t.name, t.x.length])")
    logged = [h for h in json_of(runs / "quickstart" / "history.json") if "loss" in h and "step" in h]
    assert drawn[0] == ["training loss", len(logged)]
    assert drawn[1][0] == "eval loss"
    playwright.expect(page.locator("#metrics tr.main")).to_contain_text("accuracy")
    report = (runs / "quickstart" / "report.md").read_text()
    if "## Warnings" in report:  # the quickstart's MLP ties with logistic regression: the report says so, and so does the page
        playwright.expect(page.locator(".warning").first).to_contain_text("baseline")
    playwright.expect(page.locator(".pictures img")).to_have_count(2)  # the two confusion matrices
    assert page.evaluate("[...document.querySelectorAll('.pictures img')].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(shots / "run.png"), full_page=True)


def test_two_runs_are_compared(page, shots):
    page.goto("/")
    page.check('input[name="run"][value="quickstart"]')
    page.check('input[name="run"][value="reviews"]')
    page.click("text=Compare the checked runs")
    page.wait_for_url("**/compare?run=**")
    page.locator("#compare-loss .scatterlayer .trace").nth(1).wait_for()
    names = page.evaluate("document.getElementById('compare-loss').data.map(t => t.name)")
    columns = page.locator("#recipe-diff thead th").all_inner_texts()[1:]
    assert sorted(names) == ["quickstart", "reviews"] and names == columns  # one order everywhere
    diff = page.locator('#recipe-diff tr[data-key="task"]')
    playwright.expect(diff).to_contain_text("tabular-classification")
    playwright.expect(diff).to_contain_text("text-classification")
    page.screenshot(path=str(shots / "compare.png"), full_page=True)


def test_the_playground_classifies_text_as_the_server_does(page, runs, shots):
    from danlu.serve.runner import load_runner

    import pandas as pd

    expected = load_runner(runs / "reviews").predict(pd.DataFrame({"text": ["a wonderful film"]}))[0]
    page.goto("/runs/reviews/playground")
    page.locator('#playground[data-state="ready"][data-widget="text"]').wait_for()
    page.fill("#input-text", "a wonderful film")
    page.click("#predict")
    page.locator('#result[data-state="done"]').wait_for()
    top = page.locator(".scores li.top")
    playwright.expect(top).to_have_attribute("data-label", expected["label"])
    playwright.expect(top.locator(".score")).to_have_text(f"{expected['score']:.4f}")
    playwright.expect(page.locator(".scores li")).to_have_count(len(expected["scores"]))
    page.screenshot(path=str(shots / "playground-text.png"), full_page=True)


def test_the_playground_uploads_an_image_for_an_image_classifier(page, runs, tmp_path, shots):
    from danlu.serve.runner import load_runner
    from imagekit import colour_squares

    import pandas as pd

    path = colour_squares(tmp_path, per_class=1)[0][0]  # a red square
    expected = load_runner(runs / "colours").predict(pd.DataFrame({"image": [path]}))[0]
    page.goto("/runs/colours/playground")
    page.locator('#playground[data-state="ready"][data-widget="files"]').wait_for()
    assert page.get_attribute('input[type="file"][name="image"]', "accept") == "image/*"
    page.set_input_files('input[name="image"]', path)
    page.click("#predict")
    page.locator('#result[data-state="done"]').wait_for()
    playwright.expect(page.locator(".scores li.top")).to_have_attribute("data-label", expected["label"])
    playwright.expect(page.locator(".preview img")).to_have_count(1)  # the upload shown beside its labels
    page.screenshot(path=str(shots / "playground-image.png"), full_page=True)


def test_the_playground_streams_a_language_models_reply(page, shots):
    page.goto("/runs/tiny-lm/playground")
    page.locator('#playground[data-state="ready"][data-widget="chat"]').wait_for()
    page.fill("#chat-input", "the cat")
    page.fill("#max-tokens", "40")
    page.click("#send")
    reply = page.locator('.assistant[data-state="done"]')
    reply.wait_for()
    assert reply.inner_text().strip()
    assert int(reply.get_attribute("data-chunks")) >= 2  # arrived in pieces, as they were sampled
    page.screenshot(path=str(shots / "playground-chat.png"), full_page=True)


def test_predictions_are_shown_as_their_task_answers(page):
    # The renderer reads the answer's shape, not the task's name: entities (token classification's
    # Tagging) are marked in the text they came from; a transcript or a translation is text.
    page.goto("/runs/reviews/playground")
    page.locator('#playground[data-state="ready"]').wait_for()
    text = "Ada Lovelace lived in London"
    page.evaluate("""([text]) => document.getElementById('result').append(
        showPrediction({entities: [{type: 'PER', text: 'Ada Lovelace', start: 0, end: 12, score: 0.91},
                                   {type: 'LOC', text: 'London', start: 22, end: 28, score: 0.88}],
                        tokens: ['Ada', 'Lovelace', 'lived', 'in', 'London'],
                        tags: ['B-PER', 'I-PER', 'O', 'O', 'B-LOC']}, text),
        showPrediction({text: 'seven three two'}, null))""", [text])
    marks = page.locator("mark.entity")
    playwright.expect(marks).to_have_count(2)
    assert [marks.nth(i).get_attribute("data-type") for i in range(2)] == ["PER", "LOC"]
    assert page.locator(".entities").first.inner_text().replace("PER", "").replace("LOC", "") == text
    playwright.expect(page.locator('.text-out[data-key="text"] span')).to_have_text("seven three two")


def test_a_training_run_updates_without_a_reload(page, runs, shots):
    page.goto("/runs/training-now")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    playwright.expect(page.locator("#progress .step")).to_have_text("30")
    history = json_of(runs / "training-now" / "history.json")
    atomic_write_json(runs / "training-now" / "history.json",
                      history + [{"loss": 0.0123, "step": 40, "epoch": 4.0}])
    playwright.expect(page.locator("#progress .step")).to_have_text("40")
    playwright.expect(page.locator("#progress .loss")).to_have_text("0.0123")
    page.wait_for_function("document.getElementById('loss-chart').data[0].x.length === 4")
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(shots / "run-live.png"), full_page=True)

    page.goto("/live")
    card = page.locator('#live section[data-run="training-now"]')
    playwright.expect(card.locator(".step")).to_have_text("40")
    atomic_write_json(runs / "training-now" / "history.json",
                      history + [{"loss": 0.0123, "step": 40, "epoch": 4.0}, {"loss": 0.01, "step": 50, "epoch": 5.0}])
    playwright.expect(card.locator(".step")).to_have_text("50")
    page.screenshot(path=str(shots / "live.png"), full_page=True)


def test_the_variants_page_follows_the_sliders(page, shots):
    page.goto("/runs/compressed/variants")
    box = page.locator("#variants")
    playwright.expect(box).to_have_attribute("data-chosen", "pytorch-fp32")  # best accuracy, nothing limits it
    page.locator("#variants-chart .scatterlayer .trace").nth(1).wait_for()  # the chosen one, drawn apart
    # p95 at most 2 ms: only onnx-int8 (1 ms at batch 1) fits.
    page.evaluate("""() => { const s = document.querySelector('input[name=p95_ms]');
                             s.value = 2; s.dispatchEvent(new Event('input', {bubbles: true})); }""")
    playwright.expect(box).to_have_attribute("data-chosen", "onnx-int8")
    playwright.expect(page.locator('#variants-table tr.chosen')).to_have_attribute("data-variant", "onnx-int8")
    playwright.expect(page.locator('tr[data-variant="pytorch-fp32"] .reason')).to_contain_text("p95")
    page.screenshot(path=str(shots / "variants.png"), full_page=True)


def test_the_studio_loads_nothing_from_outside(browser, studio):
    context = browser.new_context(base_url=studio)
    outside = []

    def guard(route):
        if route.request.url.startswith(studio):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    context.route("**/*", guard)
    opened = context.new_page()
    for path in ("/", "/runs/quickstart", "/compare?run=quickstart&run=reviews", "/live", "/runs/compressed/variants"):
        opened.goto(path)  # waits for the load event: every script, style and picture the page names
    context.close()
    assert not outside, outside


def test_a_symlinked_file_is_not_shown_in_the_browser(page, runs):
    # The same refusal the HTTP tests check, seen as a user would: a picture linked out of the run is a 404.
    link = runs / "quickstart" / "plots" / "outside.png"
    link.symlink_to("/etc/hostname")
    try:
        answer = page.goto("/runs/quickstart/files/plots/outside.png")
        assert answer.status == 404
    finally:
        link.unlink()
