import { describe, expect, it } from "vitest";

import { SubmitKeys, newIdempotencyKey } from "./submitKeys";

describe("a form's idempotency keys", () => {
  it("repeats the key for the same request, and not after a change or a success", () => {
    const keys = new SubmitKeys();
    const first = keys.keyFor({ model: "tiny", gpu_count: 1 });
    expect(first).toMatch(/^[0-9a-f]{32}$/);
    expect(keys.keyFor({ model: "tiny", gpu_count: 1 })).toBe(first);
    const changed = keys.keyFor({ model: "tiny", gpu_count: 2 });
    expect(changed).not.toBe(first);
    keys.succeeded();
    expect(keys.keyFor({ model: "tiny", gpu_count: 2 })).not.toBe(changed);
  });

  it("draws fresh keys", () => {
    expect(newIdempotencyKey()).not.toBe(newIdempotencyKey());
  });
});
