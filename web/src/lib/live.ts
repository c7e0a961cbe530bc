/** Live updates for pages: the caller's job feed over a WebSocket, and polling while something runs. */

import { useEffect, useRef } from "react";

import { socketUrl } from "../api/client";
import { jobsApi } from "../api/jobs";
import { ReconnectingSocket } from "./socket";

export interface JobChange {
  job_id: string;
  state: string;
  at: string;
}

/** Hear every state change of the caller's jobs (WS /api/jobs/feed), reconnecting by itself. */
export function useJobFeed(onChange: (change: JobChange) => void, enabled = true): void {
  const handler = useRef(onChange);
  handler.current = onChange;
  useEffect(() => {
    if (!enabled || typeof WebSocket === "undefined") return;
    const socket = new ReconnectingSocket({
      url: () => socketUrl(jobsApi.feedSocketPath()),
      onMessage: (data) => {
        try {
          const change = JSON.parse(data) as JobChange;
          if (typeof change.job_id === "string") handler.current(change);
        } catch {
          // not a change: ignore
        }
      },
    });
    socket.start();
    return () => socket.stop();
  }, [enabled]);
}

/** Call `tick` every `ms` while `active`, and not while the tab is hidden. */
export function useInterval(tick: () => void, ms: number, active: boolean): void {
  const callback = useRef(tick);
  callback.current = tick;
  useEffect(() => {
    if (!active) return;
    const timer = window.setInterval(() => {
      if (document.visibilityState !== "hidden") callback.current();
    }, ms);
    return () => window.clearInterval(timer);
  }, [ms, active]);
}
