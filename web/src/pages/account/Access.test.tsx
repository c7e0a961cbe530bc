import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { ADMIN, renderApp, signIn, USER } from "../../test/render";

const QUOTA = {
  user_id: "usr_2", max_deployments: 1, max_gpus: 4, max_queued: 20,
  custom: { max_deployments: null, max_gpus: null, max_queued: null }, gpus_held: 0, jobs_queued: 0, gpu_hours_recent: 0,
};
const BOB = { id: "usr_2", username: "bob", role: "user", created_at: "2025-03-01T00:00:00Z", disabled: false };

function adminRoutes(extra: Parameters<typeof mockFetch>[0]) {
  return mockFetch({
    "GET /api/auth/me": { status: 200, body: ADMIN },
    "GET /api/auth/api-keys": { status: 200, body: [] },
    "GET /api/auth/invites": { status: 200, body: [] },
    "GET /api/quotas/me": { status: 200, body: { ...QUOTA, user_id: ADMIN.id } },
    "GET /api/auth/users": { status: 200, body: { items: [ADMIN, BOB], next_cursor: null } },
    "GET /api/quotas/usr_2": { status: 200, body: QUOTA },
    ...extra,
  });
}

describe("an admin manages an account's access", () => {
  it("disables an account after asking, and the list shows it at once", async () => {
    signIn();
    const { calls } = adminRoutes({
      "PATCH /api/auth/users/usr_2": (call) => ({ status: 200, body: { ...BOB, ...(call.body as object) } }),
    });
    const { user } = renderApp("/account");
    await user.click(await screen.findByRole("button", { name: "Limits of bob" }));
    const access = await screen.findByRole("group", { name: "Access of bob" });
    await user.click(within(access).getByRole("button", { name: "Disable" }));
    await user.click(within(access).getByRole("button", { name: "Yes, do it" }));
    expect(await within(access).findByText("Disabled bob.")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "PATCH")?.body).toEqual({ disabled: true });
    expect(screen.getByRole("row", { name: /bob/ })).toHaveTextContent("Disabled");
    expect(within(access).getByRole("button", { name: "Enable" })).toBeInTheDocument();
  });

  it("changes a role and revokes every session and key", async () => {
    signIn();
    const { calls } = adminRoutes({
      "PATCH /api/auth/users/usr_2": (call) => ({ status: 200, body: { ...BOB, ...(call.body as object) } }),
      "POST /api/auth/users/usr_2/revoke": { status: 204 },
    });
    const { user } = renderApp("/account");
    await user.click(await screen.findByRole("button", { name: "Limits of bob" }));
    const access = await screen.findByRole("group", { name: "Access of bob" });
    await user.click(within(access).getByRole("button", { name: "Make administrator" }));
    expect(await within(access).findByText("Changed the role of bob; they must log in again.")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "PATCH")?.body).toEqual({ role: "admin" });
    await user.click(within(access).getByRole("button", { name: "End sessions and revoke keys" }));
    await user.click(within(access).getByRole("button", { name: "Yes, do it" }));
    expect(await within(access).findByText("Ended every session of bob and revoked their API keys.")).toBeInTheDocument();
    expect(calls.some((c) => c.method === "POST" && c.path === "/api/auth/users/usr_2/revoke")).toBe(true);
  });

  it("sets a new password, showing a weak one's refusal on the field", async () => {
    signIn();
    const { calls } = adminRoutes({
      "POST /api/auth/users/usr_2/password": (call) =>
        (call.body as { password: string }).password.length < 10
          ? apiError(422, "weak_password", "password must be at least 10 characters", "password")
          : { status: 204 },
    });
    const { user } = renderApp("/account");
    await user.click(await screen.findByRole("button", { name: "Limits of bob" }));
    const form = await screen.findByRole("form", { name: "New password for bob" });
    await user.type(within(form).getByLabelText("New password"), "short");
    await user.click(within(form).getByRole("button", { name: "Set password" }));
    expect(await within(form).findByText("password must be at least 10 characters")).toBeInTheDocument();
    await user.clear(within(form).getByLabelText("New password"));
    await user.type(within(form).getByLabelText("New password"), "a-much-better-pass-9");
    await user.click(within(form).getByRole("button", { name: "Set password" }));
    expect(await within(form).findByText("Set a new password for bob.")).toBeInTheDocument();
    expect(calls.filter((c) => c.path === "/api/auth/users/usr_2/password").at(-1)?.body).toEqual({
      password: "a-much-better-pass-9",
    });
  });
});

describe("API keys with a scope and an expiry", () => {
  it("creates a read-only key that expires, and lists its scope and expiry", async () => {
    signIn();
    const KEY = {
      id: "key_1", name: "grafana", prefix: "llmct_abcdef", created_at: "2025-05-01T00:00:00Z", last_used_at: null,
      scope: "read_only", expires_at: "2025-05-31T00:00:00Z",
    };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "GET /api/quotas/me": { status: 200, body: { ...QUOTA, user_id: USER.id } },
      "POST /api/auth/api-keys": { status: 201, body: { ...KEY, key: "llmct_secret" } },
    });
    const { user } = renderApp("/account");
    await user.type(await screen.findByLabelText("Key name"), "grafana");
    await user.selectOptions(screen.getByLabelText("Scope"), "read_only");
    await user.type(screen.getByLabelText("Expires in (days)"), "30");
    await user.click(screen.getByRole("button", { name: "Create key" }));
    await user.click(await screen.findByRole("button", { name: "I have stored it" }));
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ name: "grafana", scope: "read_only", expires_in_days: 30 });
    const row = await screen.findByRole("row", { name: /grafana/ });
    expect(row).toHaveTextContent("Read only (GET)");
    expect(within(row).getAllByRole("time")).toHaveLength(2);
  });
});
