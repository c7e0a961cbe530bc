/** A fresh random Idempotency-Key (32 hex digits; `crypto.getRandomValues` works on plain http too). */
export function newIdempotencyKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The Idempotency-Key of a form's submits: the same request sent again (a double click, a retry after a network
 * error or a 503) carries the same key, so the server makes one job of it and answers the first answer again; a
 * changed request, or one after the last succeeded, gets a fresh key.
 */
export class SubmitKeys {
  private last: { request: string; key: string } | null = null;

  keyFor(request: unknown): string {
    const text = JSON.stringify(request);
    if (this.last?.request !== text) this.last = { request: text, key: newIdempotencyKey() };
    return this.last.key;
  }

  /** The request was accepted: the next one is a new request, even with the same fields. */
  succeeded(): void {
    this.last = null;
  }
}
