import { screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../test/fetchMock";
import { renderApp } from "../test/render";

async function fillAndSubmit(user: ReturnType<typeof renderApp>["user"], password = "a-long-passphrase-42") {
  await user.type(screen.getByLabelText("Username"), "ada");
  await user.type(screen.getByLabelText("Password"), password);
  await user.type(screen.getByLabelText("Invite code"), "team-invite");
  await user.click(screen.getByRole("button", { name: "Create account" }));
}

describe("RegisterPage", () => {
  it("shows a weak password error next to the password field and focuses it", async () => {
    mockFetch({
      "POST /api/auth/register": apiError(422, "weak_password", "password must be at least 10 characters", "password"),
    });
    const { user } = renderApp("/register");

    await fillAndSubmit(user, "short");

    const password = screen.getByLabelText("Password");
    await waitFor(() => expect(password).toHaveAttribute("aria-invalid", "true"));
    expect(password).toHaveAccessibleDescription(expect.stringContaining("password must be at least 10 characters"));
    expect(password).toHaveFocus();
    expect(screen.getByLabelText("Username")).not.toHaveAttribute("aria-invalid");
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });

  it("puts a taken username next to the username field", async () => {
    mockFetch({ "POST /api/auth/register": apiError(409, "username_taken", "username 'ada' is taken", "username") });
    const { user } = renderApp("/register");

    await fillAndSubmit(user);

    const username = await screen.findByLabelText("Username");
    await waitFor(() => expect(username).toHaveAccessibleDescription(expect.stringContaining("username 'ada' is taken")));
  });

  it("puts a refused invite next to the invite field", async () => {
    mockFetch({
      "POST /api/auth/register": apiError(403, "invalid_invite_code", "the invite code is missing, wrong, spent or expired", "invite_code"),
    });
    const { user } = renderApp("/register");

    await fillAndSubmit(user);

    const invite = screen.getByLabelText("Invite code");
    await waitFor(() => expect(invite).toHaveAttribute("aria-invalid", "true"));
    expect(invite).toHaveAccessibleDescription(expect.stringContaining("the invite code is missing"));
  });

  it("shows an error without a field above the form", async () => {
    mockFetch({ "POST /api/auth/register": apiError(503, "store_unavailable", "the database is unavailable") });
    const { user } = renderApp("/register");

    await fillAndSubmit(user);

    expect(await screen.findByRole("alert")).toHaveTextContent("the database is unavailable");
  });

  it("registers, then sends the user to log in with the username filled in", async () => {
    const { calls } = mockFetch({
      "POST /api/auth/register": {
        status: 201,
        body: { id: "usr_1", username: "ada", role: "user", created_at: "2025-01-01T00:00:00Z" },
      },
    });
    const { user, current } = renderApp("/register?invite=team-invite");

    expect(screen.getByLabelText("Invite code")).toHaveValue("team-invite");
    await user.type(screen.getByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "a-long-passphrase-42");
    await user.click(screen.getByRole("button", { name: "Create account" }));

    expect(await screen.findByRole("heading", { level: 1, name: "Log in" })).toBeInTheDocument();
    expect(current()).toBe("/login?reason=registered&username=ada");
    expect(screen.getByLabelText("Username")).toHaveValue("ada");
    expect(calls[0]?.body).toEqual({ username: "ada", password: "a-long-passphrase-42", invite_code: "team-invite" });
    expect(calls[0]?.headers.Authorization).toBeUndefined();
  });
});
