import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { followLog, LOG_START, newLines, noticeOf, ReconnectingSocket } from "./socket";

/** A WebSocket double the test drives by hand. */
class FakeSocket {
  static made: FakeSocket[] = [];
  readyState = 0;
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: ((event: { code: number }) => void) | null = null;
  closed: number | null = null;
  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  send(frame: unknown) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
  close(code: number) {
    this.closed = code;
    this.readyState = 3;
  }
}

const create = (url: string) => new FakeSocket(url) as unknown as WebSocket;
const frame = (...seqs: number[]) => attemptFrame(1, ...seqs);
const attemptFrame = (attempt: number, ...seqs: number[]) => ({
  job_id: "j",
  attempt,
  lines: seqs.map((seq) => ({ seq, stream: "stdout", text: `line ${seq}` })),
});

beforeEach(() => {
  FakeSocket.made = [];
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

describe("newLines", () => {
  it("keeps lines after the last one seen, in order, and skips junk", () => {
    const text = JSON.stringify({ attempt: 1, lines: [{ seq: 3, text: "c" }, { seq: 1, text: "a" }, { seq: 2, text: "b" }, { nope: true }] });
    expect(newLines(text, { attempt: 1, seq: 1 }).map((l) => l.seq)).toEqual([2, 3]);
    expect(newLines("not json", LOG_START)).toEqual([]);
  });

  it("orders lines by attempt, then line number: a later attempt's first lines are new", () => {
    const second = JSON.stringify(attemptFrame(2, 1, 2));
    expect(newLines(second, { attempt: 1, seq: 300 }).map((l) => [l.attempt, l.seq])).toEqual([[2, 1], [2, 2]]);
    expect(newLines(JSON.stringify(attemptFrame(1, 299, 300)), { attempt: 2, seq: 1 })).toEqual([]);
  });
});

describe("followLog", () => {
  it("replays, follows, and after a drop resumes after the last line it showed", () => {
    const seen: number[] = [];
    const statuses: string[] = [];
    const follower = followLog({
      url: (after) => `ws://x/logs?after=${after}`,
      onLines: (lines) => seen.push(...lines.map((l) => l.seq)),
      onStatus: (s) => statuses.push(s),
      createSocket: create,
      retryDelaysMs: [100],
    });
    const first = FakeSocket.made[0]!;
    expect(first.url).toBe("ws://x/logs?after=0.0");
    first.open();
    first.send(frame(1, 2, 3));
    first.send(frame(3, 4)); // an overlap is shown once
    first.drop();
    expect(statuses.at(-1)).toBe("reconnecting");
    vi.advanceTimersByTime(100);
    const second = FakeSocket.made[1]!;
    expect(second.url).toBe("ws://x/logs?after=1.4");
    second.open();
    second.send(frame(5));
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(follower.last()).toEqual({ attempt: 1, seq: 5 });
    follower.stop();
    expect(second.closed).toBe(1000);
  });

  it("follows a retried job into its next attempt, whose lines start at 1 again", () => {
    const seen: string[] = [];
    const follower = followLog({ url: (after) => `ws://x/logs?after=${after}`, onLines: (lines) => seen.push(...lines.map((l) => `${l.attempt}.${l.seq}`)), createSocket: create, retryDelaysMs: [100] });
    const socket = FakeSocket.made[0]!;
    socket.open();
    socket.send(attemptFrame(1, 1, 2, 3));
    socket.send(attemptFrame(2, 1, 2));
    expect(seen).toEqual(["1.1", "1.2", "1.3", "2.1", "2.2"]);
    socket.drop();
    vi.advanceTimersByTime(100);
    expect(FakeSocket.made[1]!.url).toBe("ws://x/logs?after=2.2");
    follower.stop();
  });

  it("tells what the server said when the job's agent lost it, and does not reconnect (4410)", () => {
    const notices: string[] = [];
    const statuses: string[] = [];
    followLog({ url: () => "ws://x", onLines: () => {}, onNotice: (n) => notices.push(`${n.reason}: ${n.message}`), onStatus: (s, code) => statuses.push(`${s}:${code ?? ""}`), createSocket: create });
    const socket = FakeSocket.made[0]!;
    socket.open();
    socket.send({ job_id: "j", notice: { state: "pending", reason: "requeued", message: "agent a went offline" } });
    socket.drop(4410);
    vi.advanceTimersByTime(60_000);
    expect(notices).toEqual(["requeued: agent a went offline"]);
    expect(FakeSocket.made).toHaveLength(1);
    expect(statuses.at(-1)).toBe("ended:4410");
    expect(noticeOf(JSON.stringify(frame(1)))).toBeNull();
  });

  it("stops for good when the job is not the caller's (4404)", () => {
    const statuses: string[] = [];
    followLog({ url: () => "ws://x", onLines: () => {}, onStatus: (s, code) => statuses.push(`${s}:${code ?? ""}`), createSocket: create });
    FakeSocket.made[0]!.drop(4404);
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.made).toHaveLength(1);
    expect(statuses.at(-1)).toBe("ended:4404");
  });
});

describe("ReconnectingSocket", () => {
  it("waits longer after each failure, and starts over once connected", () => {
    const socket = new ReconnectingSocket({ url: () => "ws://x", onMessage: () => {}, createSocket: create, retryDelaysMs: [10, 50] });
    socket.start();
    FakeSocket.made[0]!.drop();
    vi.advanceTimersByTime(10);
    FakeSocket.made[1]!.drop();
    vi.advanceTimersByTime(10);
    expect(FakeSocket.made).toHaveLength(2);
    vi.advanceTimersByTime(40);
    expect(FakeSocket.made).toHaveLength(3);
    socket.stop();
    FakeSocket.made[2]!.drop();
    vi.advanceTimersByTime(1000);
    expect(FakeSocket.made).toHaveLength(3);
  });

  it("asks an async URL (a fresh ticket) before every attempt, and opens only what it got", async () => {
    let asked = 0;
    const socket = new ReconnectingSocket({
      url: async () => `ws://x?ticket=t${++asked}`,
      onMessage: () => {},
      createSocket: create,
      retryDelaysMs: [10],
    });
    socket.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.made.map((s) => s.url)).toEqual(["ws://x?ticket=t1"]);
    FakeSocket.made[0]!.drop();
    await vi.advanceTimersByTimeAsync(10);
    expect(FakeSocket.made.map((s) => s.url)).toEqual(["ws://x?ticket=t1", "ws://x?ticket=t2"]);
    socket.stop();
  });

  it("tries again when the URL cannot be had, and ends when it is refused as unauthorized", async () => {
    const statuses: string[] = [];
    const answers = [new Error("network"), Object.assign(new Error("expired"), { status: 401 })];
    const socket = new ReconnectingSocket({
      url: () => Promise.reject(answers.shift()),
      onMessage: () => {},
      onStatus: (s, code) => statuses.push(`${s}:${code ?? ""}`),
      createSocket: create,
      retryDelaysMs: [10],
    });
    socket.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(statuses.at(-1)).toBe("reconnecting:");
    await vi.advanceTimersByTimeAsync(1000);
    expect(statuses.at(-1)).toBe("ended:4401");
    expect(FakeSocket.made).toHaveLength(0);
  });

  it("opens nothing when stopped while the URL was being asked for", async () => {
    const socket = new ReconnectingSocket({ url: async () => "ws://x", onMessage: () => {}, createSocket: create });
    socket.start();
    socket.stop();
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.made).toHaveLength(0);
  });
});
