/**
 * The one way the web client talks to the gateway: an openapi-fetch client typed by the generated
 * `schema.d.ts`, so a wrong path, path parameter, query parameter or body is a type error. Its middleware
 * sends the access token as a Bearer header and turns every failure into an ApiError carrying the API's
 * `{"error": {"code", "message", "field"}}` shape; a 401 on a call that carried a token ends the session.
 */

import createClient, { type Middleware } from "openapi-fetch";

import type { paths } from "./schema";
import { tokenStore } from "./token";

export class ApiError extends Error {
  /** HTTP status; 0 when the server could not be reached. */
  readonly status: number;
  /** Stable snake_case code from the API (or one made up here for transport failures). */
  readonly code: string;
  /** Dotted path of the request field at fault, when the API names one. */
  readonly field: string | null;
  /** Seconds to wait before asking again, when the server said (`Retry-After` of a 429 or a 503). */
  readonly retryAfter: number | null;

  constructor(status: number, code: string, message: string, field: string | null = null, retryAfter: number | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

/** `Retry-After` as seconds from `now` (ms): a number of seconds or an HTTP date; null when absent or unreadable. */
export function retryAfterSeconds(header: string | null, now = Date.now()): number | null {
  const value = header?.trim();
  if (!value) return null;
  if (/^\d+$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

export function networkError(): ApiError {
  return new ApiError(0, "network_error", "Could not reach the server. Check your connection and try again.");
}

type UnauthorizedHandler = () => void;

let onUnauthorized: UnauthorizedHandler = () => {
  window.location.assign("/login");
};

/** Who hears that the session ended (a 401 on a call that carried a token). */
export function setUnauthorizedHandler(handler: UnauthorizedHandler): () => void {
  const previous = onUnauthorized;
  onUnauthorized = handler;
  return () => {
    onUnauthorized = previous;
  };
}

/** A refused answer: an ApiError, and the end of the session when a call that carried a token got a 401. */
export async function failure(response: Response, sentToken: boolean): Promise<ApiError> {
  const error = await toApiError(response);
  if (response.status === 401 && sentToken) {
    tokenStore.clear();
    onUnauthorized();
  }
  return error;
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  return text ? JSON.parse(text) : undefined;
}

/** The API's error envelope, or a plain description when the answer is not one (e.g. a proxy's 502). */
export async function toApiError(response: Response): Promise<ApiError> {
  let payload: unknown;
  try {
    payload = await readJson(response);
  } catch {
    payload = undefined;
  }
  const retryAfter = retryAfterSeconds(response.headers.get("retry-after"));
  const detail = isErrorEnvelope(payload) ? payload.error : null;
  if (detail) return new ApiError(response.status, detail.code, detail.message, detail.field ?? null, retryAfter);
  const reason = response.statusText || (response.status >= 500 ? "server error" : "request failed");
  return new ApiError(response.status, `http_${response.status}`, `${reason} (HTTP ${response.status})`, null, retryAfter);
}

interface ErrorEnvelope {
  error: { code: string; message: string; field?: string | null };
}

function isErrorEnvelope(value: unknown): value is ErrorEnvelope {
  if (typeof value !== "object" || value === null || !("error" in value)) return false;
  const error = (value as { error: unknown }).error;
  return (
    typeof error === "object" &&
    error !== null &&
    typeof (error as { code?: unknown }).code === "string" &&
    typeof (error as { message?: unknown }).message === "string"
  );
}

function isAbort(cause: unknown): boolean {
  return typeof cause === "object" && cause !== null && (cause as { name?: unknown }).name === "AbortError";
}

/** `a=1&b=x`, leaving out empty values (undefined, null, ""): an unset filter is not sent at all. */
export function queryString(params: Record<string, unknown>): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  return query.toString();
}

/**
 * A filter from the URL as the API's enum: the value when it is one of `allowed`, else undefined (not sent).
 * `allowed` comes from the schema's types, so a list that drifts from the API is a type error.
 */
export function oneOf<T extends string>(value: string | null | undefined, allowed: readonly T[]): T | undefined {
  return allowed.find((choice) => choice === value);
}

/** The stored access token as a Bearer header. */
const bearer: Middleware = {
  onRequest({ request }) {
    const token = tokenStore.get();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
};

/** Every failure as an ApiError: a refusal in the API's envelope, an unreachable server as status 0. */
const failures: Middleware = {
  async onResponse({ request, response }) {
    if (!response.ok) throw await failure(response, request.headers.has("Authorization"));
    return undefined;
  },
  onError({ error }) {
    if (isAbort(error)) return undefined; // the caller's own abort goes through as it is
    return networkError();
  },
};

function makeClient(sendToken: boolean) {
  const client = createClient<paths>({
    // Absolute, so a Request can be built outside a page too (tests); the gateway serves the client itself.
    baseUrl: window.location.origin,
    headers: { Accept: "application/json" },
    querySerializer: queryString,
    // Looked up on each call rather than captured once.
    fetch: (request) => globalThis.fetch(request),
  });
  if (sendToken) client.use(bearer);
  client.use(failures);
  return client;
}

/** The typed client: `api.GET("/api/jobs/{job_id}", { params: { path: { job_id } } })`. */
export const api = makeClient(true);

/** The same, without the token: calls made to get a session (login, register), where a 401 is just an answer. */
export const anonymousApi = makeClient(false);

/**
 * The decoded body of a call through `api` (undefined for an empty answer such as 204). Failures never get
 * here: the middleware threw them as ApiErrors.
 */
export async function ok<T>(call: Promise<{ data?: T }>): Promise<T> {
  const { data } = await call;
  return data as T;
}

/** Options of a call whose answer is a file to save: read as a blob, any type accepted (as a link would). */
export const AS_FILE = { parseAs: "blob", headers: { Accept: "*/*" } } as const;

/** The file from the name in Content-Disposition, else `fallback`. */
export function filenameFrom(response: Response, fallback: string): string {
  const header = response.headers.get("content-disposition") ?? "";
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(header);
  return match?.[1] ? decodeURIComponent(match[1]) : fallback;
}

/**
 * Save an authenticated download (a link cannot carry the Bearer header): the blob of a call through `api`
 * (with `AS_FILE`), handed to the browser through an object URL. Fine for logs and job outputs of the
 * sizes people download here.
 */
export async function download(call: Promise<{ data?: Blob; response: Response }>, fallbackName: string): Promise<void> {
  const { data, response } = await call;
  const url = URL.createObjectURL(data ?? new Blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filenameFrom(response, fallbackName);
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * The WebSocket URL of an API path on this site, with a one-time ticket asked for just before (browsers cannot send
 * the Bearer header when they open a socket, and a long-lived token in a URL ends up in proxies' and servers' logs;
 * the gateway refuses one). Ask again for every connection: a ticket opens one socket, within 30 s.
 */
export async function socketUrl(path: string, params: Record<string, string | number | null | undefined> = {}): Promise<string> {
  const { ticket } = await ok(api.POST("/api/ws/tickets"));
  const { protocol, host } = window.location;
  const scheme = protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${host}${path}?${queryString({ ...params, ticket })}`;
}
