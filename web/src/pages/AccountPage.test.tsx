import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../test/fetchMock";
import { ADMIN, renderApp, signIn, USER } from "../test/render";

const KEY = { id: "key_1", name: "laptop", prefix: "llmct_ab12", created_at: "2025-02-01T10:00:00Z", last_used_at: null };

describe("AccountPage", () => {
  it("shows who is signed in and their API keys", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [KEY] },
    });
    renderApp("/account");

    const profile = await screen.findByRole("region", { name: "Profile" });
    expect(within(profile).getByText("ada")).toBeInTheDocument();
    expect(within(profile).getByText("User")).toBeInTheDocument();
    const row = await screen.findByRole("row", { name: /laptop/ });
    expect(within(row).getByText("llmct_ab12…")).toBeInTheDocument();
    expect(within(row).getByText("Never")).toBeInTheDocument();
    expect(screen.queryByRole("region", { name: "Invite codes" })).not.toBeInTheDocument();
  });

  it("creates a key and shows its secret once, with a warning", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "POST /api/auth/api-keys": { status: 201, body: { ...KEY, id: "key_2", name: "ci", key: "llmct_secret_value" } },
    });
    const { user } = renderApp("/account");

    expect(await screen.findByText("No API keys yet.")).toBeInTheDocument();
    await user.type(screen.getByLabelText("Key name"), "ci");
    await user.click(screen.getByRole("button", { name: "Create key" }));

    const secret = await screen.findByRole("region", { name: "Copy your new API key now" });
    expect(within(secret).getByLabelText("New API key “ci”")).toHaveValue("llmct_secret_value");
    expect(secret).toHaveTextContent("This is the only time it is shown");
    expect(within(secret).getByRole("button", { name: "Copy" })).toBeInTheDocument();
    expect(calls.at(-1)?.body).toEqual({ name: "ci", scope: "full", expires_in_days: null });
    expect(screen.getByRole("row", { name: /ci/ })).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "I have stored it" }));
    expect(screen.queryByDisplayValue("llmct_secret_value")).not.toBeInTheDocument();
    expect(screen.getByLabelText("Key name")).toBeInTheDocument();
  });

  it("copies the new key to the clipboard", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "POST /api/auth/api-keys": { status: 201, body: { ...KEY, key: "llmct_secret_value" } },
    });
    const { user } = renderApp("/account");

    await user.type(await screen.findByLabelText("Key name"), "laptop");
    await user.click(screen.getByRole("button", { name: "Create key" }));
    await user.click(await screen.findByRole("button", { name: "Copy" }));

    expect(await screen.findByRole("button", { name: "Copied" })).toBeInTheDocument();
    await expect(navigator.clipboard.readText()).resolves.toBe("llmct_secret_value");
  });

  it("revokes a key after asking once more", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [KEY] },
      "DELETE /api/auth/api-keys/key_1": { status: 204 },
    });
    const { user } = renderApp("/account");

    await user.click(await screen.findByRole("button", { name: "Revoke key laptop" }));
    await user.click(screen.getByRole("button", { name: "Yes, revoke" }));

    await waitFor(() => expect(screen.queryByRole("row", { name: /laptop/ })).not.toBeInTheDocument());
    expect(screen.getByRole("status")).toHaveTextContent("Key “laptop” revoked.");
    expect(calls.some((call) => call.method === "DELETE" && call.path === "/api/auth/api-keys/key_1")).toBe(true);
  });

  it("shows a key name error next to the field", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "POST /api/auth/api-keys": apiError(422, "invalid_field", "Expected `str` of length >= 1", "name"),
    });
    const { user } = renderApp("/account");

    await user.type(await screen.findByLabelText("Key name"), " ");
    await user.click(screen.getByRole("button", { name: "Create key" }));

    await waitFor(() =>
      expect(screen.getByLabelText("Key name")).toHaveAccessibleDescription(expect.stringContaining("length >= 1")),
    );
  });

  it("logs out: tells the server, forgets the token and shows the login page", async () => {
    signIn("tok-123");
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "POST /api/auth/logout": { status: 204 },
    });
    const { user, current } = renderApp("/account");

    await user.click(await screen.findByRole("button", { name: "Log out" }));

    expect(await screen.findByRole("heading", { level: 1, name: "Log in" })).toBeInTheDocument();
    expect(screen.getByRole("status")).toHaveTextContent("You have been logged out.");
    expect(current()).toBe("/login?reason=logged-out");
    expect(window.localStorage.getItem("llmct.access_token")).toBeNull();
    expect(calls.find((call) => call.path === "/api/auth/logout")?.headers.Authorization).toBe("Bearer tok-123");
  });

  it("lets an admin create and list invite codes", async () => {
    signIn();
    const invite = {
      code: "inv-abc",
      max_uses: 3,
      uses: 0,
      expires_at: "2999-01-01T00:00:00Z",
      revoked_at: null,
      created_at: "2025-01-01T00:00:00Z",
    };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "GET /api/auth/invites": { status: 200, body: [{ ...invite, code: "old-one", uses: 1, max_uses: 1 }] },
      "POST /api/auth/invites": { status: 201, body: invite },
    });
    const { user } = renderApp("/account");

    const section = await screen.findByRole("region", { name: "Invite codes" });
    expect(await within(section).findByRole("row", { name: /old-one/ })).toHaveTextContent("Used up");

    const uses = within(section).getByLabelText("Uses");
    await user.clear(uses);
    await user.type(uses, "3");
    await user.click(within(section).getByRole("button", { name: "Create invite" }));

    expect(await within(section).findByRole("row", { name: /inv-abc/ })).toHaveTextContent("Active");
    expect(calls.at(-1)?.body).toEqual({ max_uses: 3, expires_in_hours: 168 });
    expect(within(section).getByLabelText("New invite code")).toHaveValue("inv-abc");
    expect(within(section).getByRole("button", { name: "Copy sign-up link" })).toBeInTheDocument();
  });
});
