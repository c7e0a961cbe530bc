import { vi } from "vitest";

export interface RecordedCall {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: unknown;
}

type Answer = { status: number; body?: unknown } | Response;
type Reply = Answer | ((call: RecordedCall) => Answer);

/**
 * Replace fetch with a table of answers keyed by "METHOD /path"; unknown routes answer 404
 * in the API's error shape. Every call is recorded for assertions.
 */
export function mockFetch(routes: Record<string, Reply>) {
  const calls: RecordedCall[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input), "http://localhost");
    const call: RecordedCall = {
      method: (init.method ?? "GET").toUpperCase(),
      path: url.pathname,
      query: url.searchParams,
      headers: { ...(init.headers as Record<string, string>) },
      body: typeof init.body === "string" ? JSON.parse(init.body) : undefined,
    };
    calls.push(call);
    const route = routes[`${call.method} ${call.path}`];
    const reply = typeof route === "function" ? route(call) : route;
    if (!reply) return json(404, { error: { code: "not_found", message: `no mock for ${call.method} ${call.path}`, field: null } });
    return reply instanceof Response ? reply : json(reply.status, reply.body);
  });
  vi.stubGlobal("fetch", fetchMock);
  return { calls, fetchMock };
}

export function json(status: number, body?: unknown): Response {
  if (body === undefined || status === 204) return new Response(null, { status });
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

export function apiError(status: number, code: string, message: string, field: string | null = null) {
  return { status, body: { error: { code, message, field } } };
}

/** A server-sent events answer that arrives in the given pieces (split anywhere, as a network would). */
export function eventStream(pieces: string[], status = 200): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
  return new Response(body, { status, headers: { "Content-Type": "text/event-stream" } });
}
