import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { ADMIN, renderApp, signIn, USER } from "../../test/render";

const NO_CUSTOM = { max_deployments: null, max_gpus: null, max_queued: null, max_priority: null, max_run_h: null };
const QUOTA = {
  user_id: "usr_1", max_deployments: 1, max_gpus: 4, max_queued: 20, max_priority: 0, max_run_h: 24, custom: NO_CUSTOM,
  gpus_held: 1, jobs_queued: 3, gpu_hours_recent: 2.5,
};
const BOB = { id: "usr_2", username: "bob", role: "user", created_at: "2025-03-01T00:00:00Z" };

describe("limits on the account page", () => {
  it("shows a user their limits and what they hold, and no one else's", async () => {
    signIn();
    mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "GET /api/quotas/me": { status: 200, body: { ...QUOTA, max_gpus: null } },
    });
    renderApp("/account");
    const limits = await screen.findByRole("region", { name: "Your limits" });
    await waitFor(() => expect(within(limits).getByText("1 (no limit)")).toBeInTheDocument());
    expect(within(limits).getByText("3 of 20")).toBeInTheDocument();
    expect(within(limits).getByText("at most 1")).toBeInTheDocument();
    expect(within(limits).getByText("2.50")).toBeInTheDocument();
    expect(within(limits).getByText("at most 0")).toBeInTheDocument();
    expect(within(limits).getByText("24 h, then the job stops (time limit)")).toBeInTheDocument();
    expect(screen.queryByRole("region", { name: "Users and limits" })).not.toBeInTheDocument();
  });

  it("lets an admin set a user's limits, blank meaning the default, and shows a refusal on its field", async () => {
    signIn();
    let stored: Record<string, unknown> = { ...QUOTA, user_id: BOB.id };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/auth/api-keys": { status: 200, body: [] },
      "GET /api/auth/invites": { status: 200, body: [] },
      "GET /api/quotas/me": { status: 200, body: { ...QUOTA, user_id: ADMIN.id } },
      "GET /api/auth/users": { status: 200, body: { items: [ADMIN, BOB], next_cursor: null } },
      "GET /api/quotas/usr_2": () => ({ status: 200, body: stored }),
      "PUT /api/quotas/usr_2": (call) => {
        const body = call.body as Record<string, number | null>;
        if ((body.max_gpus ?? 0) > 1024) return apiError(422, "invalid_field", "Expected `int` <= 1024", "max_gpus");
        stored = { ...stored, custom: body, max_gpus: body.max_gpus ?? 4 };
        return { status: 200, body: stored };
      },
    });
    const { user } = renderApp("/account");

    const open = await screen.findByRole("button", { name: "Limits of bob" });
    // Accounts are listed by name, not newest first.
    expect(screen.getByRole("button", { name: "Next" })).toBeDisabled();
    expect(open).toHaveAttribute("aria-expanded", "false");
    await user.click(open);
    const form = await screen.findByRole("form", { name: "Limits of bob" });
    const gpus = within(form).getByLabelText("GPUs at once");
    expect(gpus).toHaveValue(null);
    expect(gpus).toHaveAccessibleDescription("In force: 4.");

    await user.type(gpus, "5000");
    await user.click(within(form).getByRole("button", { name: "Save limits" }));
    expect(await within(form).findByText("Expected `int` <= 1024")).toBeInTheDocument();
    expect(within(form).getByLabelText("GPUs at once")).toHaveAttribute("aria-invalid", "true");

    await user.clear(within(form).getByLabelText("GPUs at once"));
    await user.type(within(form).getByLabelText("GPUs at once"), "8");
    await user.type(within(form).getByLabelText("Longest run of a job (hours)"), "1.5");
    await user.click(within(form).getByRole("button", { name: "Save limits" }));
    expect(await screen.findByText("Saved the limits of bob.")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT").at(-1)?.body).toEqual({
      max_gpus: 8, max_queued: null, max_deployments: null, max_priority: null, max_run_h: 1.5,
    });
    expect(screen.getByLabelText("GPUs at once")).toHaveValue(8);
    expect(screen.getByLabelText("GPUs at once")).toHaveAccessibleDescription("In force: 8.");
  });
});
