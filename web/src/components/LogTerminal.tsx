import "@xterm/xterm/css/xterm.css";

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { useEffect, useRef } from "react";

import { followLog, type LogLine, type LogNotice, type SocketStatus } from "../lib/socket";

const SYSTEM = "\x1b[36m"; // the platform's own lines (queued, started, finished) in cyan
const WARNING = "\x1b[33m"; // what the platform says about the log itself (a new attempt, a lost agent)
const RESET = "\x1b[0m";

/** One log line as the terminal writes it. */
export function terminalText(line: LogLine): string {
  const text = line.text.replace(/\r?\n$/, "");
  return line.stream === "system" ? `${SYSTEM}${text}${RESET}\r\n` : `${text}\r\n`;
}

/** The lines the terminal writes between attempts and after the last frame, in the page's language. */
export interface LogTexts {
  attempt: (attempt: number) => string;
  notice: (notice: LogNotice) => string;
}

/** What goes before `lines`: a rule when they begin another attempt than the last line shown. */
export function withAttemptRules(lines: LogLine[], previous: number | null, texts: LogTexts): string {
  let out = "";
  let attempt = previous;
  for (const line of lines) {
    if (attempt !== null && line.attempt !== attempt) out += `${WARNING}── ${texts.attempt(line.attempt)} ──${RESET}\r\n`;
    attempt = line.attempt;
    out += terminalText(line);
  }
  return out;
}

interface LogTerminalProps {
  /** The logs WebSocket URL resuming after a position (`<attempt>.<seq>`), with its one-time ticket (a promise). */
  url: (after: string) => string | Promise<string>;
  label: string;
  texts: LogTexts;
  onStatus?: (status: SocketStatus, closeCode?: number) => void;
  onLines?: (count: number) => void;
}

/**
 * The job's log in a real terminal (xterm.js): the stored lines are replayed, then new ones follow as they
 * come; after a drop it reconnects by itself from the last line it showed. Colours and progress bars the
 * engine prints render as they would in a shell.
 */
export default function LogTerminal({ url, label, texts, onStatus, onLines }: LogTerminalProps) {
  const host = useRef<HTMLDivElement>(null);
  const callbacks = useRef({ url, texts, onStatus, onLines });
  callbacks.current = { url, texts, onStatus, onLines };

  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const terminal = new Terminal({
      convertEol: true,
      disableStdin: true,
      cursorStyle: "bar",
      cursorInactiveStyle: "none",
      scrollback: 20_000,
      fontSize: 13,
      fontFamily: 'ui-monospace, "SFMono-Regular", "JetBrains Mono", Menlo, Consolas, monospace',
      screenReaderMode: false,
      theme: { background: "#10141a", foreground: "#dfe5ee" },
    });
    const fit = new FitAddon();
    terminal.loadAddon(fit);
    terminal.open(element);
    const refit = () => {
      try {
        fit.fit();
      } catch {
        // not laid out yet (hidden tab): the next resize fits it
      }
    };
    refit();
    const observer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(refit);
    observer?.observe(element);

    let count = 0;
    let attempt: number | null = null;
    const follower = followLog({
      url: (after) => callbacks.current.url(after),
      onLines: (lines) => {
        terminal.write(withAttemptRules(lines, attempt, callbacks.current.texts));
        attempt = lines[lines.length - 1]!.attempt;
        count += lines.length;
        callbacks.current.onLines?.(count);
      },
      onNotice: (notice) => terminal.write(`${WARNING}${callbacks.current.texts.notice(notice)}${RESET}\r\n`),
      onStatus: (status, code) => callbacks.current.onStatus?.(status, code),
    });
    return () => {
      follower.stop();
      observer?.disconnect();
      terminal.dispose();
    };
  }, []);

  return <div ref={host} className="terminal" role="log" aria-label={label} tabIndex={0} />;
}
