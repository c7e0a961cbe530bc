import "@xterm/xterm/css/xterm.css";

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { useEffect, useRef } from "react";

import { followLog, type LogLine, type SocketStatus } from "../lib/socket";

const SYSTEM = "\x1b[36m"; // the platform's own lines (queued, started, finished) in cyan
const RESET = "\x1b[0m";

/** One log line as the terminal writes it. */
export function terminalText(line: LogLine): string {
  const text = line.text.replace(/\r?\n$/, "");
  return line.stream === "system" ? `${SYSTEM}${text}${RESET}\r\n` : `${text}\r\n`;
}

interface LogTerminalProps {
  /** The logs WebSocket URL resuming after a sequence number. */
  url: (after: number) => string;
  label: string;
  onStatus?: (status: SocketStatus, closeCode?: number) => void;
  onLines?: (count: number) => void;
}

/**
 * The job's log in a real terminal (xterm.js): the stored lines are replayed, then new ones follow as they
 * come; after a drop it reconnects by itself from the last line it showed. Colours and progress bars the
 * engine prints render as they would in a shell.
 */
export default function LogTerminal({ url, label, onStatus, onLines }: LogTerminalProps) {
  const host = useRef<HTMLDivElement>(null);
  const callbacks = useRef({ url, onStatus, onLines });
  callbacks.current = { url, onStatus, onLines };

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
    const follower = followLog({
      url: (after) => callbacks.current.url(after),
      onLines: (lines) => {
        terminal.write(lines.map(terminalText).join(""));
        count += lines.length;
        callbacks.current.onLines?.(count);
      },
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
