import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { renderApp, signIn, USER } from "../../test/render";

const UNSET = (name: string, env: string, label: string) => ({ name, env, label, set: false, created_at: null, updated_at: null });
const CATALOGUE = [
  UNSET("wandb_api_key", "WANDB_API_KEY", "W&B API key"),
  UNSET("mlflow_tracking_token", "MLFLOW_TRACKING_TOKEN", "MLflow tracking token"),
  UNSET("mlflow_tracking_username", "MLFLOW_TRACKING_USERNAME", "MLflow tracking username"),
  UNSET("mlflow_tracking_password", "MLFLOW_TRACKING_PASSWORD", "MLflow tracking password"),
];
const SET_AT = "2026-12-04T05:00:00Z";

function routes(extra: Parameters<typeof mockFetch>[0]) {
  return mockFetch({
    "GET /api/auth/me": { status: 200, body: USER },
    "GET /api/auth/api-keys": { status: 200, body: [] },
    "GET /api/quotas/me": { status: 404 },
    "GET /api/secrets": { status: 200, body: { items: CATALOGUE } },
    ...extra,
  });
}

describe("a user's secrets on the account page", () => {
  it("lists the catalogue, sets one through a password field, and never shows the value", async () => {
    signIn();
    const { calls } = routes({
      "PUT /api/secrets/wandb_api_key": (call) =>
        (call.body as { value: string }).value.includes("\t")
          ? apiError(422, "secret_not_text", "the value holds control characters (a newline, a tab): paste it alone", "value")
          : { status: 200, body: { ...CATALOGUE[0], set: true, created_at: SET_AT, updated_at: SET_AT } },
    });
    const { user } = renderApp("/account");
    const section = await screen.findByRole("region", { name: "Secrets" });
    const row = await within(section).findByRole("row", { name: /W&B API key/ });
    expect(row).toHaveTextContent("WANDB_API_KEY");
    expect(row).toHaveTextContent("Not set");
    await user.click(within(row).getByRole("button", { name: "Set W&B API key" }));
    const form = within(section).getByRole("form", { name: "New value for W&B API key" });
    const input = within(form).getByLabelText("Value");
    expect(input).toHaveAttribute("type", "password");
    await user.type(input, "bad\tvalue");
    await user.click(within(form).getByRole("button", { name: "Save" }));
    expect(await within(form).findByText(/control characters/)).toBeInTheDocument();
    await user.clear(input);
    await user.type(input, "wandb-key-1234567890");
    await user.click(within(form).getByRole("button", { name: "Save" }));
    expect(await within(section).findByText("W&B API key saved.")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT").at(-1)?.body).toEqual({ value: "wandb-key-1234567890" });
    const saved = within(section).getByRole("row", { name: /W&B API key/ });
    expect(saved).toHaveTextContent("Set ·");
    expect(within(saved).getByRole("button", { name: "Replace W&B API key" })).toBeInTheDocument();
    expect(document.body.innerHTML).not.toContain("wandb-key-1234567890");
  });

  it("deletes a secret only after asking", async () => {
    signIn();
    const items = [{ ...CATALOGUE[0], set: true, created_at: SET_AT, updated_at: SET_AT }, ...CATALOGUE.slice(1)];
    const { calls } = routes({
      "GET /api/secrets": { status: 200, body: { items } },
      "DELETE /api/secrets/wandb_api_key": { status: 204 },
    });
    const { user } = renderApp("/account");
    const section = await screen.findByRole("region", { name: "Secrets" });
    const row = await within(section).findByRole("row", { name: /W&B API key/ });
    await user.click(within(row).getByRole("button", { name: "Delete W&B API key" }));
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    await user.click(within(row).getByRole("button", { name: "Yes, delete" }));
    expect(await within(section).findByText("W&B API key deleted.")).toBeInTheDocument();
    expect(calls.some((c) => c.method === "DELETE" && c.path === "/api/secrets/wandb_api_key")).toBe(true);
    expect(within(section).getByRole("row", { name: /W&B API key/ })).toHaveTextContent("Not set");
  });

  it("says what to do when secrets are off on the platform", async () => {
    signIn();
    routes({
      "GET /api/secrets": apiError(503, "secrets_unavailable", "user secrets are off: set LLMCT_SECRETS_KEY on the scheduler"),
    });
    renderApp("/account");
    const section = await screen.findByRole("region", { name: "Secrets" });
    expect(await within(section).findByText(/set LLMCT_SECRETS_KEY/)).toBeInTheDocument();
  });
});
