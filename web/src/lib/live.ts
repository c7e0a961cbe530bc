/** Live updates for pages: the caller's job feed over a WebSocket (state changes and progress points), and polling. */

import { useEffect, useRef } from "react";

import { socketUrl } from "../api/client";
import { jobsApi, type JobSummary, type Progress } from "../api/jobs";
import { ReconnectingSocket } from "./socket";

/**
 * A frame of `WS /api/jobs/feed` (the gateway's `stream_feed`): a committed state change, or, with `progress`,
 * a new progress point of a running job (the trainer's last report, as `JobSummary.progress` holds it).
 */
export interface JobChange {
  job_id: JobSummary["id"];
  state: JobSummary["state"];
  at: string;
  progress?: Progress;
}

/**
 * Hear every state change and progress point of the caller's jobs (WS /api/jobs/feed), reconnecting by itself;
 * `onReconnect` hears each reconnection after a drop (frames sent meanwhile are lost: load again).
 */
export function useJobFeed(onChange: (change: JobChange) => void, enabled = true, onReconnect?: () => void): void {
  const handler = useRef(onChange);
  handler.current = onChange;
  const reconnected = useRef(onReconnect);
  reconnected.current = onReconnect;
  useEffect(() => {
    if (!enabled || typeof WebSocket === "undefined") return;
    let opened = false;
    const socket = new ReconnectingSocket({
      url: () => socketUrl(jobsApi.feedSocketPath()),
      onStatus: (status) => {
        if (status !== "open") return;
        if (opened) reconnected.current?.();
        opened = true;
      },
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
