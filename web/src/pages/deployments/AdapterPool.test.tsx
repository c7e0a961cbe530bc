import { act, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { apiError, eventStream, json, mockFetch } from "../../test/fetchMock";
import { renderApp, signIn, USER } from "../../test/render";

const GENERATION = { temperature: 0.7, top_p: 0.9, top_k: 50, max_new_tokens: 16, repetition_penalty: 1, do_sample: true };
const LOAD = {
  running: 2,
  waiting: 5,
  kv_cache_pct: 37.6,
  adapters: [
    { name: "my-adapter", loaded_at: "2026-01-02T03:05:00Z", last_used_at: "2026-01-02T03:06:00Z", requests: 3 },
    { name: "shared-tone", loaded_at: "2026-01-02T03:04:30Z", last_used_at: "2026-01-02T03:07:00Z", requests: 12 },
  ],
};
const USAGE = [
  { user: "ada", adapter: null, requests: 2, prompt_tokens: 40, completion_tokens: 12, last_request_at: "2026-01-02T03:05:30Z" },
  { user: "ada", adapter: "my-adapter", requests: 3, prompt_tokens: 1234, completion_tokens: 56789, last_request_at: "2026-01-02T03:06:00Z" },
];
const dep = (extra: Record<string, unknown> = {}) => ({
  id: "dep_aaa", model: "tiny-llama", state: "ready", reason: null, message: null, generation: GENERATION, gpu_count: 0,
  idle_timeout_s: 300, idle_seconds_left: 120, requests_served: 5, tokens_generated: 400, created_at: "2026-01-02T03:04:05Z",
  ready_at: "2026-01-02T03:04:25Z", last_request_at: null, finished_at: null, uptime_s: 65, agent_id: "cpu-1",
  engine: "vllm", adapter_slots: 4, max_in_flight: 16, max_queue: 64, load: LOAD, usage: USAGE, ...extra,
});
const ADAPTERS = [
  { name: "my-adapter", owner: "ada", loaded: true },
  { name: "shared-tone", owner: "bob", loaded: false },
];
const page = (...items: unknown[]) => ({ status: 200, body: { items, next_cursor: null } });
const chunk = (content: string, model: string) =>
  `data: ${JSON.stringify({ object: "chat.completion.chunk", model, choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;

afterEach(() => {
  vi.useRealTimers();
});

describe("the playground on a deployment that pools adapters", () => {
  it("chats with the base model or any adapter on it, turn by turn, and says which one answered", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(dep()),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep() },
      "GET /api/deployments/dep_aaa/adapters": { status: 200, body: ADAPTERS },
      "POST /api/deployments/dep_aaa/chat": (call) => {
        const adapter = (call.body as { adapter?: string }).adapter;
        return eventStream([chunk(adapter ? "Bon" : "Hel", adapter ?? "dep_aaa"), chunk(adapter ? "jour" : "lo", adapter ?? "dep_aaa"), "data: [DONE]\n\n"]);
      },
    });
    const { user, current } = renderApp("/playground?deployment=dep_aaa");

    const picker = await screen.findByLabelText("Answer with");
    expect(picker).toHaveValue("");
    await screen.findByRole("option", { name: "shared-tone · by bob · loaded" });
    expect(within(picker).getAllByRole("option").map((o) => o.textContent)).toEqual([
      "tiny-llama (deployed model)",
      "my-adapter · loaded", // one's own adapter: no owner shown
      "shared-tone · by bob · loaded", // the engine reports it held (load.adapters), even if the list said not
    ]);

    await user.selectOptions(picker, "my-adapter");
    expect(current()).toBe("/playground?deployment=dep_aaa&adapter=my-adapter");
    expect(screen.getByTestId("api-snippet")).toHaveTextContent('model="my-adapter"');
    await user.type(screen.getByRole("textbox", { name: "Message" }), "Greet me{Enter}");
    const log = screen.getByRole("log", { name: "Conversation" });
    await waitFor(() => expect(log).toHaveTextContent("Answered by my-adapterBonjour"));
    const chats = () => calls.filter((c) => c.path.endsWith("/chat"));
    expect(chats()[0]!.body).toMatchObject({ adapter: "my-adapter", messages: [{ role: "user", content: "Greet me" }] });

    await user.selectOptions(picker, "");
    expect(current()).toBe("/playground?deployment=dep_aaa");
    await user.type(screen.getByRole("textbox", { name: "Message" }), "Again{Enter}");
    await waitFor(() => expect(log).toHaveTextContent("Answered by tiny-llamaHello"));
    expect(chats()[1]!.body).not.toHaveProperty("adapter");
    // The conversation goes as roles and contents only; who answered stays in the browser.
    expect((chats()[1]!.body as { messages: unknown[] }).messages[1]).toEqual({ role: "assistant", content: "Bonjour" });
    // After a turn the list is asked again (an adapter loads on first use; one trained meanwhile appears).
    expect(calls.filter((c) => c.path.endsWith("/adapters")).length).toBeGreaterThanOrEqual(2);
  });

  it("opens on an adapter named in the link, and keeps one that is no longer offered visible", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(dep()),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep() },
      "GET /api/deployments/dep_aaa/adapters": { status: 200, body: ADAPTERS },
      "POST /api/deployments/dep_aaa/chat": apiError(404, "model_not_found", "The model 'gone' does not exist or is not yours", "adapter"),
    });
    const { user } = renderApp("/playground?deployment=dep_aaa&adapter=gone");
    await screen.findByRole("option", { name: "gone (not available)" });
    expect(screen.getByLabelText("Answer with")).toHaveValue("gone");
    await user.type(screen.getByRole("textbox", { name: "Message" }), "hi{Enter}");
    expect(await screen.findByRole("alert")).toHaveTextContent("does not exist or is not yours");
    expect(calls.find((c) => c.path.endsWith("/chat"))!.body).toMatchObject({ adapter: "gone" });
  });

  it("offers no adapters on LLaMA-Factory's server, and never sends one there", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep({ engine: "llamafactory", adapter_slots: 4, max_in_flight: 1, load: { running: 0, waiting: 0, kv_cache_pct: null, adapters: [] } }) },
      "POST /api/deployments/dep_aaa/chat": () => eventStream([chunk("Hi", "gpt-3.5-turbo"), "data: [DONE]\n\n"]),
    });
    const { user } = renderApp("/playground?deployment=dep_aaa&adapter=my-adapter");
    expect(await screen.findByText(/answers with this model only/)).toBeInTheDocument();
    expect(screen.queryByLabelText("Answer with")).not.toBeInTheDocument();
    expect(screen.getByText("LLaMA-Factory's server", { selector: ".badge--engine" })).toBeInTheDocument();
    expect(screen.queryByText("Adapter slots")).not.toBeInTheDocument();
    expect(screen.getByText("not reported by this engine")).toBeInTheDocument();
    await user.type(screen.getByRole("textbox", { name: "Message" }), "hi{Enter}");
    await waitFor(() => expect(screen.getByRole("log", { name: "Conversation" })).toHaveTextContent("Answered by tiny-llamaHi"));
    expect(calls.find((c) => c.path.endsWith("/chat"))!.body).not.toHaveProperty("adapter");
    expect(calls.some((c) => c.path.endsWith("/adapters"))).toBe(false);
  });

  it("says the deployment is busy and when to retry (429), giving the message back", async () => {
    signIn();
    let full = true;
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(dep()),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep() },
      "GET /api/deployments/dep_aaa/adapters": { status: 200, body: ADAPTERS },
      "POST /api/deployments/dep_aaa/chat": () =>
        full
          ? new Response(JSON.stringify({ error: { code: "rate_limit_exceeded", message: "dep_aaa is busy", field: null } }), {
              status: 429,
              headers: { "Content-Type": "application/json", "Retry-After": "1" },
            })
          : eventStream([chunk("Done", "dep_aaa"), "data: [DONE]\n\n"]),
    });
    const { user } = renderApp("/playground?deployment=dep_aaa");
    const box = await screen.findByRole("textbox", { name: "Message" });
    await user.type(box, "Are you there?{Enter}");

    expect(await screen.findByTestId("chat-busy")).toHaveTextContent("The deployment is busy: retry in 1 s.");
    expect(box).toHaveValue("Are you there?");
    expect(screen.getByRole("log", { name: "Conversation" })).not.toHaveTextContent("Are you there?");
    expect(screen.getByRole("button", { name: "Send" })).toBeDisabled();
    expect(screen.getByText("The deployment is busy: retry in 1 s.", { selector: "[role=status]" })).toBeInTheDocument();

    await waitFor(() => expect(screen.getByTestId("chat-busy")).toHaveTextContent("you can retry now"), { timeout: 2500 });
    full = false;
    await user.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(screen.getByRole("log", { name: "Conversation" })).toHaveTextContent("Are you there?"));
    await waitFor(() => expect(screen.getByRole("log", { name: "Conversation" })).toHaveTextContent("Done"));
    expect(screen.queryByTestId("chat-busy")).not.toBeInTheDocument();
    expect(calls.filter((c) => c.path.endsWith("/chat"))).toHaveLength(2);
  });
});

describe("the deployment's serving state", () => {
  it("shows the engine, its load, the adapters it holds, usage by user and model, and the limits", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(dep()),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep() },
      "GET /api/deployments/dep_aaa/adapters": { status: 200, body: ADAPTERS },
    });
    renderApp("/playground?deployment=dep_aaa");

    expect(await screen.findByTestId("engine-load")).toHaveTextContent("2 running · 5 waiting");
    expect(screen.getByText("vLLM", { selector: ".badge--engine" })).toBeInTheDocument();
    expect(document.querySelectorAll(".deployment .pill")).toHaveLength(1); // the state's: the browser tests read it so
    const kv = screen.getByRole("meter", { name: "KV cache" });
    expect(kv).toHaveAttribute("aria-valuenow", "38");
    expect(screen.getByText("38% in use")).toBeInTheDocument();
    expect(screen.getByText("16 at once · 64 queued")).toBeInTheDocument();
    expect(screen.getByText("Adapter slots").nextElementSibling).toHaveTextContent("4");

    const held = screen.getByRole("region", { name: "Adapters loaded" });
    const rows = within(held).getAllByRole("row").slice(1);
    expect(rows.map((r) => within(r).getByRole("rowheader").textContent)).toEqual(["shared-tone", "my-adapter"]); // most recently used first
    expect(rows[0]).toHaveTextContent("12");
    expect(screen.getByText("2 of 4 slots in use", { exact: false })).toBeInTheDocument();

    const usage = screen.getByRole("region", { name: "Usage by user and model" });
    const adapterRow = within(usage).getByRole("row", { name: /my-adapter/ });
    expect(within(adapterRow).getAllByRole("cell").map((c) => c.textContent)).toEqual(["ada", "3", "1,234", "56,789", expect.any(String)]);
    expect(within(usage).getByRole("rowheader", { name: "tiny-llama (deployed model)" })).toBeInTheDocument();
  });

  it("refreshes the load while the page is open", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    signIn();
    let load = LOAD;
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(dep()),
      "GET /api/deployments/dep_aaa": () => json(200, dep({ load })),
      "GET /api/deployments/dep_aaa/adapters": { status: 200, body: ADAPTERS },
    });
    renderApp("/playground?deployment=dep_aaa");
    expect(await screen.findByTestId("engine-load")).toHaveTextContent("2 running · 5 waiting");
    const before = calls.filter((c) => c.path === "/api/deployments/dep_aaa").length;
    load = { ...LOAD, running: 0, waiting: 0, kv_cache_pct: 0 };
    await act(async () => {
      await vi.advanceTimersByTimeAsync(5000);
    });
    await waitFor(() => expect(screen.getByTestId("engine-load")).toHaveTextContent("0 running · 0 waiting"));
    expect(calls.filter((c) => c.path === "/api/deployments/dep_aaa").length).toBeGreaterThan(before);
    expect(screen.getByRole("meter", { name: "KV cache" })).toHaveAttribute("aria-valuenow", "0");
  });

  it("says the engine is chosen when it starts, and shows nothing of serving before", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(),
      "GET /api/deployments/dep_aaa": { status: 200, body: dep({ state: "starting", engine: null, load: null, usage: [], ready_at: null, idle_seconds_left: null }) },
    });
    renderApp("/playground?deployment=dep_aaa");
    expect(await screen.findByText("chosen when it starts")).toBeInTheDocument();
    expect(screen.queryByRole("heading", { name: "Adapters and usage" })).not.toBeInTheDocument();
    expect(screen.queryByTestId("engine-load")).not.toBeInTheDocument();
  });
});

describe("the deploy form's engine and serving limits", () => {
  const MODELS = {
    items: [{ id: "m1", name: "tiny-llama", kind: "base", source: "preset", usable_for: ["train", "eval", "export", "deploy"], retired_at: null, template: "default", parameter_count: 1000 }],
    page: 1, limit: 200, total: 1, next_page: null,
  };
  const FLEET = { summary: { agents_online: 1, gpus: [], cpu_slots_total: 2, cpu_slots_free: 2 } };

  it("deploys on the engine chosen, with the limits changed, and shows each refusal under its field", async () => {
    signIn();
    const answers = [
      apiError(422, "engine_unavailable", "no agent online has vLLM: choose auto or llamafactory", "engine"),
      apiError(422, "invalid_field", "Expected `int` >= 64", "max_model_len"),
      { status: 201, body: dep({ state: "queued", engine: null, load: null, usage: [], ready_at: null, idle_seconds_left: null }) },
    ];
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/deployments": page(),
      "GET /api/models": { status: 200, body: MODELS },
      "GET /api/agents": { status: 200, body: FLEET },
      "POST /api/deployments": () => answers.shift()!,
      "GET /api/deployments/dep_aaa": { status: 200, body: dep({ state: "queued", engine: null, load: null, usage: [], ready_at: null, idle_seconds_left: null }) },
    });
    const { user, current } = renderApp("/playground?model=tiny-llama");
    const engine = await screen.findByLabelText("Serving engine");
    expect(engine).toHaveValue("auto");
    expect(engine).toHaveAccessibleDescription(/serves every adapter of the model without a redeploy/);
    await screen.findByRole("option", { name: /tiny-llama/ });

    await user.selectOptions(engine, "vllm");
    await user.click(screen.getByText("Serving limits (advanced)"));
    const slots = screen.getByLabelText("Adapter slots");
    expect(slots).toHaveValue("4");
    await user.clear(slots);
    await user.type(slots, "100");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(slots).toHaveAccessibleDescription(/Between 1 and 64/);
    expect(calls.some((c) => c.method === "POST")).toBe(false);

    await user.clear(slots);
    await user.type(slots, "8");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    await waitFor(() => expect(engine).toHaveAccessibleDescription(/no agent online has vLLM/));
    const posts = () => calls.filter((c) => c.method === "POST");
    expect(posts()[0]!.body).toEqual({
      model: "tiny-llama", engine: "vllm", gpu_count: 0, adapter_slots: 8,
      generation: { temperature: 0.95, top_p: 0.7, top_k: 50, max_new_tokens: 512, repetition_penalty: 1, do_sample: true },
    });

    // A refusal of a field in a folded section unfolds it.
    await user.selectOptions(engine, "auto");
    await user.type(screen.getByLabelText("Context length (tokens)"), "64");
    await user.click(screen.getByText("Serving limits (advanced)"));
    expect(slots.closest("details")).not.toHaveAttribute("open");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    await waitFor(() => expect(screen.getByLabelText("Context length (tokens)")).toHaveAccessibleDescription(/Expected `int` >= 64/));
    expect(slots.closest("details")).toHaveAttribute("open");
    expect(posts()[1]!.body).toMatchObject({ adapter_slots: 8, max_model_len: 64 });
    expect(posts()[1]!.body).not.toHaveProperty("engine"); // auto: the platform's default

    await user.click(screen.getByRole("button", { name: "Deploy" }));
    await waitFor(() => expect(current()).toBe("/playground?deployment=dep_aaa"));
  });
});
