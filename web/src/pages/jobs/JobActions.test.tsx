import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { renderApp, signIn, USER } from "../../test/render";

vi.mock("../../components/LogTerminal", () => ({ default: ({ label }: { label: string }) => <div role="log" aria-label={label} /> }));
vi.mock("../../components/LineChart", () => ({ default: ({ title }: { title: string }) => <figure aria-label={title} /> }));

/** A POST the page made to act (the WebSockets' one-time tickets aside). */
const apiPost = (call: { method: string; path: string }) => call.method === "POST" && call.path !== "/api/ws/tickets";

const JOB = {
  id: "job_ccc333", kind: "train", state: "failed", priority: 0, gpu_count: 1, base_model: "tiny-llama", agent_id: "vm",
  reason: "agent_lost", wait_reason: null, progress: null, created_at: "2026-01-02T03:04:05Z", started_at: null,
  finished_at: "2026-01-02T03:05:05Z", owner_id: "usr_1", message: "the agent stopped answering", request: { kind: "train" },
  config: {}, config_yaml: "stage: sft\n", estimate: {}, gpu_ids: [], metrics: null, cancel_requested: false, requeues: 1,
  queue_position: null, resume_step: 30, history: [], progress_series: [],
};
const JOB_URL = "/api/jobs/job_ccc333";

describe("a job that ended badly", () => {
  it("resumes a training job from its newest checkpoint", async () => {
    signIn();
    let state: Record<string, unknown> = JOB;
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: () => ({ status: 200, body: state }),
      [`POST ${JOB_URL}/resume`]: () => {
        state = { ...JOB, state: "pending", reason: "resumed", resume_step: null, queue_position: 2, wait_reason: "waiting for 1 free GPU(s) with 900 MB each on an online agent" };
        return { status: 202, body: state };
      },
    });
    const { user } = renderApp("/jobs/job_ccc333");

    await user.click(await screen.findByRole("button", { name: "Resume from step 30" }));
    expect(await screen.findByText("Back in the queue: training continues from its newest checkpoint.")).toBeInTheDocument();
    expect(calls.filter(apiPost).map((c) => c.path)).toEqual([`${JOB_URL}/resume`]);
    // Back in the queue: where it stands and why it waits, no more rerun buttons.
    const waiting = await screen.findByText(/#2 in the queue/);
    expect(waiting.parentElement).toHaveTextContent("waiting for 1 free GPU(s) with 900 MB each on an online agent");
    expect(screen.queryByRole("button", { name: "Retry from the start" })).not.toBeInTheDocument();
  });

  it("retries from the start when no checkpoint was saved, and says why resuming is not offered", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, state: "cancelled", resume_step: null } },
      [`POST ${JOB_URL}/retry`]: { status: 202, body: { ...JOB, state: "pending" } },
    });
    const { user } = renderApp("/jobs/job_ccc333");

    const resume = await screen.findByRole("button", { name: "Resume" });
    expect(resume).toBeDisabled();
    expect(screen.getByText(/No checkpoint was saved/)).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Retry from the start" }));
    expect(await screen.findByText(/Back in the queue: it runs again from the start/)).toBeInTheDocument();
    expect(calls.some((c) => c.method === "POST" && c.path === `${JOB_URL}/retry`)).toBe(true);
  });

  it("shows the server's refusal to rerun, and offers no resume for an evaluation", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, kind: "eval", resume_step: null } },
      [`POST ${JOB_URL}/retry`]: apiError(429, "queue_quota", "you have 5 jobs waiting and may queue 5"),
    });
    const { user } = renderApp("/jobs/job_ccc333");

    await user.click(await screen.findByRole("button", { name: "Retry from the start" }));
    expect(await screen.findByText("you have 5 jobs waiting and may queue 5")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Resume/ })).not.toBeInTheDocument();
  });

  it("offers neither to a job that succeeded or a deployment", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, kind: "deploy", state: "failed" } },
    });
    renderApp("/jobs/job_ccc333");
    const summary = await screen.findByRole("region", { name: "Summary" });
    expect(within(summary).queryByRole("button", { name: /Retry|Resume/ })).not.toBeInTheDocument();
  });
});

describe("where a job's model comes from", () => {
  it("names the hub a model is downloaded from", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, model_hub: "modelscope" } },
    });
    renderApp("/jobs/job_ccc333");
    const summary = await screen.findByRole("region", { name: "Summary" });
    expect(within(summary).getByText("Model downloaded from").nextSibling).toHaveTextContent("ModelScope");
  });
});

const MODELS = {
  items: [{ id: "m1", name: "tiny-llama", kind: "base", source: "preset", usable_for: ["train"], retired_at: null, template: "default", parameter_count: 1000 }],
  page: 1, limit: 200, total: 1, next_page: null,
};
const DATASETS = { items: [{ id: "d1", name: "tiny_sft", format: "alpaca", rows: 64, visibility: "public", owner: null }], total: 1, next_cursor: null };

describe("the YAML preview of the training form", () => {
  it("shows what the scheduler renders, then its refusal with the old YAML dimmed", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
      "POST /api/jobs": (call) => {
        const body = call.body as { config_overrides?: Record<string, unknown> };
        if (body.config_overrides) return apiError(422, "forbidden_override", "output_dir is set by the platform", "config_overrides.output_dir");
        return { status: 200, body: { kind: "train", config: {}, config_yaml: "output_dir: /data/output/job_preview\n", stages: ["train"], estimate: {} } };
      },
    });
    const { user } = renderApp("/jobs/new");
    const model = await screen.findByLabelText("Base model");
    expect(screen.getByText(/Choose a model and a dataset/)).toBeInTheDocument();
    await waitFor(() => expect(within(model).getByRole("option", { name: /tiny-llama/ })).toBeInTheDocument());
    await user.selectOptions(model, "tiny-llama");
    await user.click(screen.getByRole("checkbox", { name: /tiny_sft/ }));

    const preview = await screen.findByTestId("yaml-preview", {}, { timeout: 3000 });
    await waitFor(() => expect(preview).toHaveTextContent("output_dir: /data/output/job_preview"));
    expect(calls.filter(apiPost).every((c) => c.query.get("dry_run") === "true")).toBe(true);

    const overrides = screen.getByLabelText("Extra engine parameters (JSON)");
    await user.clear(overrides);
    await user.click(overrides);
    await user.paste('{"output_dir": "/etc"}');
    expect(await screen.findByText("The scheduler refuses config_overrides.output_dir: output_dir is set by the platform", {}, { timeout: 3000 })).toBeInTheDocument();
    expect(screen.getByTestId("yaml-preview")).toHaveClass("code--stale");
  });
});

describe("a new job from an earlier one", () => {
  it("copies every setting into the training form, ready to change and submit", async () => {
    signIn();
    const request = { kind: "train", base_model: "tiny-llama", datasets: ["tiny_sft"], stage: "sft", finetuning_type: "lora", max_steps: 30, lora_rank: 16, learning_rate: 0.0002, gpu_count: 0 };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, state: "succeeded", request } },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
      "POST /api/jobs": (call) =>
        call.query.has("dry_run")
          ? { status: 200, body: { kind: "train", config: {}, config_yaml: "max_steps: 60\n", stages: ["train"], estimate: {} } }
          : { status: 201, body: { ...JOB, id: "job_ddd444", state: "pending" } },
      "GET /api/jobs/job_ddd444": { status: 200, body: { ...JOB, id: "job_ddd444", state: "pending" } },
    });
    const { user, current } = renderApp("/jobs/job_ccc333");

    await user.click(await screen.findByRole("link", { name: "New job from this one" }));
    expect(current()).toBe("/jobs/new?kind=train&from=job_ccc333");
    expect(await screen.findByText(/Every setting is copied from job/)).toBeInTheDocument();
    await waitFor(() => expect(screen.getByLabelText("Base model")).toHaveValue("tiny-llama"));
    expect(screen.getByRole("checkbox", { name: /tiny_sft/ })).toBeChecked();
    expect(screen.getByLabelText("LoRA rank")).toHaveValue("16");
    expect(screen.getByLabelText("GPUs")).toHaveValue("0");
    await user.clear(screen.getByLabelText("Max steps"));
    await user.type(screen.getByLabelText("Max steps"), "60");
    await user.click(screen.getByRole("button", { name: "Start training" }));
    await waitFor(() => expect(current()).toBe("/jobs/job_ddd444"));
    const sent = calls.find((c) => apiPost(c) && !c.query.has("dry_run"))?.body;
    expect(sent).toMatchObject({ ...request, max_steps: 60 });
  });
});

describe("a job created through OpenAI's fine-tuning API", () => {
  it("shows its OpenAI id beside ours", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, openai_id: "ftjob-0123456789abcdef01234567" } },
    });
    renderApp("/jobs/job_ccc333");
    const summary = await screen.findByRole("region", { name: "Summary" });
    expect(within(summary).getByText("OpenAI fine-tuning job").nextSibling).toHaveTextContent(
      "ftjob-0123456789abcdef01234567",
    );
  });

  it("shows OpenAI's face of it: the ft: name, tokens, checkpoints, the results file and how to call it", async () => {
    signIn();
    vi.stubGlobal("URL", Object.assign(URL, { createObjectURL: vi.fn(() => "blob:x"), revokeObjectURL: vi.fn() }));
    const name = "ft:tiny-llama:alice:capitals:0123456789abcdef01234567";
    const fineTuning = {
      id: "ftjob-0123456789abcdef01234567", status: "succeeded", fine_tuned_model: name, trained_tokens: 12345,
      result_files: ["file-results1"], method: "supervised", suffix: "capitals",
      hyperparameters: { n_epochs: 3, batch_size: 4, learning_rate_multiplier: 1 },
      checkpoints: [
        { id: "ftckpt-8-x", object: "fine_tuning.job.checkpoint", created_at: 1767323045, step_number: 8,
          fine_tuned_model_checkpoint: `${name}:ckpt-step-8`, fine_tuning_job_id: "ftjob-x", metrics: { step: 8, train_loss: 1.23456, valid_loss: null } },
        { id: "ftckpt-4-x", object: "fine_tuning.job.checkpoint", created_at: 1767323000, step_number: 4,
          fine_tuned_model_checkpoint: `${name}:ckpt-step-4`, fine_tuning_job_id: "ftjob-x", metrics: { step: 4, train_loss: 2.5, valid_loss: 2.25 } },
      ],
    };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: {
        status: 200,
        body: { ...JOB, state: "succeeded", openai_id: fineTuning.id, trained_tokens: 12345, fine_tuning: fineTuning },
      },
      "GET /v1/files/file-results1/content": new Response("step,train_loss\n", { status: 200, headers: { "Content-Type": "text/csv" } }),
    });
    const { user } = renderApp("/jobs/job_ccc333");

    const panel = await screen.findByRole("region", { name: "OpenAI fine-tuning job" });
    expect(within(panel).getByText("Fine-tuned model").nextSibling).toHaveTextContent(name);
    expect(within(panel).getByText("OpenAI status").nextSibling).toHaveTextContent("succeeded");
    expect(within(panel).getByText("Trained tokens").nextSibling).toHaveTextContent("12,345");
    expect(within(panel).getByText("n_epochs").nextSibling).toHaveTextContent("3");
    const rows = within(within(panel).getByRole("table")).getAllByRole("row");
    expect(rows.map((row) => row.textContent)).toEqual([
      expect.stringContaining("Step"),
      expect.stringMatching(/^8.*1\.2346—ft:/),
      expect.stringMatching(/^4.*2\.52\.25/),
    ]);
    expect(within(panel).getByText(/client\.chat\.completions\.create/)).toHaveTextContent(`model="${name}"`);
    await user.click(within(panel).getByRole("button", { name: "Download metrics (CSV)" }));
    await waitFor(() => expect(calls.some((c) => c.path === "/v1/files/file-results1/content")).toBe(true));
    expect(calls.find((c) => c.path === "/v1/files/file-results1/content")?.headers.Authorization).toBe("Bearer tok-123");
  });

  it("says what comes once it succeeds while it runs", async () => {
    signIn();
    const fineTuning = {
      id: "ftjob-1", status: "running", fine_tuned_model: null, trained_tokens: null, result_files: [],
      method: "dpo", suffix: null, hyperparameters: { beta: 0.1 }, checkpoints: [],
    };
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, state: "running", openai_id: "ftjob-1", fine_tuning: fineTuning } },
    });
    renderApp("/jobs/job_ccc333");
    const panel = await screen.findByRole("region", { name: "OpenAI fine-tuning job" });
    expect(within(panel).getByText("Named once the job succeeds.")).toBeInTheDocument();
    expect(within(panel).getByText("Counted once the job succeeds.")).toBeInTheDocument();
    expect(within(panel).getByText(/No checkpoint saved yet/)).toBeInTheDocument();
    expect(within(panel).queryByText(/openai package/)).not.toBeInTheDocument();
  });
});

describe("a running training job", () => {
  const RUNNING = {
    ...JOB, state: "running", reason: "started", message: null, finished_at: null, resume_step: null,
    checkpoints: [
      { step: 20, saved_at: "2026-01-02T03:06:05Z", train_loss: 1.25, valid_loss: null, epoch: 2 },
      { step: 10, saved_at: "2026-01-02T03:05:35Z", train_loss: 1.5, valid_loss: 1.75, epoch: 1 },
    ],
  };

  it("lists the checkpoints it saved and pauses after confirming", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: RUNNING },
      [`POST ${JOB_URL}/pause`]: { status: 202, body: { id: "job_ccc333", state: "cancelling" } },
    });
    const { user } = renderApp("/jobs/job_ccc333");

    const table = await screen.findByRole("region", { name: "Checkpoints" });
    const rows = within(table).getAllByRole("row");
    expect(rows.map((row) => row.textContent)).toEqual([
      "CheckpointSavedTraining lossValidation lossModel",
      expect.stringMatching(/^checkpoint-20.*1\.25.*—Deploy$/),
      expect.stringMatching(/^checkpoint-10.*1\.5.*1\.75Deploy$/),
    ]);
    await user.click(screen.getByRole("button", { name: "Pause" }));
    await user.click(screen.getByRole("button", { name: "Yes, pause it" }));
    expect(await screen.findByText("Pause sent: the job saves a checkpoint, then stops.")).toBeInTheDocument();
    expect(calls.filter(apiPost).map((c) => c.path)).toEqual([`${JOB_URL}/pause`]);
  });

  it("offers no pause to a running evaluation", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...RUNNING, kind: "eval", checkpoints: [] } },
    });
    renderApp("/jobs/job_ccc333");
    expect(await screen.findByRole("button", { name: "Cancel job" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Pause" })).not.toBeInTheDocument();
  });
});
