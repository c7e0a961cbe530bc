import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { renderApp, signIn, USER } from "../../test/render";

vi.mock("../../components/LogTerminal", () => ({ default: ({ label }: { label: string }) => <div role="log" aria-label={label} /> }));
vi.mock("../../components/LineChart", () => ({ default: ({ title }: { title: string }) => <figure aria-label={title} /> }));

const JOB = {
  id: "job_ddd444", kind: "train", state: "running", priority: 0, gpu_count: 1, base_model: "tiny-llama", agent_id: "vm",
  reason: "started", wait_reason: null, progress: null, created_at: "2026-01-02T03:04:05Z", started_at: null,
  finished_at: null, owner_id: "usr_1", message: null, request: { kind: "train" }, config: {}, config_yaml: "stage: sft\n",
  estimate: {}, gpu_ids: [], metrics: null, cancel_requested: false, requeues: 0, queue_position: null, resume_step: null,
  history: [], progress_series: [],
  checkpoints: [
    { step: 20, saved_at: "2026-01-02T03:06:05Z", train_loss: 1.25, valid_loss: null, epoch: 2 },
    { step: 10, saved_at: "2026-01-02T03:05:35Z", train_loss: 1.5, valid_loss: 1.75, epoch: 1 },
  ],
};
const JOB_URL = "/api/jobs/job_ddd444";
const MODEL = {
  id: "mdl_10", name: "tiny-llama-sft-step10-ddd444", kind: "lora", source: "train", owner_id: "usr_1", owner: "ada",
  base_model_id: "mdl_base", base_model: "tiny-llama", path: "/out/checkpoint-10", hf_path: null, ms_path: null,
  visibility: "private", size_bytes: 10, parameter_count: 1000, template: "default", job_id: "job_ddd444", datasets: [],
  details: { checkpoint_step: 10 }, remark: null, retired_at: null, created_at: "2026-01-02T03:07:00Z",
  updated_at: "2026-01-02T03:07:00Z", usable_for: ["eval", "export", "deploy"],
};
const page = (items: unknown[]) => ({ items, page: 1, limit: 200, total: items.length, next_page: null });

describe("a training job's checkpoints", () => {
  it("deploys one: registered as a model, then the playground opens with it", async () => {
    signIn();
    const registered = { ...MODEL, id: "mdl_20", name: "tiny-llama-sft-step20-ddd444", details: { checkpoint_step: 20 } };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: JOB },
      "GET /api/models": { status: 200, body: page([MODEL]) },
      "POST /api/models/checkpoints": { status: 201, body: registered },
    });
    const { user, current } = renderApp("/jobs/job_ddd444");

    const table = await screen.findByRole("region", { name: "Checkpoints" });
    // Step 10 is registered already: its model is linked beside the button.
    expect(await within(table).findByRole("link", { name: MODEL.name })).toHaveAttribute("href", "/models/mdl_10");
    expect(calls.find((c) => c.path === "/api/models")?.query.get("job")).toBe("job_ddd444");

    await user.click(within(table).getByRole("button", { name: "Deploy checkpoint 20" }));
    await waitFor(() => expect(current()).toBe(`/playground?model=${registered.name}`));
    const posted = calls.filter((c) => c.method === "POST" && c.path === "/api/models/checkpoints");
    expect(posted.map((c) => c.body)).toEqual([{ job_id: "job_ddd444", step: 20 }]);
  });

  it("says why a checkpoint could not be registered", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: JOB },
      "GET /api/models": { status: 200, body: page([]) },
      "POST /api/models/checkpoints": apiError(404, "checkpoint_not_found", "job job_ddd444 keeps no checkpoint at step 20: it keeps step 10", "step"),
    });
    const { user, current } = renderApp("/jobs/job_ddd444");

    await user.click(await screen.findByRole("button", { name: "Deploy checkpoint 20" }));
    expect(await screen.findByText(/keeps no checkpoint at step 20: it keeps step 10/)).toBeInTheDocument();
    expect(current()).toBe("/jobs/job_ddd444");
  });

  it("offers no deploy on someone else's job (an admin's view)", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      [`GET ${JOB_URL}`]: { status: 200, body: { ...JOB, owner_id: "usr_9" } },
    });
    renderApp("/jobs/job_ddd444");

    const table = await screen.findByRole("region", { name: "Checkpoints" });
    expect(within(table).getAllByRole("row")).toHaveLength(3);
    expect(within(table).queryByRole("button")).not.toBeInTheDocument();
    expect(calls.some((c) => c.path === "/api/models")).toBe(false);
  });
});
