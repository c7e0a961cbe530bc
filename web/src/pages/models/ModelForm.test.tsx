import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { ADMIN, renderApp, signIn, USER } from "../../test/render";

const BASE = {
  id: "m1", name: "qwen-small", kind: "base", source: "preset", owner_id: null, owner: null, base_model_id: null,
  base_model: null, usable_for: ["train", "eval", "export", "deploy"], datasets: [], details: {}, template: "qwen",
  path: null, hf_path: "Qwen/Qwen2.5-0.5B", ms_path: null, size_bytes: null, parameter_count: 494000000, job_id: null,
  remark: null, retired_at: null, visibility: "public", created_at: "2026-01-02T03:04:05Z", updated_at: "2026-01-02T03:04:05Z",
};
const ADAPTER = { ...BASE, id: "m2", name: "my-adapter", kind: "lora", source: "train", owner_id: USER.id, base_model_id: "m1", base_model: "qwen-small", path: "/o/job_1", hf_path: null, job_id: "job_1" };
const lineageOf = (model: object) => ({ model, ancestors: [], descendants: [], descendants_truncated: false });

describe("editing models", () => {
  it("lets an owner rename and remark their model, and nothing else", async () => {
    signIn();
    let current: Record<string, unknown> = ADAPTER;
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/models/m2/lineage": () => ({ status: 200, body: lineageOf(current) }),
      "PATCH /api/models/m2": (call) => {
        current = { ...current, ...(call.body as object) };
        return { status: 200, body: current };
      },
    });
    const { user } = renderApp("/models/m2");

    await user.click(await screen.findByRole("button", { name: "Edit" }));
    const form = screen.getByRole("form", { name: "Edit my-adapter" });
    expect(within(form).queryByLabelText("ModelScope id")).not.toBeInTheDocument();
    await user.clear(within(form).getByLabelText("Name"));
    await user.type(within(form).getByLabelText("Name"), "adapter-v2");
    await user.type(within(form).getByLabelText("Remark"), "rank 8, 3 epochs");
    await user.click(within(form).getByRole("button", { name: "Save" }));

    expect(await screen.findByText("Saved.")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "PATCH")?.body).toEqual({ name: "adapter-v2", remark: "rank 8, 3 epochs" });
    await waitFor(() => expect(screen.getByRole("heading", { level: 1 })).toHaveTextContent("adapter-v2"));
  });

  it("lets an admin register a ModelScope preset, the server's refusal shown on its field first", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/models": { status: 200, body: { items: [BASE], page: 1, limit: 25, total: 1, next_page: null } },
      "POST /api/models": (call) => {
        const body = call.body as Record<string, unknown>;
        if (body.ms_path === "not an id") return apiError(422, "invalid_field", "Expected `str` matching a hub id", "ms_path");
        return { status: 201, body: { ...BASE, id: "m9", ...body } };
      },
      "GET /api/models/m9/lineage": { status: 200, body: lineageOf({ ...BASE, id: "m9", name: "qwen-ms", hf_path: null, ms_path: "qwen/Qwen2.5-0.5B" }) },
    });
    const { user, current } = renderApp("/models");

    await user.click(await screen.findByRole("button", { name: "Add a preset" }));
    const form = screen.getByRole("form", { name: "Add a preset model" });
    await user.type(within(form).getByLabelText("Name"), "qwen-ms");
    await user.type(within(form).getByLabelText("ModelScope id"), "not an id");
    await user.click(within(form).getByRole("button", { name: "Add preset" }));
    const ms = await within(form).findByLabelText("ModelScope id");
    await waitFor(() => expect(ms).toHaveAttribute("aria-invalid", "true"));
    expect(ms).toHaveAccessibleDescription(/matching a hub id/);

    await user.clear(ms);
    await user.type(ms, "qwen/Qwen2.5-0.5B");
    await user.click(within(form).getByRole("button", { name: "Add preset" }));
    await waitFor(() => expect(current()).toBe("/models/m9"));
    expect(calls.filter((c) => c.method === "POST").at(-1)?.body).toEqual({
      name: "qwen-ms", remark: null, hf_path: null, ms_path: "qwen/Qwen2.5-0.5B", path: null, parameter_count: null, template: "default",
    });
  });

  it("lets an admin retire a preset and change where it comes from", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/models/m1/lineage": { status: 200, body: lineageOf(BASE) },
      "PATCH /api/models/m1": { status: 200, body: { ...BASE, retired_at: "2026-01-03T00:00:00Z" } },
    });
    const { user } = renderApp("/models/m1");

    await user.click(await screen.findByRole("button", { name: "Edit" }));
    const form = screen.getByRole("form", { name: "Edit qwen-small" });
    await user.clear(within(form).getByLabelText("Hugging Face id"));
    await user.type(within(form).getByLabelText("Local folder on the agents"), "/models/qwen-small");
    await user.click(within(form).getByRole("checkbox", { name: /Retired/ }));
    await user.click(within(form).getByRole("button", { name: "Save" }));
    await screen.findByText("Saved.");
    expect(calls.find((c) => c.method === "PATCH")?.body).toEqual({ hf_path: null, path: "/models/qwen-small", retired: true });
  });
});
