"""The web client in a real browser, against the whole stack: a dataset uploaded through its page, a LoRA job
on the tiny model trained on it through the staged form (its YAML previewed by the scheduler), its log arriving
in the terminal, its loss curve drawn, its outputs downloaded, the adapter evaluated through the form, deployed in
the playground, chatted with (streamed) and stopped; a second user sees none of it. A cancelled job run again from
its page. Screenshots of every page go to the test's tmp folder."""

from __future__ import annotations

import re
import secrets
import zipfile
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .helpers import TABLET, TRAIN, keep_screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SFT_ROWS = "".join(
    f'{{"instruction": "Add {n} and {n}.", "output": "{n} plus {n} is {2 * n}."}}\n' for n in range(16)
).encode()


@pytest.fixture
def trainer(web_prerequisites, browser, stack, tiny_model) -> Iterator[Page]:
    page, errors = signed_in_page(browser, stack, f"web-trainer-{secrets.token_hex(3)}")
    yield page
    page.context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def fill(page: Page, label: str, value: str) -> None:
    page.get_by_label(label, exact=True).fill(value)


def test_train_watch_download_and_isolation(trainer: Page, browser, stack, tmp_path):
    page = trainer
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    keep_screenshot(page, tmp_path, "jobs-empty.png")

    # The user's own data: uploaded through the page, then trained on.
    dataset = f"web-sft-{secrets.token_hex(3)}"
    page.get_by_role("link", name="Datasets", exact=True).click()
    page.get_by_role("button", name="Upload a dataset").click()
    form = page.get_by_role("region", name="Upload a dataset")
    form.get_by_label("Name").fill(dataset)
    form.get_by_label("Files").set_input_files(
        files=[{"name": "mine.jsonl", "mimeType": "application/json", "buffer": SFT_ROWS}]
    )
    form.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("status").filter(has_text=dataset)).to_contain_text("16 rows")

    page.get_by_role("link", name="Jobs", exact=True).first.click()
    page.get_by_role("link", name="New job").click()
    expect(page.get_by_role("heading", level=1, name="New training job")).to_be_visible()
    page.get_by_label("Base model").select_option("tiny-llama")
    page.get_by_role("checkbox", name=re.compile(dataset)).check()
    expect(page.get_by_role("checkbox", name=re.compile("tiny_pt"))).to_be_enabled()  # text fits sft too
    for label, value in (
        ("Max steps", "12"),
        ("Gradient accumulation", "1"),
        ("Cutoff length (tokens)", "128"),
        ("LoRA rank", "4"),
        ("Log every (steps)", "1"),
        ("Checkpoint every (steps)", "6"),
        ("GPUs", "0"),
    ):
        fill(page, label, value)
    # The preview is the scheduler's own rendering of the form (a dry run), paths included.
    preview = page.get_by_test_id("yaml-preview")
    expect(preview).to_contain_text("max_steps: 12")
    expect(preview).to_contain_text("lora_alpha: 8")
    expect(preview).to_contain_text(re.compile(rf"dataset: usr_\w+__{dataset}\n"))  # the engine's name for it
    expect(preview).to_contain_text(re.compile(r"output_dir: /\S+/job_preview\n"))

    # A client-side check: a rank out of range is refused before anything is sent.
    fill(page, "LoRA rank", "0")
    page.get_by_role("button", name="Start training").click()
    rank = page.get_by_label("LoRA rank", exact=True)
    expect(rank).to_have_attribute("aria-invalid", "true")
    expect(rank).to_be_focused()
    fill(page, "LoRA rank", "4")

    # The server's refusal lands on the field it names.
    overrides = page.get_by_label("Extra engine parameters (JSON)")
    overrides.fill('{"output_dir": "somewhere-else"}')
    page.get_by_role("button", name="Start training").click()
    expect(overrides).to_have_attribute("aria-invalid", "true")
    expect(overrides).to_have_accessible_description(re.compile("output_dir|platform", re.I))
    expect(page.locator(".preview")).to_contain_text("The scheduler refuses config_overrides")
    keep_screenshot(page, tmp_path, "new-job-refused.png")
    overrides.fill('{"max_grad_norm": 0.5}')
    expect(preview).to_contain_text("max_grad_norm: 0.5")
    keep_screenshot(page, tmp_path, "new-job.png")
    page.get_by_role("button", name="Start training").click()

    heading = page.get_by_role("heading", level=1, name=re.compile(r"^Job job"))
    expect(heading).to_be_visible()
    job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert job_id.startswith("job"), page.url
    expect(page.get_by_role("button", name="Copy YAML")).to_be_visible()
    expect(page.get_by_role("region", name="Frozen configuration (YAML)")).to_contain_text("max_steps: 12")

    # The log arrives in the terminal, live.
    terminal = page.get_by_role("log", name=f"Log of job {job_id}")
    expect(terminal).to_be_visible()
    expect(page.locator(".live-status")).to_contain_text(re.compile(r"[1-9]\d* lines"), timeout=120_000)
    expect(terminal).to_contain_text("loss", timeout=180_000)
    # The loss curve is drawn from the progress series.
    expect(page.locator(".chart__plot canvas").first).to_be_visible(timeout=60_000)
    expect(page.get_by_role("status").filter(has_text=re.compile(r"^Step \d+: loss"))).to_be_visible()
    keep_screenshot(page, tmp_path, "job-running.png")

    expect(page.locator(".job-head .pill")).to_have_text("Succeeded", timeout=240_000)
    expect(terminal).to_contain_text("job succeeded", timeout=30_000)
    expect(page.locator(".chart__plot").first).to_have_attribute("data-points", "12", timeout=30_000)
    keep_screenshot(page, tmp_path, "job-succeeded.png")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download outputs (.zip)").click()
    archive = tmp_path / "outputs.zip"
    download_info.value.save_as(archive)
    names = zipfile.ZipFile(archive).namelist()
    assert any(n.endswith("adapter_model.safetensors") for n in names), names
    with page.expect_download() as log_info:
        page.get_by_role("button", name="Download log").click()
    log_path = tmp_path / "job.log"
    log_info.value.save_as(log_path)
    assert "loss" in log_path.read_text()

    # A reload replays the whole log from the start.
    page.reload()
    expect(page.get_by_role("log", name=f"Log of job {job_id}")).to_contain_text("job succeeded", timeout=30_000)

    page.set_viewport_size(TABLET)
    keep_screenshot(page, tmp_path, "job-succeeded-tablet.png")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Its settings start a new job: the form comes filled in, the scheduler previews it.
    page.get_by_role("link", name="New job from this one").click()
    expect(page.get_by_text("Every setting is copied from job")).to_be_visible()
    expect(page.get_by_label("Max steps", exact=True)).to_have_value("12")
    expect(page.get_by_role("checkbox", name=re.compile(dataset))).to_be_checked()
    expect(page.get_by_test_id("yaml-preview")).to_contain_text("max_grad_norm: 0.5")

    page.get_by_role("link", name="Jobs", exact=True).first.click()
    row = page.get_by_role("row", name=re.compile(job_id))
    expect(row).to_contain_text("Succeeded")
    page.get_by_label("State").select_option("failed")
    expect(page.get_by_role("row", name=re.compile(job_id))).to_have_count(0)
    page.get_by_label("State").select_option("")
    page.get_by_label("Search").fill("tiny-llama")
    expect(page.get_by_role("row", name=re.compile(job_id))).to_be_visible()
    keep_screenshot(page, tmp_path, "jobs.png")

    # The model the job produced is listed with its lineage.
    page.get_by_role("link", name="Models", exact=True).click()
    own = page.get_by_role("row", name=re.compile("LoRA adapter"))
    expect(own).to_be_visible(timeout=30_000)
    own.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Lineage")).to_be_visible()
    expect(page.get_by_role("list", name="Derived from")).to_contain_text("tiny-llama")
    keep_screenshot(page, tmp_path, "model.png")
    adapter = page.get_by_role("heading", level=1).inner_text()
    model_url = page.url

    # Evaluate it through the form; it runs beside the deployment below (the stack has two CPU slots).
    page.get_by_role("link", name="Evaluate").click()
    expect(page.get_by_role("heading", level=1, name="New evaluation")).to_be_visible()
    expect(page.get_by_label("Model", exact=True)).to_have_value(adapter)
    page.get_by_role("checkbox", name=re.compile("tiny_sft")).check()
    for label, value in (("Max samples", "4"), ("Batch size", "4"), ("Cutoff length (tokens)", "128"), ("GPUs", "0")):
        fill(page, label, value)
    page.get_by_role("button", name="Start evaluation").click()
    expect(page.get_by_role("heading", level=1, name=re.compile(r"^Job job"))).to_be_visible()
    eval_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    # Deploy the adapter in the playground, chat with it (streamed), and stop it.
    page.goto(model_url)
    page.get_by_role("link", name="Deploy", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Playground")).to_be_visible()
    expect(page.get_by_label("Model", exact=True)).to_have_value(adapter)
    expect(page.get_by_label("GPUs", exact=True)).to_have_value("0")
    fill(page, "Stop after idle (seconds)", "120")
    page.get_by_text("Generation defaults").click()
    fill(page, "Max new tokens", "12")
    keep_screenshot(page, tmp_path, "playground-deploy.png")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page).to_have_url(re.compile(r"deployment=dep_"))
    deployment_id = page.url.rsplit("=", 1)[-1]
    try:
        chat_with_deployment(page, deployment_id, tmp_path)
    finally:
        stop_quietly(page, deployment_id)
    with page.expect_download() as log_info:
        page.get_by_role("button", name="Download inference log").click()
    inference_log = tmp_path / "inference.log"
    log_info.value.save_as(inference_log)
    assert "ready" in inference_log.read_text()

    page.goto(f"/jobs/{eval_id}")
    expect(page.locator(".job-head .pill")).to_have_text("Succeeded", timeout=180_000)
    # The metrics card by its own heading: a looser match also took the Logs card when a log line said "metrics".
    expect(page.get_by_role("region", name="Metrics", exact=True)).to_contain_text("eval_loss")
    keep_screenshot(page, tmp_path, "eval-succeeded.png")

    # Someone else sees none of it.
    other, errors = signed_in_page(browser, stack, f"web-other-{secrets.token_hex(3)}")
    try:
        expect(other.get_by_text("No jobs yet")).to_be_visible()
        other.get_by_role("link", name="Datasets", exact=True).click()
        other.get_by_label("Search by name").fill(dataset)
        expect(other.get_by_text("No dataset matches.")).to_be_visible()
        other.goto(f"/jobs/{job_id}")
        expect(other.get_by_role("alert")).to_contain_text("Could not load this job")
        keep_screenshot(other, tmp_path, "other-user-job.png")
        assert other.request.get(f"/api/jobs/{job_id}/artifacts").status in (401, 404)
        other.get_by_role("link", name="Deployments", exact=True).click()
        expect(other.get_by_text("No deployments yet.")).to_be_visible()
        other.goto(f"/playground?deployment={deployment_id}")
        expect(other.get_by_role("alert")).to_contain_text("Could not load this deployment")
        other.get_by_role("link", name="Exports", exact=True).click()
        expect(other.get_by_text("No exports yet.")).to_be_visible()
        other.get_by_role("link", name="Evaluations", exact=True).click()
        expect(other.get_by_text("No evaluations yet.")).to_be_visible()
    finally:
        other.context.close()
    assert not errors, errors


def chat_with_deployment(page: Page, deployment_id: str, tmp_path) -> None:
    """From a deployment just made in the playground: wait until ready, chat, check the history and lists, stop."""
    badge = page.locator(".deployment .pill")
    expect(badge).to_have_text(re.compile("Queued|Starting|Ready"))
    keep_screenshot(page, tmp_path, "playground-starting.png")
    expect(badge).to_have_text("Ready", timeout=150_000)
    expect(page.get_by_test_id("idle-countdown")).to_contain_text(re.compile(r"Stops when idle in [12]:\d\d"))
    expect(page.get_by_test_id("api-snippet")).to_contain_text(f'model="{deployment_id}"')

    message = page.get_by_role("textbox", name="Message")
    message.fill("What is the capital of Canada?")
    message.press("Enter")
    conversation = page.get_by_role("log", name="Conversation")
    expect(conversation).to_contain_text("What is the capital of Canada?")
    answer = conversation.locator(".turn--assistant .turn__text")
    expect(answer).to_have_text(re.compile(r"\S"), timeout=60_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=60_000)  # the stream ended
    keep_screenshot(page, tmp_path, "playground-chat.png")

    # The conversation is kept in this browser; usage reaches the deployment.
    page.reload()
    expect(page.get_by_role("log", name="Conversation")).to_contain_text("What is the capital of Canada?")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    row = page.get_by_role("row", name=re.compile(deployment_id))
    expect(row).to_contain_text("Ready")
    expect(row.locator("td.num").nth(1)).to_have_text("1", timeout=15_000)  # requests served
    keep_screenshot(page, tmp_path, "deployments.png")
    row.get_by_role("link", name=deployment_id).click()
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator(".deployment .pill")).to_have_text("Stopped", timeout=60_000)
    expect(page.get_by_role("textbox", name="Message")).to_be_disabled()
    keep_screenshot(page, tmp_path, "playground-stopped.png")


def stop_quietly(page: Page, deployment_id: str) -> None:
    """Stop a deployment through the API whatever happened (it holds one of the stack's two CPU slots)."""
    token = page.evaluate("window.localStorage.getItem('llmct.access_token')")
    page.request.post(f"/api/deployments/{deployment_id}/stop", headers={"Authorization": f"Bearer {token}"})


def test_cancel_then_run_again_from_the_job_page(trainer: Page, tmp_path):
    page = trainer
    token = page.evaluate("window.localStorage.getItem('llmct.access_token')")
    auth = {"Authorization": f"Bearer {token}"}
    answer = page.request.post("/api/jobs", data={**TRAIN, "max_steps": 5000, "save_steps": 3}, headers=auth)
    assert answer.status == 201, answer.text()
    job_id = answer.json()["id"]
    try:
        page.goto(f"/jobs/{job_id}")
        badge = page.locator(".job-head .pill")
        # Past step 3: checkpoint-3 is written.
        expect(page.get_by_role("status").filter(has_text=re.compile(r"^Step ([4-9]|\d\d+): loss"))).to_be_visible(
            timeout=240_000
        )
        page.get_by_role("button", name="Cancel job").click()
        page.get_by_role("button", name="Yes, stop it").click()
        expect(badge).to_have_text("Cancelled", timeout=60_000)
        resume = page.get_by_role("button", name=re.compile(r"^Resume from step \d+$"))
        expect(resume).to_be_enabled()
        keep_screenshot(page, tmp_path, "job-cancelled.png")

        resume.click()
        expect(page.get_by_text("Back in the queue: training continues from its newest checkpoint.")).to_be_visible()
        expect(badge).to_have_text(re.compile("Queued|Starting|Running"))
        expect(page.get_by_role("region", name="State history")).to_contain_text("resumed", timeout=30_000)
        expect(page.get_by_role("region", name="Frozen configuration (YAML)")).to_contain_text(
            "resume_from_checkpoint:"
        )
        expect(badge).to_have_text("Running", timeout=120_000)
        page.get_by_role("button", name="Cancel job").click()
        page.get_by_role("button", name="Yes, stop it").click()
        expect(badge).to_have_text("Cancelled", timeout=60_000)

        page.get_by_role("button", name="Retry from the start").click()
        expect(page.get_by_text("Back in the queue: it runs again from the start")).to_be_visible()
        # (the history comes with the page's next refresh: under load, later than expect's 5 s)
        expect(page.get_by_role("region", name="State history")).to_contain_text("retried", timeout=30_000)
        expect(page.get_by_role("region", name="Frozen configuration (YAML)")).not_to_contain_text(
            "resume_from_checkpoint"
        )
        keep_screenshot(page, tmp_path, "job-retried.png")
    finally:
        page.request.post(f"/api/jobs/{job_id}/cancel", headers=auth)


def test_catalog_pages(trainer: Page, tmp_path):
    page = trainer
    page.get_by_role("link", name="Datasets", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Datasets")).to_be_visible()
    page.get_by_label("Search by name").fill("tiny_s")
    expect(page.get_by_role("row", name=re.compile("tiny_sft"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("tiny_pt"))).to_have_count(0)
    keep_screenshot(page, tmp_path, "datasets.png")

    # An upload whose rows do not fit the format is refused row by row.
    page.get_by_role("button", name="Upload a dataset").click()
    form = page.get_by_role("region", name="Upload a dataset")
    form.get_by_label("Name").fill("web-bad")
    form.get_by_label("Files").set_input_files(
        files=[
            {
                "name": "bad.jsonl",
                "mimeType": "application/json",
                "buffer": b'{"instruction": "hi", "output": "yo"}\n{"instruction": "no answer"}\n',
            }
        ]
    )
    form.get_by_role("button", name="Upload", exact=True).click()
    expect(form.get_by_role("alert")).to_contain_text("1 of 2 rows do not fit the alpaca format")
    expect(form.get_by_role("listitem").filter(has_text="output")).to_be_visible()
    keep_screenshot(page, tmp_path, "datasets-upload-refused.png")

    form.get_by_label("Name").fill("web-good")
    form.get_by_label("Files").set_input_files(
        files=[
            {
                "name": "good.jsonl",
                "mimeType": "application/json",
                "buffer": b'{"instruction": "hi", "output": "yo"}\n{"instruction": "2+2", "output": "4"}\n',
            }
        ]
    )
    form.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="web-good")).to_contain_text("2 rows")
    page.get_by_role("link", name="Preview it").click()
    expect(page.get_by_role("heading", level=1, name="Dataset web-good")).to_be_visible()
    expect(page.get_by_role("region", name="Preview").or_(page.locator("section", has_text="Preview"))).to_contain_text(
        "2+2"
    )
    page.get_by_label("Remark").fill("two rows for the web test")
    page.get_by_role("button", name="Save remark").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    keep_screenshot(page, tmp_path, "dataset.png")
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("heading", level=1, name="Datasets")).to_be_visible()
    page.get_by_label("Search by name").fill("web-good")
    expect(page.get_by_text("No dataset matches.")).to_be_visible()

    page.get_by_role("link", name="Models", exact=True).click()
    expect(page.get_by_role("row", name=re.compile("tiny-llama"))).to_be_visible()
    keep_screenshot(page, tmp_path, "models.png")
    page.get_by_role("link", name="tiny-llama").click()
    expect(page.get_by_role("link", name="Evaluate")).to_be_visible()
    page.get_by_role("link", name="Export", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="New export")).to_be_visible()
    expect(page.get_by_label("Model", exact=True)).to_have_value("tiny-llama")
    expect(page.get_by_role("button", name="Start export")).to_be_disabled()  # a full model needs a quantisation
    keep_screenshot(page, tmp_path, "new-export.png")
    page.get_by_role("link", name="Evaluation", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="New evaluation")).to_be_visible()
    keep_screenshot(page, tmp_path, "new-eval.png")

    page.get_by_role("link", name="Evaluations", exact=True).click()
    expect(page.get_by_text("No evaluations yet.")).to_be_visible()

    page.get_by_label("Language").select_option("zh")
    page.get_by_role("link", name="任务", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="任务")).to_be_visible()
    page.get_by_role("link", name="新建任务").click()
    expect(page.get_by_role("heading", level=1, name="新建训练任务")).to_be_visible()
    page.set_viewport_size(TABLET)
    keep_screenshot(page, tmp_path, "new-job-zh-tablet.png")
