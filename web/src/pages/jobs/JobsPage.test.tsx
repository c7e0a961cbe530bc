import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { JobStateCell } from "../../components/JobCells";
import { I18nProvider } from "../../i18n";
import { mockFetch } from "../../test/fetchMock";
import { renderApp, signIn, USER } from "../../test/render";

const GPUS = "waiting for 2 free GPU(s) with 900 MB each on an online agent";
const JOB = {
  id: "job_q1", kind: "train", state: "pending", priority: 0, gpu_count: 2, base_model: "tiny-llama", agent_id: null,
  reason: null, wait_reason: GPUS, queue_position: 2, progress: null,
  created_at: "2026-01-02T03:04:05Z", started_at: null, finished_at: null,
};

describe("the jobs list's queue", () => {
  it("shows where a pending job waits and why, in the scheduler's words", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs": {
        status: 200,
        body: {
          items: [
            JOB,
            { ...JOB, id: "job_q2", wait_reason: "waiting for your GPU quota: your jobs hold 1 of 1 GPU(s)", queue_position: 1 },
            { ...JOB, id: "job_q3", wait_reason: null, queue_position: 3 },
            { ...JOB, id: "job_run", state: "running", wait_reason: null, queue_position: null },
          ],
          next_cursor: null,
        },
      },
    });
    renderApp("/jobs");

    const row = await screen.findByRole("row", { name: /job_q1/ });
    const state = within(row).getByText("Queued").closest("td")!;
    expect(state).toHaveTextContent("#2 in queue");
    expect(state).toHaveTextContent(GPUS);
    expect(screen.getByRole("row", { name: /job_q2/ })).toHaveTextContent("#1 in queue");
    expect(screen.getByRole("row", { name: /job_q2/ })).toHaveTextContent("your jobs hold 1 of 1 GPU(s)");
    // Not looked at by the dispatcher yet: a place, no reason.
    expect(screen.getByRole("row", { name: /job_q3/ })).toHaveTextContent("#3 in queue");
    expect(screen.getByRole("row", { name: /job_run/ })).not.toHaveTextContent("in queue");
  });

  it("says it in Chinese too", () => {
    render(
      <I18nProvider lang="zh">
        <JobStateCell job={JOB} />
      </I18nProvider>,
    );
    expect(screen.getByText("队列第 2 位")).toBeInTheDocument();
  });
});
