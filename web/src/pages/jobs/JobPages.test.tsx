import { render, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import type { JobDetail } from "../../api/jobs";
import { I18nProvider } from "../../i18n";
import { apiError, mockFetch } from "../../test/fetchMock";
import { renderApp, signIn, USER } from "../../test/render";
import { TrackingLinks } from "./TrackingLinks";

// Canvas and terminal need a real browser: the e2e tests cover them; here they are stand-ins.
vi.mock("../../components/LogTerminal", async () => {
  const { useEffect, useState } = await import("react");
  return {
    default: function Terminal({ label, url }: { label: string; url: (after: string) => string | Promise<string> }) {
      const [address, setAddress] = useState("");
      useEffect(() => {
        Promise.resolve(url("2.7")).then(setAddress, () => setAddress("refused"));
      }, []); // eslint-disable-line react-hooks/exhaustive-deps -- once, as the terminal opens once
      return <div role="log" aria-label={label} data-url={address} />;
    },
  };
});
vi.mock("../../components/LineChart", () => ({
  default: ({ title, x }: { title: string; x: number[] }) => <figure aria-label={title} data-points={x.length} />,
}));

const SUMMARY = {
  id: "job_aaa111", kind: "train", state: "running", priority: 0, gpu_count: 0, base_model: "tiny-llama", agent_id: "vm",
  reason: null, progress: { step: 6, total_steps: 12, remaining_s: 65, elapsed_s: 5 },
  created_at: "2026-01-02T03:04:05Z", started_at: "2026-01-02T03:04:06Z", finished_at: null,
};
const DONE = { ...SUMMARY, id: "job_bbb222", state: "failed", reason: "out_of_memory", base_model: "qwen", progress: null };
const DETAIL = {
  ...SUMMARY, owner_id: "usr_1", message: null, request: { kind: "train" }, config: {}, estimate: {}, gpu_ids: [],
  metrics: null, cancel_requested: false, config_yaml: "stage: sft\nmax_steps: 12\n",
  history: [{ state: "pending", reason: "submitted", message: null, at: "2026-01-02T03:04:05Z" }],
  progress_series: [1, 2, 3].map((step) => ({ step, total_steps: 12, loss: 3 - step / 10, learning_rate: 1e-4, epoch: 0.1, elapsed_s: step, remaining_s: 10, at: "2026-01-02T03:04:06Z" })),
};
const MODELS = {
  items: [
    { id: "m1", name: "tiny-llama", kind: "base", source: "preset", usable_for: ["train", "eval", "export"], retired_at: null, template: "default", parameter_count: 1000 },
    { id: "m2", name: "my-adapter", kind: "lora", source: "train", usable_for: ["eval", "export"], retired_at: null, template: "default", parameter_count: 1000 },
  ],
  page: 1, limit: 200, total: 2, next_page: null,
};
const DATASETS = {
  items: [
    { id: "d1", name: "tiny_sft", format: "alpaca", rows: 64, visibility: "public", owner: null },
    { id: "d2", name: "prefs", format: "pairwise", rows: 10, visibility: "private", owner: "ada" },
  ],
  total: 2, next_cursor: null,
};

describe("JobsPage", () => {
  it("lists jobs with state, progress and ETA, filters by state, and searches by model", async () => {
    signIn();
    // The API searches (part of the id or the model): this stand-in does it the same way.
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs": ({ query }) => {
        const q = query.get("q") ?? "";
        const items = [SUMMARY, DONE].filter((job) => job.id.includes(q) || job.base_model.includes(q));
        return { status: 200, body: { items, next_cursor: "c2" } };
      },
    });
    const { user, current } = renderApp("/jobs");

    const row = await screen.findByRole("row", { name: /job_aaa111/ });
    expect(within(row).getByText("Running")).toBeInTheDocument();
    expect(within(row).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "6");
    expect(row).toHaveTextContent("about 1:05 left");
    expect(screen.getByRole("row", { name: /job_bbb222/ })).toHaveTextContent("out_of_memory");

    await user.type(screen.getByLabelText("Search"), "qwen");
    await waitFor(() => expect(screen.queryByRole("row", { name: /job_aaa111/ })).not.toBeInTheDocument());
    expect(screen.getByRole("row", { name: /job_bbb222/ })).toBeInTheDocument();
    expect(calls.at(-1)?.query.get("q")).toBe("qwen");
    expect(current()).toContain("q=qwen");

    await user.selectOptions(screen.getByLabelText("State"), "failed");
    await waitFor(() => expect(calls.at(-1)?.path).toBe("/api/jobs"));
    expect(current()).toContain("state=failed");
    await user.click(screen.getByRole("button", { name: "Older" }));
    await waitFor(() => expect(screen.getByText("Page 2")).toBeInTheDocument());
  });

  it("invites a first job when there is none, and says when loading failed", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER }, "GET /api/jobs": { status: 200, body: { items: [], next_cursor: null } } });
    renderApp("/jobs");
    expect(await screen.findByRole("link", { name: "Start your first job" })).toHaveAttribute("href", "/jobs/new");
  });

  it("offers a retry when the list cannot be loaded", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER }, "GET /api/jobs": apiError(503, "store_unavailable", "the database is unavailable") });
    renderApp("/jobs");
    expect(await screen.findByRole("alert")).toHaveTextContent("Could not load your jobs. the database is unavailable");
    expect(screen.getByRole("button", { name: "Try again" })).toBeInTheDocument();
  });
});

describe("JobDetailPage", () => {
  it("shows progress, curves, the live log, history and the frozen YAML; cancels after asking", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs/job_aaa111": { status: 200, body: DETAIL },
      "POST /api/jobs/job_aaa111/cancel": { status: 202, body: { id: "job_aaa111", state: "running" } },
      "POST /api/ws/tickets": { status: 201, body: { ticket: "tkt-once", expires_in: 30 } },
    });
    const { user } = renderApp("/jobs/job_aaa111");

    expect(await screen.findByRole("heading", { level: 1, name: "Job job_aaa111" })).toBeInTheDocument();
    expect(await screen.findByRole("progressbar", { name: "Training progress" })).toHaveAttribute("aria-valuetext", "Step 6 of 12, about 1:05 left");
    expect(await screen.findByRole("figure", { name: "Loss" })).toHaveAttribute("data-points", "3");
    expect(screen.getByText("Step 3: loss 2.7")).toBeInTheDocument();
    const log = await screen.findByRole("log", { name: "Log of job job_aaa111" });
    // Opened with a one-time ticket, asked for with the token in the header: the token is never in a URL.
    await waitFor(() => expect(log.dataset.url).toMatch(/^ws:\/\/localhost(:\d+)?\/api\/jobs\/job_aaa111\/logs\?after=2\.7&ticket=tkt-once$/));
    const asked = calls.find((c) => c.method === "POST" && c.path === "/api/ws/tickets");
    expect(asked?.headers.Authorization).toBe("Bearer tok-123");
    expect(screen.getByRole("region", { name: "Frozen configuration (YAML)" })).toHaveTextContent("max_steps: 12");
    expect(within(screen.getByRole("region", { name: "State history" })).getByText("submitted")).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "Cancel job" }));
    await user.click(screen.getByRole("button", { name: "Yes, stop it" }));
    expect(await screen.findByText("Cancel sent: the agent is stopping the job.")).toBeInTheDocument();
    expect(calls.some((c) => c.method === "POST" && c.path === "/api/jobs/job_aaa111/cancel")).toBe(true);
  });

  it("shows the fetch of a job's inputs while it goes on", async () => {
    signIn();
    const MB = 1024 * 1024;
    const fetch = { input: "tiny_sft.jsonl", done_bytes: 120 * MB, total_bytes: 300 * MB, at: "2026-01-02T03:04:07Z" };
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs/job_aaa111": { status: 200, body: { ...DETAIL, progress: null, progress_series: [], fetch } },
      "POST /api/ws/tickets": { status: 201, body: { ticket: "tkt-once", expires_in: 30 } },
    });
    renderApp("/jobs/job_aaa111");
    const bar = await screen.findByRole("progressbar", { name: "Fetching inputs" });
    expect(bar).toHaveAttribute("aria-valuetext", "fetching inputs: 120 of 300 MB");
    expect(bar).toHaveAttribute("aria-valuenow", String(120 * MB));
    expect(screen.getByText("fetching inputs: 120 of 300 MB · now tiny_sft.jsonl")).toBeInTheDocument();
    expect(screen.queryByRole("progressbar", { name: "Training progress" })).not.toBeInTheDocument();
  });

  it("says why a job failed", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs/job_bbb222": { status: 200, body: { ...DETAIL, ...DONE, message: "CUDA out of memory\n--- last log lines ---\nboom" } },
    });
    renderApp("/jobs/job_bbb222");
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Failed: out_of_memory");
    expect(alert).toHaveTextContent("CUDA out of memory");
    expect(screen.queryByRole("button", { name: "Cancel job" })).not.toBeInTheDocument();
  });

  it("charts the GPUs the job held, and offers to deploy what it produced", async () => {
    signIn();
    const point = { at: "2026-01-02T03:04:10Z", samples: 1, utilization_pct: 90, memory_used_mb: 4096, memory_total_mb: 8192, temperature_c: 60, power_w: 200 };
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs/job_aaa111": { status: 200, body: { ...DETAIL, state: "succeeded", gpu_count: 1, gpu_ids: [0] } },
      "GET /api/jobs/job_aaa111/gpu": { status: 200, body: { job_id: "job_aaa111", agent_id: "vm", gpu_ids: [0], from: point.at, to: point.at, step_s: 10, gpus: [{ index: 0, points: [point] }] } },
      "GET /api/models": { status: 200, body: { ...MODELS, items: [{ ...MODELS.items[1], job_id: "job_aaa111", usable_for: ["eval", "deploy"] }] } },
    });
    renderApp("/jobs/job_aaa111");
    expect(await screen.findByRole("heading", { name: "GPU during the run" })).toBeInTheDocument();
    expect(await screen.findByRole("figure", { name: "GPU utilisation (%)" })).toHaveAttribute("data-points", "1");
    expect(screen.getByRole("figure", { name: "GPU memory used (GiB)" })).toBeInTheDocument();
    expect(await screen.findByRole("link", { name: "Deploy" })).toHaveAttribute("href", "/playground?model=my-adapter");
  });

  it("links to the job's tracked runs and says where the others are, in English and Chinese", async () => {
    signIn();
    const tracking = [
      { kind: "mlflow", url: "http://mlflow.example.com/#/experiments/1/runs/abc", run_id: "abc", experiment_id: "1", mode: null, folder: null },
      { kind: "wandb", url: null, run_id: "llmct-1", experiment_id: null, mode: "offline", folder: "wandb" },
      { kind: "tensorboard", url: null, run_id: null, experiment_id: null, mode: null, folder: "runs" },
    ];
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs/job_aaa111": { status: 200, body: { ...DETAIL, tracking } },
    });
    renderApp("/jobs/job_aaa111");
    const section = await screen.findByRole("region", { name: "Experiment tracking" });
    const link = within(section).getByRole("link", { name: "Open the run" });
    expect(link).toHaveAttribute("href", "http://mlflow.example.com/#/experiments/1/runs/abc");
    expect(link).toHaveAttribute("rel", "noopener noreferrer");
    expect(section).toHaveTextContent("wandb sync wandb/offline-run-*");
    expect(section).toHaveTextContent("tensorboard --logdir runs");
  });

  it("shows the tracking section in Chinese", () => {
    const job = { ...DETAIL, tracking: [{ kind: "mlflow", url: null, run_id: null, experiment_id: null, mode: null, folder: null }] };
    render(
      <I18nProvider lang="zh">
        <TrackingLinks job={job as unknown as JobDetail} />
      </I18nProvider>,
    );
    expect(screen.getByRole("region", { name: "实验跟踪" })).toHaveTextContent("任务开始时创建运行。");
  });

  it("reads another user's job as not found", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER }, "GET /api/jobs/job_x": apiError(404, "not_found", "job not found") });
    renderApp("/jobs/job_x");
    expect(await screen.findByRole("alert")).toHaveTextContent("Could not load this job. job not found");
  });
});

describe("NewJobPage", () => {
  it("submits a LoRA job with the pickers' choices and opens it", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
      "POST /api/jobs": (call) =>
        call.query.get("dry_run") === "true"
          ? { status: 200, body: { kind: "train", config: {}, config_yaml: `stage: sft\nmax_steps: ${(call.body as { max_steps?: number }).max_steps}\n`, stages: ["train"], estimate: {} } }
          : { status: 201, body: DETAIL },
      "GET /api/jobs/job_aaa111": { status: 200, body: DETAIL },
    });
    const { user, current } = renderApp("/jobs/new");

    const model = await screen.findByLabelText("Base model");
    await waitFor(() => expect(within(model).getByRole("option", { name: /tiny-llama/ })).toBeInTheDocument());
    expect(within(model).queryByRole("option", { name: /my-adapter/ })).not.toBeInTheDocument(); // adapters do not train
    await user.selectOptions(model, "tiny-llama");
    expect(screen.getByRole("checkbox", { name: /prefs/ })).toBeDisabled(); // pairwise is not for sft
    await user.click(screen.getByRole("checkbox", { name: /tiny_sft/ }));
    await user.clear(screen.getByLabelText("Max steps"));
    await user.type(screen.getByLabelText("Max steps"), "12");
    // The scheduler's own rendering, asked once the form has been still for a moment.
    await waitFor(() => expect(screen.getByTestId("yaml-preview")).toHaveTextContent("max_steps: 12"));
    const previews = calls.filter((c) => c.method === "POST" && c.query.get("dry_run") === "true");
    expect(previews.at(-1)?.body).toMatchObject({ kind: "train", max_steps: 12 });

    await user.click(screen.getByRole("button", { name: "Start training" }));
    await waitFor(() => expect(current()).toBe("/jobs/job_aaa111"));
    const sent = calls.find((c) => c.method === "POST" && !c.query.has("dry_run"))?.body;
    expect(sent).toMatchObject({ kind: "train", base_model: "tiny-llama", datasets: ["tiny_sft"], max_steps: 12, finetuning_type: "lora" });
  });

  it("sends the chosen trackers as `tracking` and puts a refused tracking URI on its field", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
      "POST /api/jobs": (call) =>
        call.query.get("dry_run") === "true"
          ? { status: 200, body: { kind: "train", config: {}, config_yaml: "stage: sft\n", stages: ["train"], estimate: {} } }
          : apiError(422, "invalid_tracking", "10.0.0.5 resolves to a private address", "tracking.mlflow.tracking_uri"),
    });
    const { user } = renderApp("/jobs/new");
    const model = await screen.findByLabelText("Base model");
    await waitFor(() => expect(within(model).getByRole("option", { name: /tiny-llama/ })).toBeInTheDocument());
    await user.selectOptions(model, "tiny-llama");
    await user.click(screen.getByRole("checkbox", { name: /tiny_sft/ }));
    await user.click(screen.getByRole("checkbox", { name: "MLflow" }));
    await user.type(screen.getByLabelText("MLflow tracking URI"), "http://10.0.0.5:5000");
    await user.click(screen.getByRole("checkbox", { name: "Weights & Biases" }));
    await user.type(screen.getByLabelText("Project"), "demo");
    await user.selectOptions(screen.getByLabelText("Mode"), "offline");
    await user.click(screen.getByRole("checkbox", { name: /TensorBoard/ }));
    await user.click(screen.getByRole("button", { name: "Start training" }));
    const uri = await screen.findByLabelText("MLflow tracking URI");
    await waitFor(() => expect(uri).toHaveAccessibleDescription(/private address/));
    const sent = calls.find((c) => c.method === "POST" && !c.query.has("dry_run"))?.body;
    expect(sent).toMatchObject({
      tracking: {
        mlflow: { tracking_uri: "http://10.0.0.5:5000", experiment: "llmct" },
        wandb: { project: "demo", mode: "offline", tags: [] },
        tensorboard: true,
      },
    });
  });

  it("puts the server's refusal on the field it names", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
      "POST /api/jobs": apiError(422, "dataset_not_for_stage", "tiny_sft is not a pairwise dataset", "datasets[0]"),
    });
    const { user } = renderApp("/jobs/new");
    const model = await screen.findByLabelText("Base model");
    await waitFor(() => expect(within(model).getByRole("option", { name: /tiny-llama/ })).toBeInTheDocument());
    await user.selectOptions(model, "tiny-llama");
    await user.click(screen.getByRole("checkbox", { name: /tiny_sft/ }));
    await user.click(screen.getByRole("button", { name: "Start training" }));
    const group = await screen.findByRole("group", { name: "Datasets" });
    expect(group).toHaveAttribute("aria-invalid", "true");
    expect(group).toHaveAccessibleDescription(/tiny_sft is not a pairwise dataset/);
  });

  it("sends a retry of the same job with the same Idempotency-Key, so the server makes one job", async () => {
    signIn();
    let answered = 0;
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
      "POST /api/jobs": (call) =>
        call.query.get("dry_run") === "true"
          ? { status: 200, body: { kind: "train", config: {}, config_yaml: "stage: sft\n", stages: ["train"], estimate: {} } }
          : answered++ === 0
            ? apiError(503, "service_unavailable", "the scheduler service went away before answering; retry shortly")
            : { status: 201, body: DETAIL },
      "GET /api/jobs/job_aaa111": { status: 200, body: DETAIL },
    });
    const { user, current } = renderApp("/jobs/new");
    const model = await screen.findByLabelText("Base model");
    await waitFor(() => expect(within(model).getByRole("option", { name: /tiny-llama/ })).toBeInTheDocument());
    await user.selectOptions(model, "tiny-llama");
    await user.click(screen.getByRole("checkbox", { name: /tiny_sft/ }));
    await user.click(screen.getByRole("button", { name: "Start training" }));
    expect(await screen.findByText(/went away before answering/)).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Start training" }));
    await waitFor(() => expect(current()).toBe("/jobs/job_aaa111"));

    const submits = calls.filter((c) => c.method === "POST" && c.path === "/api/jobs" && !c.query.has("dry_run"));
    expect(submits).toHaveLength(2);
    expect(submits[0]?.headers["Idempotency-Key"]).toMatch(/^[0-9a-f]{32}$/);
    expect(submits[1]?.headers["Idempotency-Key"]).toBe(submits[0]?.headers["Idempotency-Key"]);
    const previews = calls.filter((c) => c.query.get("dry_run") === "true");
    expect(previews.every((c) => c.headers["Idempotency-Key"] === undefined)).toBe(true);
  });

  it("checks the form before sending, focusing the first problem", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
    });
    const { user } = renderApp("/jobs/new");
    await screen.findByLabelText("Base model");
    await user.clear(screen.getByLabelText("Learning rate"));
    await user.type(screen.getByLabelText("Learning rate"), "2");
    await user.click(screen.getByRole("button", { name: "Start training" }));
    expect(screen.getByLabelText("Base model")).toHaveFocus();
    expect(screen.getByLabelText("Learning rate")).toHaveAccessibleDescription(/Above 0, at most 1/);
    expect(calls.some((c) => c.method === "POST")).toBe(false);
  });

  it("explains the two stages of a quantised LoRA export", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/datasets": { status: 200, body: DATASETS },
    });
    const { user } = renderApp("/jobs/new?kind=export&model=my-adapter");
    expect(await screen.findByRole("heading", { level: 1, name: "New export" })).toBeInTheDocument();
    await waitFor(() => expect(screen.getByLabelText("Model")).toHaveValue("my-adapter"));
    expect(screen.getByText(/merged into its base into a new full model/)).toBeInTheDocument();
    await user.selectOptions(screen.getByLabelText("Quantisation"), "gptq");
    expect(screen.getByText(/runs in two stages/)).toBeInTheDocument();
  });
});
