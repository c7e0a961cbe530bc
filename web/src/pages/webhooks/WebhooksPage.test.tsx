import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { apiError, mockFetch } from "../../test/fetchMock";
import { ADMIN, renderApp, signIn, USER } from "../../test/render";

const HOOK = {
  id: "wh_1",
  url: "https://hooks.example.com/llmct",
  events: ["job.failed", "job.succeeded"],
  description: "ci",
  enabled: true,
  fleet: false,
  created_at: "2026-12-01T00:00:00Z",
  updated_at: "2026-12-01T00:00:00Z",
};
const SECRET = "whsec_c2VjcmV0LXNob3duLW9uY2Utb25seS1mb3ItdGVzdHM=";
const DELIVERY = {
  id: "msg_1",
  event_type: "job.failed",
  state: "failed",
  attempts: 8,
  next_attempt_at: null,
  last_status_code: 500,
  last_error: "answered 500: oops",
  last_latency_ms: 42,
  created_at: "2026-12-01T01:00:00Z",
  delivered_at: null,
  payload: { type: "job.failed", id: "evt_1", created_at: 1, data: { id: "job_1", object: "job" } },
};

function routes(extra: Parameters<typeof mockFetch>[0] = {}, me = USER) {
  return mockFetch({
    "GET /api/auth/me": { status: 200, body: me },
    "GET /api/webhooks": { status: 200, body: { items: [HOOK], next_cursor: null } },
    ...extra,
  });
}

describe("the webhooks page", () => {
  it("is in the navigation and lists the caller's endpoints", async () => {
    signIn();
    routes();
    const { user, current } = renderApp("/jobs");
    await user.click(await screen.findByRole("link", { name: "Webhooks" }));
    expect(current()).toBe("/webhooks");
    expect(await screen.findByRole("row", { name: /hooks\.example\.com/ })).toHaveTextContent("job.failed, job.succeeded");
  });

  it("adds an endpoint and shows its secret once, with a copy button", async () => {
    signIn();
    const { calls } = routes({
      "POST /api/webhooks": (call) => ({ status: 201, body: { ...HOOK, id: "wh_2", ...(call.body as object), secret: SECRET } }),
    });
    const { user } = renderApp("/webhooks");
    await user.type(await screen.findByLabelText("URL"), "https://new.example.com/h");
    await user.click(screen.getByRole("checkbox", { name: "deployment.ready" }));
    await user.click(screen.getByRole("button", { name: "Add endpoint" }));
    const secret = await screen.findByLabelText("Signing secret of https://new.example.com/h");
    expect(secret).toHaveValue(SECRET);
    expect(screen.getByRole("button", { name: /copy/i })).toBeInTheDocument();
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({
      url: "https://new.example.com/h",
      events: ["job.succeeded", "job.failed", "deployment.ready"],
      description: "",
      fleet: false,
      enabled: true,
    });
    expect(screen.queryByRole("checkbox", { name: "agent.offline" })).not.toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "I have stored it" }));
    expect(screen.queryByDisplayValue(SECRET)).not.toBeInTheDocument();
    expect(screen.getByRole("row", { name: /new\.example\.com/ })).toBeInTheDocument();
  });

  it("shows a refused URL on the field", async () => {
    signIn();
    routes({ "POST /api/webhooks": apiError(422, "invalid_field", "url: 10.0.0.1 is not allowed", "url") });
    const { user } = renderApp("/webhooks");
    await user.type(await screen.findByLabelText("URL"), "http://10.0.0.1/");
    await user.click(screen.getByRole("button", { name: "Add endpoint" }));
    expect(await screen.findByText("url: 10.0.0.1 is not allowed")).toBeInTheDocument();
  });

  it("lets an admin ask for fleet events", async () => {
    signIn();
    const { calls } = routes(
      { "POST /api/webhooks": (call) => ({ status: 201, body: { ...HOOK, ...(call.body as object), secret: SECRET } }) },
      ADMIN,
    );
    const { user } = renderApp("/webhooks");
    await user.type(await screen.findByLabelText("URL"), "https://ops.example.com/h");
    await user.click(screen.getByRole("checkbox", { name: "agent.offline" }));
    await user.click(screen.getByRole("button", { name: "Add endpoint" }));
    await screen.findByLabelText("Signing secret of https://ops.example.com/h");
    expect(calls.find((c) => c.method === "POST")?.body).toMatchObject({ fleet: true });
  });

  it("disables, sends a test, and deletes after asking", async () => {
    signIn();
    const { calls } = routes({
      "PATCH /api/webhooks/wh_1": (call) => ({ status: 200, body: { ...HOOK, ...(call.body as object) } }),
      "POST /api/webhooks/wh_1/test": { status: 202, body: { ...DELIVERY, event_type: "webhook.test", state: "pending" } },
      "DELETE /api/webhooks/wh_1": { status: 204 },
    });
    const { user } = renderApp("/webhooks");
    const row = await screen.findByRole("row", { name: /hooks\.example\.com/ });
    await user.click(within(row).getByRole("button", { name: `Send a test event to ${HOOK.url}` }));
    expect(await screen.findByText(`A test event is on its way to ${HOOK.url}.`)).toBeInTheDocument();
    await user.click(within(row).getByRole("button", { name: `Disable ${HOOK.url}` }));
    expect(await within(row).findByText("Disabled")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "PATCH")?.body).toEqual({ enabled: false });
    await user.click(within(row).getByRole("button", { name: `Delete ${HOOK.url}` }));
    await user.click(within(row).getByRole("button", { name: "Yes, delete" }));
    expect(await screen.findByText("No webhook endpoints yet.")).toBeInTheDocument();
  });

  it("shows deliveries with their answer and sends one again", async () => {
    signIn();
    const { calls } = routes({
      "GET /api/webhooks/wh_1/deliveries": { status: 200, body: { items: [DELIVERY], next_cursor: null } },
      "POST /api/webhooks/wh_1/deliveries/msg_1/resend": {
        status: 202,
        body: { ...DELIVERY, id: "msg_2", state: "pending", attempts: 0, last_status_code: null, last_latency_ms: null },
      },
    });
    const { user } = renderApp("/webhooks");
    await user.click(await screen.findByRole("button", { name: `Deliveries of ${HOOK.url}` }));
    const log = (await screen.findAllByRole("region", { name: "Deliveries" }))[0] as HTMLElement;
    const failed = await within(log).findByRole("row", { name: /msg_1/ });
    expect(failed).toHaveTextContent("Failed");
    expect(failed).toHaveTextContent("500");
    expect(failed).toHaveTextContent("42 ms");
    await user.click(within(failed).getByRole("button", { name: "Send msg_1 again" }));
    expect(await within(log).findByRole("row", { name: /msg_2/ })).toHaveTextContent("Pending");
    expect(calls.some((c) => c.method === "POST" && c.path.endsWith("/msg_1/resend"))).toBe(true);
  });
});
