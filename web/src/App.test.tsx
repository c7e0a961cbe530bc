import { screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "./test/fetchMock";
import { renderApp, signIn, USER } from "./test/render";

describe("routing", () => {
  it("sends a signed-out visitor to login, remembering where they were going", async () => {
    mockFetch({});
    const { current } = renderApp("/account");
    expect(await screen.findByRole("heading", { level: 1, name: "Log in" })).toBeInTheDocument();
    expect(current()).toBe("/login?next=%2Faccount");
  });

  it("opens the signed-in shell with the main navigation", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER } });
    const { user, current } = renderApp("/");

    expect(await screen.findByRole("heading", { level: 1, name: "Jobs" })).toBeInTheDocument();
    expect(current()).toBe("/jobs");
    const nav = screen.getByRole("navigation", { name: "Main" });
    expect(nav).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Jobs" })).toHaveAttribute("aria-current", "page");

    await user.click(screen.getByRole("link", { name: "Deployments" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Deployments" })).toHaveFocus();
    expect(screen.getByRole("link", { name: "Deployments" })).toHaveAttribute("aria-current", "page");

    await user.click(screen.getByRole("link", { name: "Account (ada)" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Account" })).toBeInTheDocument();
  });

  it("treats a stored token the server refuses as signed out", async () => {
    signIn("tok-stale");
    mockFetch({ "GET /api/auth/me": apiError(401, "unauthorized", "token expired") });
    const { current } = renderApp("/models");

    expect(await screen.findByRole("heading", { level: 1, name: "Log in" })).toBeInTheDocument();
    expect(screen.getByRole("status")).toHaveTextContent("Your session has ended");
    expect(current()).toBe("/login?reason=expired&next=%2Fmodels");
    expect(window.localStorage.getItem("llmct.access_token")).toBeNull();
  });

  it("offers a retry when the server cannot be reached", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": apiError(503, "store_unavailable", "the database is unavailable") });
    renderApp("/jobs");
    expect(await screen.findByRole("alert")).toHaveTextContent("the database is unavailable");
    expect(screen.getByRole("button", { name: "Try again" })).toBeInTheDocument();
  });

  it("sends a signed-in user away from login", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER } });
    const { current } = renderApp("/login");
    expect(await screen.findByRole("heading", { level: 1, name: "Jobs" })).toBeInTheDocument();
    expect(current()).toBe("/jobs");
  });

  it("shows not found for unknown pages inside the shell", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER } });
    renderApp("/nope");
    expect(await screen.findByRole("heading", { level: 1, name: "Page not found" })).toBeInTheDocument();
  });
});

describe("language", () => {
  it("switches the whole page to Chinese and remembers the choice", async () => {
    mockFetch({});
    const { user } = renderApp("/login");
    await user.selectOptions(screen.getByLabelText("Language"), "zh");
    expect(screen.getByRole("heading", { level: 1, name: "登录" })).toBeInTheDocument();
    expect(screen.getByLabelText("用户名")).toBeInTheDocument();
    expect(document.documentElement.lang).toBe("zh-CN");
    expect(window.localStorage.getItem("llmct.lang")).toBe("zh");
  });
});
