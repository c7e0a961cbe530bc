import { afterEach, describe, expect, it, vi } from "vitest";

import { apiError, json, mockFetch } from "../test/fetchMock";
import { AS_FILE, ApiError, anonymousApi, api, download, ok, oneOf, retryAfterSeconds, setUnauthorizedHandler, socketUrl, toApiError } from "./client";
import { tokenStore } from "./token";

describe("the fetch core", () => {
  let restoreHandler: (() => void) | undefined;
  afterEach(() => restoreHandler?.());

  it("opens WebSockets with a one-time ticket, never with the token in the URL", async () => {
    tokenStore.set("tok-abc", 3600);
    const { calls } = mockFetch({ "POST /api/ws/tickets": { status: 201, body: { ticket: "tkt-1", expires_in: 30 } } });

    const url = await socketUrl("/api/jobs/job_1/logs", { after: 3 });

    expect(url).toMatch(/^ws:\/\/localhost(:\d+)?\/api\/jobs\/job_1\/logs\?after=3&ticket=tkt-1$/);
    expect(url).not.toContain("tok-abc");
    expect(calls[0]?.headers.Authorization).toBe("Bearer tok-abc");
  });

  it("sends the stored token as a Bearer header", async () => {
    tokenStore.set("tok-abc", 3600);
    const { calls } = mockFetch({ "GET /api/auth/me": { status: 200, body: { id: "usr_1" } } });

    await expect(ok(api.GET("/api/auth/me"))).resolves.toEqual({ id: "usr_1" });

    expect(calls[0]?.headers.Authorization).toBe("Bearer tok-abc");
    expect(calls[0]?.headers.Accept).toBe("application/json");
  });

  it("sends no token without a session (login), and JSON when there is a body", async () => {
    tokenStore.set("tok-abc", 3600);
    const { calls } = mockFetch({ "POST /api/auth/login": { status: 200, body: {} } });

    await ok(anonymousApi.POST("/api/auth/login", { body: { username: "ada", password: "correct horse" } }));

    expect(calls[0]?.headers.Authorization).toBeUndefined();
    expect(calls[0]?.headers["Content-Type"]).toBe("application/json");
    expect(calls[0]?.body).toEqual({ username: "ada", password: "correct horse" });
  });

  it("sends no token once it has expired", async () => {
    tokenStore.set("tok-old", 1);
    vi.spyOn(Date, "now").mockReturnValue(Date.now() + 5000);
    const { calls } = mockFetch({ "GET /api/auth/me": { status: 200, body: {} } });

    await ok(api.GET("/api/auth/me"));

    expect(calls[0]?.headers.Authorization).toBeUndefined();
  });

  it("fills in path parameters (encoded) and leaves empty query values out", async () => {
    const { calls } = mockFetch({
      "GET /api/jobs": { status: 200, body: { items: [], next_cursor: null } },
      "GET /api/evals/job%201/samples": { status: 200, body: { items: [], total: 0 } },
    });

    await ok(api.GET("/api/jobs", { params: { query: { state: "running", kind: undefined, q: "", cursor: null, limit: 25 } } }));
    await ok(api.GET("/api/evals/{job_id}/samples", { params: { path: { job_id: "job 1" }, query: { offset: 0, limit: 5 } } }));

    expect(calls[0]?.query.toString()).toBe("state=running&limit=25");
    expect(calls[1]?.query.toString()).toBe("offset=0&limit=5");
  });

  it("returns undefined for 204 No Content", async () => {
    mockFetch({ "DELETE /api/auth/api-keys/key_1": { status: 204 } });
    await expect(ok(api.DELETE("/api/auth/api-keys/{key_id}", { params: { path: { key_id: "key_1" } } }))).resolves.toBeUndefined();
  });

  it("turns the API's error envelope into an ApiError with message and field", async () => {
    mockFetch({
      "POST /api/auth/register": apiError(422, "weak_password", "password must be at least 10 characters", "password"),
    });

    const error = await ok(anonymousApi.POST("/api/auth/register", { body: { username: "ada", password: "short", invite_code: "inv_1" } })).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({
      status: 422,
      code: "weak_password",
      message: "password must be at least 10 characters",
      field: "password",
    });
  });

  it("reads a missing field as null", async () => {
    const error = await toApiError(json(409, { error: { code: "conflict", message: "taken" } }));
    expect(error.field).toBeNull();
  });

  it("keeps when to ask again (Retry-After), in seconds or as a date", async () => {
    const busy = new Response(JSON.stringify({ error: { code: "rate_limit_exceeded", message: "busy", field: null } }), {
      status: 429,
      headers: { "Content-Type": "application/json", "Retry-After": "7" },
    });
    expect(await toApiError(busy)).toMatchObject({ status: 429, code: "rate_limit_exceeded", retryAfter: 7 });
    expect((await toApiError(json(409, { error: { code: "conflict", message: "taken" } }))).retryAfter).toBeNull();
    const now = Date.parse("2026-01-02T03:04:05Z");
    expect(retryAfterSeconds("Fri, 02 Jan 2026 03:04:15 GMT", now)).toBe(10);
    expect(retryAfterSeconds("Fri, 02 Jan 2026 03:04:00 GMT", now)).toBe(0);
    expect(retryAfterSeconds("soon", now)).toBeNull();
    expect(retryAfterSeconds(null, now)).toBeNull();
  });

  it("describes answers that are not the API's envelope", async () => {
    const error = await toApiError(new Response("<html>Bad gateway</html>", { status: 502, statusText: "Bad Gateway" }));
    expect(error).toMatchObject({ status: 502, code: "http_502", message: "Bad Gateway (HTTP 502)", field: null });
  });

  it("reports an unreachable server as a network error", async () => {
    vi.stubGlobal("fetch", vi.fn().mockRejectedValue(new TypeError("Failed to fetch")));
    await expect(ok(api.GET("/api/auth/me"))).rejects.toMatchObject({ status: 0, code: "network_error" });
  });

  it("lets the caller's abort through as an AbortError", async () => {
    vi.stubGlobal("fetch", vi.fn().mockRejectedValue(new DOMException("aborted", "AbortError")));
    await expect(ok(api.GET("/api/auth/me"))).rejects.toMatchObject({ name: "AbortError" });
  });

  it("on a 401 with a token: drops the token and calls the handler", async () => {
    tokenStore.set("tok-abc", 3600);
    const handler = vi.fn();
    restoreHandler = setUnauthorizedHandler(handler);
    mockFetch({ "GET /api/auth/me": apiError(401, "unauthorized", "token expired") });

    await expect(ok(api.GET("/api/auth/me"))).rejects.toMatchObject({ status: 401, message: "token expired" });

    expect(tokenStore.get()).toBeNull();
    expect(handler).toHaveBeenCalledOnce();
  });

  it("on a 401 without a token (a wrong password): leaves the session alone", async () => {
    const handler = vi.fn();
    restoreHandler = setUnauthorizedHandler(handler);
    mockFetch({ "POST /api/auth/login": apiError(401, "invalid_credentials", "wrong username or password") });

    await expect(ok(anonymousApi.POST("/api/auth/login", { body: { username: "ada", password: "nope" } }))).rejects.toMatchObject({
      code: "invalid_credentials",
    });
    expect(handler).not.toHaveBeenCalled();
  });

  it("downloads a file with the token, named as the server says", async () => {
    tokenStore.set("tok-abc", 3600);
    const { calls } = mockFetch({
      "GET /api/jobs/job_1/log": new Response("line\n", { status: 200, headers: { "Content-Disposition": 'attachment; filename="job_1-train.log"' } }),
    });
    // jsdom has no object URLs.
    URL.createObjectURL = vi.fn(() => "blob:x");
    URL.revokeObjectURL = vi.fn();
    const names: string[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      names.push(this.download);
    });

    await download(api.GET("/api/jobs/{job_id}/log", { params: { path: { job_id: "job_1" } }, ...AS_FILE }), "job_1.log");

    expect(calls[0]?.headers.Authorization).toBe("Bearer tok-abc");
    expect(calls[0]?.headers.Accept).toBe("*/*");
    expect(names).toEqual(["job_1-train.log"]);
  });

  it("takes a URL's filter as the API's enum only when it is one", () => {
    expect(oneOf("running", ["running", "failed"] as const)).toBe("running");
    expect(oneOf("", ["running", "failed"] as const)).toBeUndefined();
    expect(oneOf("bogus", ["running", "failed"] as const)).toBeUndefined();
  });
});

/**
 * Never run: `npm run typecheck` proves that the schema types every call. Each line below must fail to
 * compile; should one start compiling, tsc reports the unused @ts-expect-error.
 */
export function drift(): void {
  // @ts-expect-error a path the API does not have
  void api.GET("/api/job");
  // @ts-expect-error a method the path does not have
  void api.DELETE("/api/jobs");
  // @ts-expect-error a path parameter left out
  void api.GET("/api/jobs/{job_id}", {});
  // @ts-expect-error a query parameter the route does not read
  void api.GET("/api/jobs", { params: { query: { search: "x" } } });
  // @ts-expect-error a state the API does not know
  void api.GET("/api/jobs", { params: { query: { state: "paused" } } });
  // @ts-expect-error a body field of the wrong type
  void api.PUT("/api/quotas/{user_id}", { params: { path: { user_id: "u" } }, body: { max_gpus: "2" } });
  // @ts-expect-error login needs a password
  void anonymousApi.POST("/api/auth/login", { body: { username: "ada" } });
}
