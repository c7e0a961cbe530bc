import { describe, expect, it, vi } from "vitest";

import { apiError, eventStream, json, mockFetch } from "../test/fetchMock";
import { ApiError } from "./client";
import { streamChat } from "./deployments";

const chunk = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
const MESSAGES = [{ role: "user" as const, content: "hi" }];

describe("streamChat", () => {
  it("posts the conversation with the Bearer token and hands each piece over as it arrives", async () => {
    window.localStorage.setItem("llmct.access_token", "tok-1");
    const text = chunk("Ott") + chunk("awa") + chunk("", "stop") + "data: [DONE]\n\n";
    const { calls } = mockFetch({ "POST /api/deployments/dep_1/chat": () => eventStream([text.slice(0, 30), text.slice(30, 95), text.slice(95)]) });
    const pieces: string[] = [];
    const answer = await streamChat("dep_1", MESSAGES, { temperature: 0.2, max_tokens: 8 }, (p) => pieces.push(p));
    expect(pieces).toEqual(["Ott", "awa"]);
    expect(answer).toEqual({ content: "Ottawa", finishReason: "stop", model: null });
    expect(calls[0]!.headers.Authorization).toBe("Bearer tok-1");
    expect(calls[0]!.headers.Accept).toBe("text/event-stream");
    expect(calls[0]!.body).toEqual({ messages: MESSAGES, temperature: 0.2, max_tokens: 8, stream: true });
  });

  it("asks for an adapter of the deployment, sends only roles and contents, and says who answered", async () => {
    const named = (content: string) => `data: ${JSON.stringify({ model: "my-adapter", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
    const { calls } = mockFetch({ "POST /api/deployments/dep_1/chat": () => eventStream([named("Bon"), named("jour"), "data: [DONE]\n\n"]) });
    const history = [...MESSAGES, { role: "assistant" as const, content: "Hello", model: "tiny-llama" }, { role: "user" as const, content: "In French?" }];
    const answer = await streamChat("dep_1", history, { adapter: "my-adapter", max_tokens: 8 }, () => undefined);
    expect(answer).toEqual({ content: "Bonjour", finishReason: null, model: "my-adapter" });
    expect(calls[0]!.body).toEqual({
      messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "Hello" }, { role: "user", content: "In French?" }],
      adapter: "my-adapter",
      max_tokens: 8,
      stream: true,
    });
  });

  it("refuses with when to retry when the deployment is full (429 with Retry-After)", async () => {
    mockFetch({
      "POST /api/deployments/dep_1/chat": () =>
        new Response(JSON.stringify({ error: { code: "rate_limit_exceeded", message: "dep_1 is busy: 64 requests wait", field: null } }), {
          status: 429,
          headers: { "Content-Type": "application/json", "Retry-After": "3" },
        }),
    });
    await expect(streamChat("dep_1", MESSAGES, {}, () => undefined)).rejects.toMatchObject({ status: 429, code: "rate_limit_exceeded", retryAfter: 3 });
  });

  it("rejects on an error event, after handing over what came before it", async () => {
    mockFetch({ "POST /api/deployments/dep_1/chat": () => eventStream([chunk("Half"), '{"error": {"message": "the model server failed: reset"}}\n']) });
    const pieces: string[] = [];
    const failure = streamChat("dep_1", MESSAGES, {}, (p) => pieces.push(p));
    await expect(failure).rejects.toMatchObject({ code: "upstream_error", message: "the model server failed: reset" });
    expect(pieces).toEqual(["Half"]);
  });

  it("reads a whole JSON answer when the server did not stream", async () => {
    mockFetch({ "POST /api/deployments/dep_1/chat": { status: 200, body: { choices: [{ message: { role: "assistant", content: "Ottawa." }, finish_reason: "stop" }] } } });
    const onDelta = vi.fn();
    expect(await streamChat("dep_1", MESSAGES, {}, onDelta)).toEqual({ content: "Ottawa.", finishReason: "stop", model: null });
    expect(onDelta).toHaveBeenCalledWith("Ottawa.");
  });

  it("turns a refusal into an ApiError with the API's code", async () => {
    mockFetch({ "POST /api/deployments/dep_1/chat": apiError(409, "model_not_running", "deployment dep_1 is stopped: deploy the model again") });
    const failure = streamChat("dep_1", MESSAGES, {}, () => undefined);
    await expect(failure).rejects.toBeInstanceOf(ApiError);
    await expect(streamChat("dep_1", MESSAGES, {}, () => undefined)).rejects.toMatchObject({ status: 409, code: "model_not_running" });
  });

  it("stops reading when aborted", async () => {
    const controller = new AbortController();
    vi.stubGlobal("fetch", vi.fn(async (request: Request) => {
      if (request.signal.aborted) throw new DOMException("aborted", "AbortError");
      return json(200, {});
    }));
    controller.abort();
    await expect(streamChat("dep_1", MESSAGES, {}, () => undefined, controller.signal)).rejects.toMatchObject({ name: "AbortError" });
  });
});
