import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { apiError, eventStream, mockFetch } from "../../test/fetchMock";
import { ADMIN, renderApp, signIn, USER } from "../../test/render";

vi.mock("../../components/LineChart", () => ({
  default: ({ title, x }: { title: string; x: number[] }) => <figure aria-label={title} data-points={x.length} />,
}));

const MODELS = {
  items: [
    { id: "m1", name: "tiny-llama", kind: "base", source: "preset", usable_for: ["train", "eval", "export", "deploy"], retired_at: null, template: "default", parameter_count: 1000 },
    { id: "m2", name: "my-adapter", kind: "lora", source: "train", usable_for: ["eval", "export", "deploy"], retired_at: null, template: "default", parameter_count: 1000 },
    { id: "m3", name: "not-mine", kind: "lora", source: "train", usable_for: [], retired_at: null, template: "default", parameter_count: 1000 },
  ],
  page: 1, limit: 200, total: 3, next_page: null,
};
const FLEET = { summary: { agents_online: 1, gpus: [], cpu_slots_total: 2, cpu_slots_free: 2 } };
const GENERATION = { temperature: 0.7, top_p: 0.9, top_k: 50, max_new_tokens: 16, repetition_penalty: 1, do_sample: true };
const dep = (extra: Record<string, unknown> = {}) => ({
  id: "dep_aaa", model: "tiny-llama", state: "ready", reason: null, message: null, generation: GENERATION, gpu_count: 0,
  idle_timeout_s: 300, idle_seconds_left: 120, requests_served: 2, tokens_generated: 40, created_at: "2026-01-02T03:04:05Z",
  ready_at: "2026-01-02T03:04:25Z", last_request_at: null, finished_at: null, uptime_s: 65, ...extra,
});
const page = (...items: unknown[]) => ({ status: 200, body: { items, next_cursor: null } });
const chunk = (content: string) => `data: ${JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;

describe("PlaygroundPage", () => {
  it("deploys the chosen model with its settings and shows it starting", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(),
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/agents": { status: 200, body: FLEET },
      "POST /api/deployments": { status: 201, body: dep({ state: "queued", idle_seconds_left: null, ready_at: null }) },
      "GET /api/deployments/dep_aaa": { status: 200, body: dep({ state: "starting", idle_seconds_left: null, ready_at: null }) },
    });
    const { user, current } = renderApp("/playground?model=my-adapter");

    await screen.findByRole("option", { name: /my-adapter/ });
    const model = screen.getByLabelText("Model");
    expect(model).toHaveValue("my-adapter");
    expect(within(model).queryByRole("option", { name: /not-mine/ })).not.toBeInTheDocument();
    expect(screen.getByLabelText("GPUs")).toHaveValue("0"); // no GPU in the fleet
    expect(screen.getByText("Deploy a model to chat with it here.")).toBeInTheDocument();

    await user.click(screen.getByText("Generation defaults"));
    await user.clear(screen.getByLabelText("Temperature"));
    await user.type(screen.getByLabelText("Temperature"), "5");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(screen.getByLabelText("Temperature")).toHaveAccessibleDescription(/Between 0 and 2/);
    expect(calls.some((c) => c.method === "POST")).toBe(false);

    await user.clear(screen.getByLabelText("Temperature"));
    await user.type(screen.getByLabelText("Temperature"), "0.4");
    await user.type(screen.getByLabelText("Stop after idle (seconds)"), "600");
    await user.click(screen.getByRole("button", { name: "Deploy" }));

    expect(await screen.findByText("Loading the model and starting its server. This can take a few minutes.")).toBeInTheDocument();
    expect(current()).toBe("/playground?deployment=dep_aaa");
    const post = calls.find((c) => c.method === "POST")!;
    expect(post.body).toEqual({
      model: "my-adapter", gpu_count: 0, idle_timeout_s: 600,
      generation: { temperature: 0.4, top_p: 0.7, top_k: 50, max_new_tokens: 512, repetition_penalty: 1, do_sample: true },
    });
    expect(screen.getByRole("textbox", { name: "Message" })).toBeDisabled();
  });

  it("shows the deployment that holds the limit, and stops it", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(dep()),
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/agents": { status: 200, body: FLEET },
      "POST /api/deployments": apiError(409, "deployment_limit", "you may have 1 active deployment(s) and have: dep_aaa (tiny-llama, ready)."),
      "POST /api/deployments/dep_aaa/stop": { status: 202, body: dep({ state: "stopping" }) },
    });
    const { user } = renderApp("/playground?new=1");
    await screen.findByRole("option", { name: /tiny-llama/ });
    await user.selectOptions(screen.getByLabelText("Model"), "tiny-llama");
    await user.click(screen.getByRole("button", { name: "Deploy" }));

    const notice = await screen.findByText("You already have as many running deployments as you may.");
    const box = notice.closest(".alert") as HTMLElement;
    expect(box).toHaveTextContent("dep_aaa");
    await user.click(within(box).getByRole("button", { name: "Stop deployment dep_aaa" }));
    await waitFor(() => expect(calls.some((c) => c.method === "POST" && c.path === "/api/deployments/dep_aaa/stop")).toBe(true));
  });

  it("streams the answer, keeps the conversation in the browser, and counts the idle time down", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(dep()),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep() },
      "POST /api/deployments/dep_aaa/chat": () => eventStream([chunk("Otta"), chunk("wa."), "data: [DONE]\n\n"]),
    });
    const { user } = renderApp("/playground");

    expect(await screen.findByText("Stops when idle in 2:00.")).toBeInTheDocument();
    expect(screen.getByTestId("api-snippet")).toHaveTextContent('model="dep_aaa"');
    expect(screen.getByTestId("api-snippet")).toHaveTextContent(`base_url="${window.location.origin}/v1"`);

    await user.click(screen.getByText("Generation settings"));
    await user.clear(screen.getByLabelText("Max tokens"));
    await user.type(screen.getByLabelText("Max tokens"), "8");
    await user.type(screen.getByRole("textbox", { name: "Message" }), "Capital of Canada?{Enter}");

    const log = screen.getByRole("log", { name: "Conversation" });
    await waitFor(() => expect(log).toHaveTextContent("Ottawa."));
    expect(log).toHaveTextContent("Capital of Canada?");
    expect(calls.find((c) => c.path.endsWith("/chat"))!.body).toEqual({
      messages: [{ role: "user", content: "Capital of Canada?" }], temperature: 0.7, top_p: 0.9, max_tokens: 8, stream: true,
    });
    await waitFor(() =>
      expect(JSON.parse(window.localStorage.getItem("llmct.chat.dep_aaa") ?? "{}").messages).toEqual([
        { role: "user", content: "Capital of Canada?" },
        { role: "assistant", content: "Ottawa.", model: "tiny-llama" },
      ]),
    );

    await user.click(screen.getByRole("button", { name: "Clear conversation" }));
    expect(log).not.toHaveTextContent("Ottawa.");
    expect(window.localStorage.getItem("llmct.chat.dep_aaa")).toBeNull();
  });

  it("shows why a deployment failed, with the server's last lines", async () => {
    signIn();
    window.localStorage.setItem("llmct.chat.dep_aaa", JSON.stringify({ messages: [{ role: "user", content: "earlier question" }], updated: 1 }));
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep({ state: "failed", reason: "out_of_memory", message: "last log lines:\nCUDA out of memory", idle_seconds_left: null }) },
    });
    renderApp("/playground?deployment=dep_aaa");
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The deployment failed: out_of_memory");
    expect(alert).toHaveTextContent("CUDA out of memory");
    expect(screen.getByRole("log", { name: "Conversation" })).toHaveTextContent("earlier question");
    expect(screen.getByRole("button", { name: "Deploy again" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Stop" })).not.toBeInTheDocument();
  });
});

describe("DeploymentsPage", () => {
  it("shows admins every deployment with owner, agent and GPU memory, and lets them stop one", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/deployments": page(
        dep({ owner: "ada", agent_id: "gpu-host-1", gpu_memory_mb: 6144, last_request_at: "2026-01-02T03:05:00Z" }),
        dep({ id: "dep_bbb", state: "stopped", reason: "idle_timeout", owner: "bob", agent_id: "gpu-host-2", gpu_memory_mb: 0 }),
      ),
      "POST /api/deployments/dep_aaa/stop": { status: 202, body: dep({ state: "stopping" }) },
    });
    const { user } = renderApp("/deployments");
    const row = await screen.findByRole("row", { name: /dep_aaa/ });
    expect(row).toHaveTextContent("ada");
    expect(row).toHaveTextContent("gpu-host-1");
    expect(row).toHaveTextContent("6.1K MB");
    expect(row).toHaveTextContent("1:05");
    expect(screen.getByRole("row", { name: /dep_bbb/ })).toHaveTextContent("idle for too long");
    expect(within(screen.getByRole("row", { name: /dep_bbb/ })).queryByRole("button", { name: /Stop/ })).not.toBeInTheDocument();
    await user.click(within(row).getByRole("button", { name: "Stop deployment dep_aaa" }));
    await waitFor(() => expect(calls.some((c) => c.path === "/api/deployments/dep_aaa/stop")).toBe(true));
  });

  it("shows a user's own deployments, and only the running ones when asked (kept in the URL)", async () => {
    signIn();
    const { calls } = mockFetch({ "GET /api/auth/me": { status: 200, body: USER }, "GET /api/deployments": page(dep({ requests_served: 7 })) });
    const { user, current } = renderApp("/deployments");
    const row = await screen.findByRole("row", { name: /dep_aaa/ });
    // The browser tests read "requests served" as the second number cell of a user's row.
    expect(row.querySelectorAll("td.num")[1]).toHaveTextContent("7");
    expect(screen.queryByRole("columnheader", { name: "Owner" })).not.toBeInTheDocument();

    await user.selectOptions(screen.getByLabelText("Show"), "active");
    expect(current()).toBe("/deployments?show=active");
    await waitFor(() => expect(calls.at(-1)?.query.get("active")).toBe("true"));
  });

  it("invites a first deployment", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER }, "GET /api/deployments": page() });
    renderApp("/deployments");
    expect(await screen.findByText("No deployments yet.")).toBeInTheDocument();
    expect(screen.queryByRole("columnheader", { name: "Owner" })).not.toBeInTheDocument();
  });
});
