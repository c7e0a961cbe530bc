import { act, render, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

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

/** A stand-in for the browser's WebSocket: the test opens, speaks and drops the feed itself. */
class FakeSocket {
  static last: FakeSocket | null = null;
  readyState = 0;
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: ((event: { code: number }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.last = this;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  send(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
  close() {
    this.readyState = 3;
  }
}

describe("the jobs list's OpenAI jobs", () => {
  it("tags a job created through OpenAI's fine-tuning API", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs": {
        status: 200,
        body: { items: [{ ...JOB, id: "job_oa", openai_id: "ftjob-abc" }, { ...JOB, id: "job_ours" }], next_cursor: null },
      },
    });
    renderApp("/jobs");
    const tagged = await screen.findByRole("row", { name: /job_oa/ });
    expect(within(tagged).getByText("OpenAI")).toHaveAttribute("title", "ftjob-abc");
    expect(within(screen.getByRole("row", { name: /job_ours/ })).queryByText("OpenAI")).not.toBeInTheDocument();
  });
});

describe("the jobs list, live", () => {
  const RUNNING = { ...JOB, id: "job_run", state: "running", wait_reason: null, queue_position: null, progress: { step: 2, total_steps: 10 } };

  it("moves a running job's bar with the feed's progress points, and asks again on a state change or a reconnection", async () => {
    vi.stubGlobal("WebSocket", FakeSocket);
    FakeSocket.last = null;
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs": { status: 200, body: { items: [RUNNING], next_cursor: null } },
      "POST /api/ws/tickets": { status: 201, body: { ticket: "tkt-feed", expires_in: 30 } },
    });
    renderApp("/jobs");
    const bar = within(await screen.findByRole("row", { name: /job_run/ })).getByRole("progressbar");
    expect(bar).toHaveAttribute("aria-valuenow", "2");
    await waitFor(() => expect(FakeSocket.last).not.toBeNull());
    const feed = FakeSocket.last!;
    expect(feed.url).toMatch(/\/api\/jobs\/feed\?ticket=tkt-feed$/);
    act(() => feed.open());
    const asked = () => calls.filter((call) => call.path === "/api/jobs").length;
    const before = asked();

    // A progress point: the bar moves in place, nothing is fetched.
    act(() => feed.send({ job_id: "job_run", state: "running", at: "2026-01-02T03:05:00Z", progress: { step: 7, total_steps: 10 } }));
    expect(within(screen.getByRole("row", { name: /job_run/ })).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "7");
    // Someone else's job or one on another page: nothing to do.
    act(() => feed.send({ job_id: "job_elsewhere", state: "running", at: "2026-01-02T03:05:00Z", progress: { step: 1, total_steps: 10 } }));
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(asked()).toBe(before);

    // A state change: the page is asked again.
    act(() => feed.send({ job_id: "job_run", state: "succeeded", at: "2026-01-02T03:06:00Z" }));
    await waitFor(() => expect(asked()).toBe(before + 1));

    // Back after a drop: what was sent meanwhile is lost, so the page is asked again.
    act(() => feed.drop());
    await waitFor(() => expect(FakeSocket.last).not.toBe(feed));
    act(() => FakeSocket.last!.open());
    await waitFor(() => expect(asked()).toBe(before + 2));
  });
});
