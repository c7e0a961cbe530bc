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
 * in the API's error shape. Every call is recorded for assertions, whether it came as a Request (the typed
 * client) or as a URL and init.
 */
export function mockFetch(routes: Record<string, Reply>) {
  const calls: RecordedCall[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const call = input instanceof Request ? await fromRequest(input) : fromInit(String(input), init);
    calls.push(call);
    const route = routes[`${call.method} ${call.path}`];
    const reply = typeof route === "function" ? route(call) : route;
    if (!reply) return json(404, { error: { code: "not_found", message: `no mock for ${call.method} ${call.path}`, field: null } });
    return reply instanceof Response ? reply : json(reply.status, reply.body);
  });
  vi.stubGlobal("fetch", fetchMock);
  return { calls, fetchMock };
}

/** A call made the way the typed client makes it: one Request (headers by their usual names: `Authorization`). */
async function fromRequest(request: Request): Promise<RecordedCall> {
  const url = new URL(request.url);
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    headers[name.replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => dash + letter.toUpperCase())] = value;
  });
  const text = await request.text();
  return { method: request.method.toUpperCase(), path: url.pathname, query: url.searchParams, headers, body: text ? JSON.parse(text) : undefined };
}

function fromInit(input: string, init: RequestInit): RecordedCall {
  const url = new URL(input, "http://localhost");
  return {
    method: (init.method ?? "GET").toUpperCase(),
    path: url.pathname,
    query: url.searchParams,
    headers: { ...(init.headers as Record<string, string>) },
    body: typeof init.body === "string" ? JSON.parse(init.body) : undefined,
  };
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
