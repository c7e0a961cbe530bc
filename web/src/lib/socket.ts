/**
 * A WebSocket that comes back by itself: after a drop it reconnects with growing delays, asking the URL
 * again each time (so a log follower can resume after the last line it saw). Close codes that mean
 * "never" (not found, not allowed) end it.
 */

export type SocketStatus = "connecting" | "open" | "reconnecting" | "ended";

/** Closes after which reconnecting cannot help: unknown job, bad credentials. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1008, 4401, 4403, 4404]);
export const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];

export interface ReconnectingSocketOptions {
  /** The URL to open, asked again before every attempt. */
  url: () => string;
  onMessage: (data: string) => void;
  onStatus?: (status: SocketStatus, closeCode?: number) => void;
  retryDelaysMs?: number[];
  /** For tests. */
  createSocket?: (url: string) => WebSocket;
}

export class ReconnectingSocket {
  private socket: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private stopped = false;

  constructor(private readonly options: ReconnectingSocketOptions) {}

  start(): void {
    this.stopped = false;
    this.connect("connecting");
  }

  /** Close for good (the page went away). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= 1) socket.close(1000, "done");
  }

  private connect(status: SocketStatus): void {
    const { url, createSocket, onStatus } = this.options;
    onStatus?.(status);
    const socket = (createSocket ?? ((u: string) => new WebSocket(u)))(url());
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.failures = 0;
      onStatus?.("open");
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket === socket && typeof event.data === "string") this.options.onMessage(event.data);
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket || this.stopped) return;
      this.socket = null;
      if (FINAL_CLOSE_CODES.has(event.code)) {
        onStatus?.("ended", event.code);
        return;
      }
      this.retry();
    };
  }

  private retry(): void {
    const delays = this.options.retryDelaysMs ?? RETRY_DELAYS_MS;
    const delay = delays[Math.min(this.failures, delays.length - 1)] ?? 1000;
    this.failures += 1;
    this.options.onStatus?.("reconnecting");
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.connect("reconnecting");
    }, delay);
  }
}

export interface LogLine {
  seq: number;
  stream: string;
  at?: string;
  text: string;
}

/** Lines of a logs frame that come after `after`, in order; anything malformed is skipped. */
export function newLines(frame: string, after: number): LogLine[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(frame);
  } catch {
    return [];
  }
  const lines = (parsed as { lines?: unknown }).lines;
  if (!Array.isArray(lines)) return [];
  return lines
    .filter((line): line is LogLine => typeof line?.seq === "number" && typeof line?.text === "string")
    .filter((line) => line.seq > after)
    .sort((a, b) => a.seq - b.seq);
}

/**
 * Follow a job's log: replay, then live; after a drop it reconnects with `?after=<last seq>`, so no line
 * is shown twice or lost.
 */
export function followLog(options: {
  url: (after: number) => string;
  onLines: (lines: LogLine[]) => void;
  onStatus?: (status: SocketStatus, closeCode?: number) => void;
  createSocket?: (url: string) => WebSocket;
  retryDelaysMs?: number[];
}): { stop: () => void; lastSeq: () => number } {
  let last = 0;
  const socket = new ReconnectingSocket({
    url: () => options.url(last),
    onMessage: (data) => {
      const lines = newLines(data, last);
      if (lines.length === 0) return;
      last = lines[lines.length - 1]!.seq;
      options.onLines(lines);
    },
    onStatus: options.onStatus,
    createSocket: options.createSocket,
    retryDelaysMs: options.retryDelaysMs,
  });
  socket.start();
  return { stop: () => socket.stop(), lastSeq: () => last };
}
