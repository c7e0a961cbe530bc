/** Calls to /api/webhooks: the caller's endpoints, their deliveries, a test and a resend (docs/webhooks.md). */

import { api, ok } from "./client";
import type { components } from "./schema";

type Schemas = components["schemas"];

export type Webhook = Schemas["Webhook"];
/** Returned once, at creation: `secret` is never shown again. */
export type WebhookCreated = Schemas["WebhookCreated"];
export type WebhookCreate = Schemas["WebhookCreate"];
export type WebhookEvent = WebhookCreate["events"][number];
export type Delivery = Schemas["Delivery"];

export const WEBHOOK_EVENTS: WebhookEvent[] = [
  "job.succeeded",
  "job.failed",
  "job.cancelled",
  "checkpoint.saved",
  "deployment.ready",
  "deployment.stopped",
  "deployment.failed",
];
/** Admins' fleet endpoints only. */
export const FLEET_EVENTS: WebhookEvent[] = ["agent.offline"];

const hook = (webhook_id: string) => ({ params: { path: { webhook_id } } });

export const webhooksApi = {
  list: (signal?: AbortSignal) =>
    ok(api.GET("/api/webhooks", { params: { query: { limit: 200 } }, signal })).then((page) => page.items),
  create: (body: WebhookCreate) => ok(api.POST("/api/webhooks", { body })),
  setEnabled: (id: string, enabled: boolean) => ok(api.PATCH("/api/webhooks/{webhook_id}", { ...hook(id), body: { enabled } })),
  remove: (id: string) => ok(api.DELETE("/api/webhooks/{webhook_id}", hook(id))),
  test: (id: string) => ok(api.POST("/api/webhooks/{webhook_id}/test", hook(id))),
  deliveries: (id: string, signal?: AbortSignal) =>
    ok(api.GET("/api/webhooks/{webhook_id}/deliveries", { params: { path: { webhook_id: id }, query: { limit: 50 } }, signal })),
  resend: (id: string, deliveryId: string) =>
    ok(
      api.POST("/api/webhooks/{webhook_id}/deliveries/{delivery_id}/resend", {
        params: { path: { webhook_id: id, delivery_id: deliveryId } },
      }),
    ),
};
