/**
 * Server-sent events read as they arrive (fetch + ReadableStream: EventSource can neither POST nor send the
 * Bearer header), and the OpenAI chunk shape the chat routes stream.
 */

/**
 * An incremental parser: feed it text in any pieces, get back the `data` of each event it completed.
 * Multi-line data is joined with "\n"; comments (`:`) and other fields are skipped. A bare JSON line also
 * counts as an event: the agent sends its error body that way when the model server fails mid-stream.
 */
export class SseParser {
  private buffer = "";
  private data: string[] = [];

  push(text: string): string[] {
    this.buffer += text;
    const events: string[] = [];
    // A trailing "\r" may be the first half of "\r\n": keep it until the next piece.
    const lines = this.buffer.split(/\r\n|\n|\r(?!$)/);
    this.buffer = lines.pop() ?? "";
    for (const line of lines) this.line(line, events);
    return events;
  }

  /** The stream ended: the event still open (no blank line after it) counts. */
  end(): string[] {
    const events: string[] = [];
    const rest = this.buffer.replace(/\r$/, "");
    this.buffer = "";
    if (rest) this.line(rest, events);
    this.line("", events);
    return events;
  }

  private line(line: string, events: string[]): void {
    if (line === "") {
      if (this.data.length) events.push(this.data.join("\n"));
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    if (line.startsWith("{") && this.data.length === 0) {
      events.push(line);
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    if (field !== "data") return;
    const value = colon === -1 ? "" : line.slice(colon + 1);
    this.data.push(value.startsWith(" ") ? value.slice(1) : value);
  }
}

export type ChatEvent =
  /** `model`: the name the engine answered as (a deployment's id for its base model, an adapter's name for it). */
  | { type: "delta"; content: string; finishReason: string | null; model?: string }
  | { type: "done" }
  | { type: "error"; message: string }
  | { type: "other" };

/** What one event of an OpenAI chat stream says: a piece of the answer, the end, an error, or nothing to show. */
export function chatEvent(data: string): ChatEvent {
  if (data.trim() === "[DONE]") return { type: "done" };
  let chunk: unknown;
  try {
    chunk = JSON.parse(data);
  } catch {
    return { type: "other" };
  }
  if (typeof chunk !== "object" || chunk === null) return { type: "other" };
  const error = (chunk as { error?: unknown }).error;
  if (error) {
    const message = typeof error === "object" && error !== null ? (error as { message?: unknown }).message : error;
    return { type: "error", message: typeof message === "string" ? message : "the model server failed" };
  }
  const { choices, model } = chunk as { choices?: { delta?: { content?: unknown }; finish_reason?: unknown }[]; model?: unknown };
  const choice = choices?.[0];
  if (!choice) return { type: "other" };
  const content = typeof choice.delta?.content === "string" ? choice.delta.content : "";
  const finishReason = typeof choice.finish_reason === "string" ? choice.finish_reason : null;
  return { type: "delta", content, finishReason, ...(typeof model === "string" && model ? { model } : {}) };
}
