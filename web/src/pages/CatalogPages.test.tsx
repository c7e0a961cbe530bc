import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../test/fetchMock";
import { renderApp, signIn, USER } from "../test/render";
import { bestRun } from "./evals/ComparePage";
import { metricColumns } from "./evals/EvalsPage";
import { renderedTurns } from "./datasets/DatasetDetailPage";
import { descendantTree } from "./models/ModelDetailPage";
import type { LineageEntry } from "../api/catalog";

const RUN = (id: string, metrics: Record<string, number>) => ({
  id, state: "succeeded", model: "tiny-llama", evaluation: "generation", datasets: ["tiny_sft"], task: null, metrics,
  reason: null, created_at: "2026-01-02T03:04:05Z", finished_at: "2026-01-02T03:05:05Z",
});

describe("evaluations", () => {
  it("picks the metric columns people read first", () => {
    expect(metricColumns([{ metrics: { samples: 3, rouge_l: 1, bleu_4: 2, zeta: 1 } }, { metrics: { eval_loss: 1 } }])).toEqual(["eval_loss", "bleu_4", "rouge_l", "zeta"]);
  });

  it("knows which way is better", () => {
    expect(bestRun([2.1, 1.9, undefined], "eval_loss")).toBe(1);
    expect(bestRun([20, 30], "bleu_4")).toBe(1);
    expect(bestRun([20, undefined], "bleu_4")).toBe(-1);
  });

  it("lists runs with their metrics and compares the ones ticked", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/evals": { status: 200, body: { items: [RUN("job_e1", { bleu_4: 10 }), RUN("job_e2", { bleu_4: 12.5 })], next_cursor: null } },
      "GET /api/evals/compare": {
        status: 200,
        body: {
          runs: [RUN("job_e1", { bleu_4: 10 }), RUN("job_e2", { bleu_4: 12.5 })],
          metric_names: ["bleu_4"],
          samples: [{ index: 0, prompt: "2+2?", label: "4", predictions: ["5", "4"] }],
        },
      },
    });
    const { user, current } = renderApp("/evals");
    const row = await screen.findByRole("row", { name: /job_e2/ });
    expect(row).toHaveTextContent("12.5");
    expect(screen.getByRole("button", { name: "Compare (0)" })).toBeDisabled();
    await user.click(screen.getByRole("checkbox", { name: "Select job_e1 to compare" }));
    await user.click(screen.getByRole("checkbox", { name: "Select job_e2 to compare" }));
    await user.click(screen.getByRole("button", { name: "Compare (2)" }));
    expect(current()).toBe("/evals/compare?ids=job_e1,job_e2");
    const best = await screen.findByRole("cell", { name: /12\.5.*best/ });
    expect(best).toHaveClass("best");
    const samples = screen.getByRole("region", { name: "Same prompts, side by side" });
    expect(within(samples).getByText("2+2?")).toBeInTheDocument();
  });
});

describe("datasets", () => {
  it("turns a preview row into chat turns", () => {
    expect(renderedTurns({ system: "be brief", prompt: [{ role: "user", content: "hi" }], response: [{ role: "assistant", content: "yo" }] })).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "hi" },
      { role: "assistant", content: "yo" },
    ]);
    expect(renderedTurns({ prompt: [{ role: "user", content: "q" }], chosen: { role: "assistant", content: "a" }, rejected: { role: "assistant", content: "b" } }).map((t) => t.role)).toEqual(["user", "chosen", "rejected"]);
  });

  it("lists datasets and searches them on the server", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/datasets": (call) => ({
        status: 200,
        body: { items: [{ id: "d1", name: "tiny_sft", format: "alpaca", rows: 64, size_bytes: 2048, visibility: "public", remark: "", updated_at: "2026-01-02T03:04:05Z" }], total: 1, next_cursor: null, _: call },
      }),
    });
    const { user } = renderApp("/datasets");
    expect(await screen.findByRole("row", { name: /tiny_sft/ })).toHaveTextContent("2 KB");
    await user.type(screen.getByLabelText("Search by name"), "tiny");
    await waitFor(() => expect(calls.filter((c) => c.path === "/api/datasets").length).toBeGreaterThan(1));
  });

  it("shows a refused upload row by row", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/datasets": { status: 200, body: { items: [], total: 0, next_cursor: null } },
    });
    // XMLHttpRequest is the upload's transport (for its progress events): answer it like the server would.
    const sent: FormData[] = [];
    class FakeXhr {
      status = 0; statusText = ""; responseText = ""; upload = { onprogress: null as null | ((e: ProgressEvent) => void) };
      onload: (() => void) | null = null; onerror: (() => void) | null = null; onabort: (() => void) | null = null;
      open() {}
      setRequestHeader() {}
      getResponseHeader() { return "application/json"; }
      abort() {}
      send(body: FormData) {
        sent.push(body);
        this.status = 422;
        this.responseText = JSON.stringify({ error: { code: "invalid_dataset", message: "1 of 2 rows do not fit the alpaca format: line 2: missing `output`", field: "file" } });
        setTimeout(() => this.onload?.(), 0);
      }
    }
    const original = window.XMLHttpRequest;
    window.XMLHttpRequest = FakeXhr as unknown as typeof XMLHttpRequest;
    try {
      const { user } = renderApp("/datasets");
      await user.click(await screen.findByRole("button", { name: "Upload a dataset" }));
      const form = screen.getByRole("region", { name: "Upload a dataset" });
      await user.type(within(form).getByLabelText("Name"), "bad");
      await user.upload(within(form).getByLabelText("Files"), new File(['{"instruction": "x"}\n'], "bad.jsonl"));
      await user.click(within(form).getByRole("button", { name: "Upload" }));
      const alert = await within(form).findByRole("alert");
      expect(alert).toHaveTextContent("1 of 2 rows do not fit the alpaca format");
      expect(within(alert).getByRole("listitem")).toHaveTextContent("line 2: missing `output`");
      expect(sent[0]?.get("name")).toBe("bad");
    } finally {
      window.XMLHttpRequest = original;
    }
  });
});

describe("models", () => {
  const entry = (id: string, parent: string | null): LineageEntry =>
    ({ id, name: id, kind: "lora", base_model_id: parent, depth: 1 }) as unknown as LineageEntry;

  it("builds the descendants tree from parent ids", () => {
    const tree = descendantTree("root", [entry("a", "root"), entry("b", "a"), entry("c", "root")]);
    expect(tree.map((n) => n.model.id)).toEqual(["a", "c"]);
    expect(tree[0]?.children.map((n) => n.model.id)).toEqual(["b"]);
  });

  it("shows a model's lineage and what it may be used for", async () => {
    signIn();
    const model = { id: "m2", name: "my-adapter", kind: "lora", source: "train", owner_id: "usr_1", base_model_id: "m1", base_model: "tiny-llama", usable_for: ["eval", "export"], datasets: ["tiny_sft"], details: {}, template: "default", path: "/x", hf_path: null, ms_path: null, size_bytes: 10, parameter_count: 100, job_id: "job_1", created_at: "2026-01-02T03:04:05Z" };
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models/m2/lineage": { status: 200, body: { model, ancestors: [{ ...model, id: "m1", name: "tiny-llama", kind: "base", depth: 1 }], descendants: [], descendants_truncated: false } },
    });
    renderApp("/models/m2");
    expect(await screen.findByRole("list", { name: "Derived from" })).toHaveTextContent("tiny-llama");
    expect(screen.queryByRole("link", { name: "Train from it" })).not.toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Export" })).toHaveAttribute("href", "/jobs/new?kind=export&model=my-adapter");
  });

  it("pages through the models by page number, with the total", async () => {
    signIn();
    const model = (id: string) => ({ id, name: id, kind: "base", source: "preset", base_model: null, parameter_count: 1000, size_bytes: 10, retired_at: null, created_at: "2026-01-02T03:04:05Z" });
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models": (call) =>
        call.query.get("page") === "2"
          ? { status: 200, body: { items: [model("second")], page: 2, limit: 25, total: 26, next_page: null } }
          : { status: 200, body: { items: [model("first")], page: 1, limit: 25, total: 26, next_page: 2 } },
    });
    const { user } = renderApp("/models?kind=base");
    expect(await screen.findByRole("row", { name: /first/ })).toHaveTextContent("Preset");
    expect(screen.getByText("Page 1 · 26 in all")).toBeInTheDocument();
    expect(screen.getByLabelText("Kind")).toHaveValue("base");
    await user.click(screen.getByRole("button", { name: "Next" }));
    expect(await screen.findByRole("row", { name: /second/ })).toBeInTheDocument();
    expect(calls.at(-1)?.query.get("kind")).toBe("base");
    expect(screen.getByRole("button", { name: "Next" })).toBeDisabled();
    await user.click(screen.getByRole("button", { name: "Previous" }));
    expect(await screen.findByRole("row", { name: /first/ })).toBeInTheDocument();
  });

  it("says when the models cannot be loaded", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER }, "GET /api/models": apiError(503, "service_unavailable", "registry is down") });
    renderApp("/models");
    expect(await screen.findByRole("alert")).toHaveTextContent("registry is down");
  });
});
