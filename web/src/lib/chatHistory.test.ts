import { describe, expect, it } from "vitest";

import { MAX_CONVERSATIONS, MAX_MESSAGES, clearChat, loadChat, pruneChats, saveChat } from "./chatHistory";

describe("chat history", () => {
  it("keeps a conversation per deployment, and forgets an emptied one", () => {
    saveChat("dep_a", [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }]);
    saveChat("dep_b", [{ role: "user", content: "other" }]);
    expect(loadChat("dep_a")).toEqual([{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }]);
    expect(loadChat("dep_b")).toHaveLength(1);
    expect(loadChat("dep_none")).toEqual([]);
    saveChat("dep_a", []);
    expect(window.localStorage.getItem("llmct.chat.dep_a")).toBeNull();
    clearChat("dep_b");
    expect(loadChat("dep_b")).toEqual([]);
  });

  it("ignores what it cannot read, and messages of the wrong shape", () => {
    window.localStorage.setItem("llmct.chat.dep_x", "{not json");
    expect(loadChat("dep_x")).toEqual([]);
    window.localStorage.setItem("llmct.chat.dep_y", JSON.stringify({ messages: [{ role: "user", content: "ok" }, { role: "tool", content: 1 }, null], updated: 1 }));
    expect(loadChat("dep_y")).toEqual([{ role: "user", content: "ok" }]);
  });

  it("keeps which model gave each answer", () => {
    const turns = [{ role: "user" as const, content: "hi" }, { role: "assistant" as const, content: "hello", model: "my-adapter" }];
    saveChat("dep_m", turns);
    expect(loadChat("dep_m")).toEqual(turns);
    window.localStorage.setItem("llmct.chat.dep_n", JSON.stringify({ messages: [{ role: "assistant", content: "x", model: 3 }], updated: 1 }));
    expect(loadChat("dep_n")).toEqual([]);
  });

  it("keeps the newest messages of a long conversation", () => {
    const long = Array.from({ length: MAX_MESSAGES + 10 }, (_, i) => ({ role: "user" as const, content: String(i) }));
    saveChat("dep_long", long);
    const kept = loadChat("dep_long");
    expect(kept).toHaveLength(MAX_MESSAGES);
    expect(kept[0]!.content).toBe("10");
  });

  it("makes room by forgetting the least recently used conversations", () => {
    for (let i = 0; i < MAX_CONVERSATIONS + 3; i += 1) saveChat(`dep_${i}`, [{ role: "user", content: "x" }], 1000 + i);
    const kept = Object.keys(window.localStorage).filter((k) => k.startsWith("llmct.chat."));
    expect(kept).toHaveLength(MAX_CONVERSATIONS);
    expect(loadChat("dep_0")).toEqual([]);
    expect(loadChat(`dep_${MAX_CONVERSATIONS + 2}`)).toHaveLength(1);
    window.localStorage.setItem("llmct.lang", "zh");
    pruneChats(0);
    expect(Object.keys(window.localStorage)).toEqual(["llmct.lang"]);
  });
});
