import { afterEach, describe, expect, it, vi } from "vitest";

import { apiError, json, mockFetch } from "../test/fetchMock";
import { ApiError, request, setUnauthorizedHandler, toApiError } from "./client";
import { tokenStore } from "./token";

describe("request", () => {
  let restoreHandler: (() => void) | undefined;
  afterEach(() => restoreHandler?.());

  it("sends the stored token as a Bearer header", async () => {
    tokenStore.set("tok-abc", 3600);
    const { calls } = mockFetch({ "GET /api/auth/me": { status: 200, body: { id: "usr_1" } } });

    await expect(request("/api/auth/me")).resolves.toEqual({ id: "usr_1" });

    expect(calls[0]?.headers.Authorization).toBe("Bearer tok-abc");
    expect(calls[0]?.headers.Accept).toBe("application/json");
  });

  it("sends no token when auth is off, and JSON when there is a body", async () => {
    tokenStore.set("tok-abc", 3600);
    const { calls } = mockFetch({ "POST /api/auth/login": { status: 200, body: {} } });

    await request("/api/auth/login", { method: "POST", body: { username: "ada" }, auth: false });

    expect(calls[0]?.headers.Authorization).toBeUndefined();
    expect(calls[0]?.headers["Content-Type"]).toBe("application/json");
    expect(calls[0]?.body).toEqual({ username: "ada" });
  });

  it("sends no token once it has expired", async () => {
    tokenStore.set("tok-old", 1);
    vi.spyOn(Date, "now").mockReturnValue(Date.now() + 5000);
    const { calls } = mockFetch({ "GET /api/x": { status: 200, body: {} } });

    await request("/api/x");

    expect(calls[0]?.headers.Authorization).toBeUndefined();
  });

  it("returns undefined for 204 No Content", async () => {
    mockFetch({ "DELETE /api/auth/api-keys/key_1": { status: 204 } });
    await expect(request("/api/auth/api-keys/key_1", { method: "DELETE" })).resolves.toBeUndefined();
  });

  it("turns the API's error envelope into an ApiError with message and field", async () => {
    mockFetch({
      "POST /api/auth/register": apiError(422, "weak_password", "password must be at least 10 characters", "password"),
    });

    const error = await request("/api/auth/register", { method: "POST", body: {} }).catch((e: unknown) => e);

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

  it("describes answers that are not the API's envelope", async () => {
    const error = await toApiError(new Response("<html>Bad gateway</html>", { status: 502, statusText: "Bad Gateway" }));
    expect(error).toMatchObject({ status: 502, code: "http_502", message: "Bad Gateway (HTTP 502)", field: null });
  });

  it("reports an unreachable server as a network error", async () => {
    vi.stubGlobal("fetch", vi.fn().mockRejectedValue(new TypeError("Failed to fetch")));
    await expect(request("/api/x")).rejects.toMatchObject({ status: 0, code: "network_error" });
  });

  it("on a 401 with a token: drops the token and calls the handler", async () => {
    tokenStore.set("tok-abc", 3600);
    const handler = vi.fn();
    restoreHandler = setUnauthorizedHandler(handler);
    mockFetch({ "GET /api/auth/me": apiError(401, "unauthorized", "token expired") });

    await expect(request("/api/auth/me")).rejects.toMatchObject({ status: 401, message: "token expired" });

    expect(tokenStore.get()).toBeNull();
    expect(handler).toHaveBeenCalledOnce();
  });

  it("on a 401 without a token (a wrong password): leaves the session alone", async () => {
    const handler = vi.fn();
    restoreHandler = setUnauthorizedHandler(handler);
    mockFetch({ "POST /api/auth/login": apiError(401, "invalid_credentials", "wrong username or password") });

    await expect(request("/api/auth/login", { method: "POST", body: {}, auth: false })).rejects.toMatchObject({
      code: "invalid_credentials",
    });
    expect(handler).not.toHaveBeenCalled();
  });
});
