/**
 * A WebSocket that comes back by itself: after a drop it reconnects with growing delays, asking the URL
 * again each time (so a log follower can resume after the last line it saw, with a fresh one-time ticket).
 * Close codes that mean "never" (not found, not allowed) end it, and so does a URL refused as unauthorized.
 */

export type SocketStatus = "connecting" | "open" | "reconnecting" | "ended";

/** Closes after which reconnecting cannot help: bad request, unknown job, bad credentials, the job's agent lost it. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1008, 4400, 4401, 4403, 4404, 4410]);
export const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];

export interface ReconnectingSocketOptions {
  /** The URL to open, asked again before every attempt (a promise when it needs a call first: a ticket). */
  url: () => string | Promise<string>;
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
  private attempt = 0;

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
    this.options.onStatus?.(status);
    const attempt = ++this.attempt;
    const current = () => !this.stopped && attempt === this.attempt;
    let address: string | Promise<string>;
    try {
      address = this.options.url();
    } catch (error) {
      this.refused(error);
      return;
    }
    if (typeof address === "string") {
      this.open(address);
      return;
    }
    address.then(
      (ready) => {
        if (current()) this.open(ready);
      },
      (error: unknown) => {
        if (current()) this.refused(error);
      },
    );
  }

  /** The URL could not be had: unauthorized ends it (the session is over), anything else is tried again. */
  private refused(error: unknown): void {
    const status = (error as { status?: unknown } | null)?.status;
    if (status === 401 || status === 403) {
      this.options.onStatus?.("ended", 4000 + status);
      return;
    }
    this.retry();
  }

  private open(url: string): void {
    const { createSocket, onStatus } = this.options;
    const socket = (createSocket ?? ((u: string) => new WebSocket(u)))(url);
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
  /** The attempt (dispatch) of the job that printed it: line numbers start at 1 again in each. */
  attempt: number;
}

/** Where a viewer is in a job's log: line `seq` of attempt `attempt`; resumed with `?after=<attempt>.<seq>`. */
export interface LogPosition {
  attempt: number;
  seq: number;
}

export const LOG_START: LogPosition = { attempt: 0, seq: 0 };

/** The last frame of a job whose agent lost it (the socket closes with 4410 after it). */
export interface LogNotice {
  state: string;
  reason: string | null;
  message: string | null;
}

export function isAfter(line: LogPosition, after: LogPosition): boolean {
  return line.attempt > after.attempt || (line.attempt === after.attempt && line.seq > after.seq);
}

export function positionText(position: LogPosition): string {
  return `${position.attempt}.${position.seq}`;
}

/** Lines of a logs frame that come after `after`, in order; anything malformed is skipped. */
export function newLines(frame: string, after: LogPosition): LogLine[] {
  const parsed = parseFrame(frame);
  const lines = parsed?.lines;
  if (!Array.isArray(lines)) return [];
  const attempt = typeof parsed?.attempt === "number" ? parsed.attempt : 0;
  return lines
    .filter((line): line is Omit<LogLine, "attempt"> => typeof line?.seq === "number" && typeof line?.text === "string")
    .map((line) => ({ ...line, attempt }))
    .filter((line) => isAfter(line, after))
    .sort((a, b) => a.seq - b.seq);
}

/** The notice of a frame that carries one, else null. */
export function noticeOf(frame: string): LogNotice | null {
  const notice = parseFrame(frame)?.notice as Partial<LogNotice> | undefined;
  if (!notice || typeof notice.state !== "string") return null;
  return { state: notice.state, reason: notice.reason ?? null, message: notice.message ?? null };
}

function parseFrame(frame: string): { lines?: unknown; attempt?: unknown; notice?: unknown } | null {
  try {
    const parsed: unknown = JSON.parse(frame);
    return parsed && typeof parsed === "object" ? parsed : null;
  } catch {
    return null;
  }
}

/**
 * Follow a job's log: replay, then live; after a drop it reconnects with `?after=<attempt>.<seq>`, so no line
 * is shown twice or lost, whichever attempt of the job printed it.
 */
export function followLog(options: {
  url: (after: string) => string | Promise<string>;
  onLines: (lines: LogLine[]) => void;
  onNotice?: (notice: LogNotice) => void;
  onStatus?: (status: SocketStatus, closeCode?: number) => void;
  createSocket?: (url: string) => WebSocket;
  retryDelaysMs?: number[];
}): { stop: () => void; last: () => LogPosition } {
  let last = LOG_START;
  const socket = new ReconnectingSocket({
    url: () => options.url(positionText(last)),
    onMessage: (data) => {
      const notice = noticeOf(data);
      if (notice) {
        options.onNotice?.(notice);
        return;
      }
      const lines = newLines(data, last);
      if (lines.length === 0) return;
      last = lines[lines.length - 1]!;
      options.onLines(lines);
    },
    onStatus: options.onStatus,
    createSocket: options.createSocket,
    retryDelaysMs: options.retryDelaysMs,
  });
  socket.start();
  return { stop: () => socket.stop(), last: () => ({ attempt: last.attempt, seq: last.seq }) };
}
