import { describe, expect, it } from "vitest";

import { SseParser, chatEvent } from "./sse";

describe("SseParser", () => {
  it("completes events only at a blank line, however the text is split", () => {
    const text = 'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n';
    for (let cut = 1; cut < text.length; cut += 1) {
      const parser = new SseParser();
      const events = [...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut)), ...parser.end()];
      expect(events).toEqual(['{"a":1}', '{"b":2}', "[DONE]"]);
    }
  });

  it("reads CRLF and CR line ends, even with the pair split across pieces", () => {
    const parser = new SseParser();
    expect(parser.push("data: one\r")).toEqual([]);
    expect(parser.push("\n\r\ndata: two\r\r")).toEqual(["one"]); // the last "\r" may be half of "\r\n"
    expect(parser.push("\ndata: three\r\r:")).toEqual(["two", "three"]);
  });

  it("joins multi-line data, skips comments and other fields, keeps data without a space", () => {
    const parser = new SseParser();
    const events = parser.push(": keep-alive\nevent: message\nid: 7\ndata: first\ndata:second\ndata\n\n");
    expect(events).toEqual(["first\nsecond\n"]);
  });

  it("counts the last event when the stream ends without a blank line", () => {
    const parser = new SseParser();
    expect(parser.push("data: [DONE]")).toEqual([]);
    expect(parser.end()).toEqual(["[DONE]"]);
  });

  it("takes a bare JSON line (the agent's error body mid-stream) as an event", () => {
    const parser = new SseParser();
    expect(parser.push('data: {"x":1}\n\n{"error": {"message": "boom"}}\n')).toEqual(['{"x":1}', '{"error": {"message": "boom"}}']);
  });
});

describe("chatEvent", () => {
  it("reads OpenAI chunks, the end, errors and anything else", () => {
    expect(chatEvent('{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Ot"},"finish_reason":null}]}')).toEqual({
      type: "delta",
      content: "Ot",
      finishReason: null,
    });
    expect(chatEvent('{"choices":[{"delta":{},"finish_reason":"stop"}]}')).toEqual({ type: "delta", content: "", finishReason: "stop" });
    expect(chatEvent('{"model":"my-adapter","choices":[{"delta":{"content":"Hi"}}]}')).toEqual({
      type: "delta",
      content: "Hi",
      finishReason: null,
      model: "my-adapter",
    });
    expect(chatEvent(" [DONE] ")).toEqual({ type: "done" });
    expect(chatEvent('{"error":{"message":"the model server failed"}}')).toEqual({ type: "error", message: "the model server failed" });
    expect(chatEvent('{"choices":[],"usage":{"completion_tokens":3}}')).toEqual({ type: "other" });
    expect(chatEvent("not json")).toEqual({ type: "other" });
  });
});
