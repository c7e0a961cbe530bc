/** The fleet page's logic: heartbeat ages, filters, offline alerts, history ranges and chart series. */

import { useEffect, useState } from "react";

import type { Agent, GpuSeries, HostPoint } from "../api/fleet";

/** Seconds since the agent's last heartbeat (or last sign of life), null when it never sent one. */
export function heartbeatAge(agent: Agent, now: number): number | null {
  const at = agent.last_beat_at ?? agent.last_seen;
  if (!at) return null;
  const time = Date.parse(at);
  return Number.isNaN(time) ? null : Math.max(0, Math.round((now - time) / 1000));
}

/** The state the scheduler gave, or one read from the flags of an older answer. */
export function agentState(agent: Agent): string {
  if (agent.state) return agent.state;
  return agent.draining ? "draining" : "online";
}

export function filterAgents(agents: Agent[], state: string, search: string): Agent[] {
  const needle = search.trim().toLowerCase();
  return agents.filter(
    (a) =>
      (!state || agentState(a) === state) &&
      (!needle || a.id.toLowerCase().includes(needle) || (a.hostname ?? "").toLowerCase().includes(needle)),
  );
}

/** Offline agents, longest silent first. */
export function offlineAgents(agents: Agent[]): Agent[] {
  return agents
    .filter((a) => agentState(a) === "offline")
    .sort((a, b) => Date.parse(a.offline_since ?? a.last_seen ?? "") - Date.parse(b.offline_since ?? b.last_seen ?? ""));
}

export const RANGES = { "1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400 } as const;
export type RangeName = keyof typeof RANGES;

/** The metrics query for the last `range`: ISO times (the API reads them as UTC). */
export function rangeQuery(range: RangeName, now: number): { from: string; to: string } {
  return { from: new Date(now - RANGES[range] * 1000).toISOString(), to: new Date(now).toISOString() };
}

/** x for uPlot's time axis: seconds since the epoch. */
export function epochSeconds(iso: string): number {
  return Date.parse(iso) / 1000;
}

export function hostSeries(points: HostPoint[]) {
  return {
    x: points.map((p) => epochSeconds(p.at)),
    cpu: points.map((p) => p.cpu_pct ?? null),
    memory: points.map((p) => (p.memory_used_mb === null ? null : p.memory_used_mb / 1024)),
  };
}

type GpuMetric = "utilization_pct" | "memory_used_mb" | "temperature_c" | "power_w";

/**
 * One x axis for several GPUs whose points may not line up: the union of their times, each GPU's value at
 * its own times and gaps elsewhere.
 */
export function gpuSeries(gpus: GpuSeries[], metric: GpuMetric, scale = 1) {
  const times = [...new Set(gpus.flatMap((g) => g.points.map((p) => epochSeconds(p.at))))].sort((a, b) => a - b);
  const index = new Map(times.map((x, i) => [x, i]));
  const values = gpus.map((g) => {
    const row: (number | null)[] = times.map(() => null);
    for (const p of g.points) {
      const v = p[metric];
      row[index.get(epochSeconds(p.at))!] = v === null || v === undefined ? null : v / scale;
    }
    return { index: g.index, values: row };
  });
  return { x: times, series: values };
}

/** The time now, re-rendered every `ms`. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
  return now;
}

export const SERIES_COLORS = ["#2f5bd3", "#c2410c", "#15803d", "#9333ea", "#0e7490", "#b45309", "#be123c", "#4d7c0f"];
