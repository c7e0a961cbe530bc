import { screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../test/fetchMock";
import { renderApp, USER } from "../test/render";

describe("LoginPage", () => {
  it("logs in, keeps the token and goes where the user was headed", async () => {
    const { calls } = mockFetch({
      "POST /api/auth/login": { status: 200, body: { access_token: "tok-new", token_type: "bearer", expires_in: 3600 } },
      "GET /api/auth/me": { status: 200, body: USER },
    });
    const { user, current } = renderApp("/login?next=%2Faccount");

    await user.type(screen.getByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "correct horse battery");
    await user.click(screen.getByRole("button", { name: "Log in" }));

    expect(await screen.findByRole("heading", { level: 1, name: "Account" })).toBeInTheDocument();
    expect(current()).toBe("/account");
    expect(window.localStorage.getItem("llmct.access_token")).toBe("tok-new");
    expect(calls[0]?.body).toEqual({ username: "ada", password: "correct horse battery" });
    expect(calls[1]?.headers.Authorization).toBe("Bearer tok-new");
  });

  it("shows the server's message when the credentials are wrong and clears the password", async () => {
    mockFetch({ "POST /api/auth/login": apiError(401, "invalid_credentials", "wrong username or password") });
    const { user } = renderApp("/login");

    await user.type(screen.getByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "nope-nope-nope");
    await user.click(screen.getByRole("button", { name: "Log in" }));

    expect(await screen.findByRole("alert")).toHaveTextContent("wrong username or password");
    expect(screen.getByLabelText("Password")).toHaveValue("");
    expect(screen.getByLabelText("Password")).toHaveFocus();
    expect(window.localStorage.getItem("llmct.access_token")).toBeNull();
  });

  it("shows a field error next to the field the API names", async () => {
    mockFetch({ "POST /api/auth/login": apiError(422, "invalid_field", "Expected `str` of length <= 64", "username") });
    const { user } = renderApp("/login");

    await user.type(screen.getByLabelText("Username"), "a".repeat(70));
    await user.type(screen.getByLabelText("Password"), "whatever-1");
    await user.click(screen.getByRole("button", { name: "Log in" }));

    const username = screen.getByLabelText("Username");
    await waitFor(() => expect(username).toHaveAttribute("aria-invalid", "true"));
    expect(username).toHaveAccessibleDescription("Expected `str` of length <= 64");
  });

  it("says why the user is here after registering, and fills in the username", () => {
    renderApp("/login?reason=registered&username=ada");
    expect(screen.getByRole("status")).toHaveTextContent("Account created");
    expect(screen.getByLabelText("Username")).toHaveValue("ada");
    expect(screen.getByLabelText("Password")).toHaveFocus();
  });

  it("links to registration", async () => {
    const { user, current } = renderApp("/login");
    await user.click(screen.getByRole("link", { name: "Create an account" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Create an account" })).toBeInTheDocument();
    expect(current()).toBe("/register");
  });
});
