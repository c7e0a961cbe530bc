import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { renderApp, signIn, USER } from "../../test/render";

const JOB = {
  id: "job_x1", kind: "export", state: "succeeded", priority: 0, gpu_count: 0, base_model: "my-adapter", agent_id: "vm",
  reason: null, wait_reason: null, progress: null, created_at: "2026-01-02T03:04:05Z", started_at: null, finished_at: null,
};
const MADE = { id: "m9", name: "my-adapter-gptq", kind: "quantized", source: "export", job_id: "job_x1", usable_for: ["eval", "deploy"], retired_at: null };

describe("ExportsPage", () => {
  it("lists export jobs with the model each made, to download or deploy; says when a download fails", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs": { status: 200, body: { items: [JOB, { ...JOB, id: "job_x2", state: "failed", reason: "out_of_memory" }], next_cursor: null } },
      "GET /api/models": { status: 200, body: { items: [MADE], page: 1, limit: 200, total: 1, next_page: null } },
      "GET /api/jobs/job_x1/artifacts": apiError(404, "not_found", "the files are gone"),
    });
    const { user } = renderApp("/exports");

    const row = await screen.findByRole("row", { name: /job_x1/ });
    expect(within(row).getByRole("link", { name: "job_x1" })).toHaveAttribute("href", "/jobs/job_x1");
    expect(await within(row).findByRole("link", { name: "my-adapter-gptq" })).toHaveAttribute("href", "/models/m9");
    expect(within(row).getByRole("link", { name: "Deploy my-adapter-gptq" })).toHaveAttribute("href", "/playground?model=my-adapter-gptq");
    const failed = screen.getByRole("row", { name: /job_x2/ });
    expect(failed).toHaveTextContent("out_of_memory");
    expect(within(failed).queryByRole("button")).not.toBeInTheDocument();

    await user.click(within(row).getByRole("button", { name: "Download the files of job_x1" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("the files are gone");
  });

  it("invites a first export", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs": { status: 200, body: { items: [], next_cursor: null } },
      "GET /api/models": { status: 200, body: { items: [], page: 1, limit: 200, total: 0, next_page: null } },
    });
    renderApp("/exports");
    expect(await screen.findByText("No exports yet.")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Export a model" })).toHaveAttribute("href", "/jobs/new?kind=export");
  });
});
