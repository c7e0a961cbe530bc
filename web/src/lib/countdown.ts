/** A countdown the server gave as "seconds left at the time it answered", ticking locally in between. */

import { useEffect, useState } from "react";

/** Seconds left now, from `left` seconds measured at `measuredAt` (ms); never below 0, null when unknown. */
export function secondsLeft(left: number | null | undefined, measuredAt: number, now: number): number | null {
  if (left === null || left === undefined || !Number.isFinite(left)) return null;
  return Math.max(0, Math.ceil(left - (now - measuredAt) / 1000));
}

/**
 * The seconds left, re-rendered every second. `left` is the server's value; a new value (each refresh of the
 * deployment) restarts the count from it.
 */
export function useCountdown(left: number | null | undefined, measuredAt: number): number | null {
  const [now, setNow] = useState(() => Date.now());
  const running = left !== null && left !== undefined;
  useEffect(() => {
    setNow(Date.now());
    if (!running) return;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [running, left, measuredAt]);
  // The clock last read may predate a new measurement (the first render after it): never count from before it.
  return secondsLeft(left, measuredAt, Math.max(now, measuredAt));
}
