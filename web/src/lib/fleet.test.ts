import { describe, expect, it } from "vitest";

import type { Agent } from "../api/fleet";
import { agentState, filterAgents, gpuSeries, heartbeatAge, hostSeries, offlineAgents, rangeQuery } from "./fleet";

const NOW = Date.parse("2026-01-02T03:04:05Z");
const agent = (id: string, extra: Partial<Agent> = {}): Agent => ({ id, hostname: `${id}.lan`, state: "online", last_beat_at: "2026-01-02T03:04:00Z", gpus: [], ...extra });

describe("fleet helpers", () => {
  it("ages heartbeats, falling back to last_seen, and says when there was none", () => {
    expect(heartbeatAge(agent("a"), NOW)).toBe(5);
    expect(heartbeatAge(agent("b", { last_beat_at: null, last_seen: "2026-01-02T03:03:05Z" }), NOW)).toBe(60);
    expect(heartbeatAge(agent("c", { last_beat_at: null, last_seen: null }), NOW)).toBeNull();
    expect(heartbeatAge(agent("d", { last_beat_at: "2026-01-02T03:04:09Z" }), NOW)).toBe(0); // clocks disagree
  });

  it("reads the state, or the draining flag of an older answer", () => {
    expect(agentState(agent("a", { state: undefined, draining: true }))).toBe("draining");
    expect(agentState(agent("a", { state: undefined }))).toBe("online");
  });

  it("filters by state and by id or host, and lists offline agents longest silent first", () => {
    const agents = [
      agent("gpu-1"),
      agent("gpu-2", { state: "offline", offline_since: "2026-01-02T02:00:00Z" }),
      agent("cpu-1", { state: "offline", offline_since: "2026-01-01T02:00:00Z" }),
      agent("gpu-3", { state: "draining", hostname: "rack7" }),
    ];
    expect(filterAgents(agents, "offline", "").map((a) => a.id)).toEqual(["gpu-2", "cpu-1"]);
    expect(filterAgents(agents, "", "RACK").map((a) => a.id)).toEqual(["gpu-3"]);
    expect(filterAgents(agents, "online", "gpu").map((a) => a.id)).toEqual(["gpu-1"]);
    expect(offlineAgents(agents).map((a) => a.id)).toEqual(["cpu-1", "gpu-2"]);
  });

  it("asks for the last period in UTC", () => {
    expect(rangeQuery("1h", NOW)).toEqual({ from: "2026-01-02T02:04:05.000Z", to: "2026-01-02T03:04:05.000Z" });
  });

  it("puts GPUs whose points do not line up on one time axis, with gaps", () => {
    const point = (at: string, utilization_pct: number | null, memory_used_mb = 2048) => ({
      at, samples: 1, utilization_pct, memory_used_mb, memory_total_mb: 8192, temperature_c: 50, power_w: 100,
    });
    const data = gpuSeries(
      [
        { index: 0, points: [point("2026-01-02T03:00:00Z", 10), point("2026-01-02T03:00:10Z", 20)] },
        { index: 1, points: [point("2026-01-02T03:00:10Z", null), point("2026-01-02T03:00:20Z", 40, 1024)] },
      ],
      "utilization_pct",
    );
    const t0 = Date.parse("2026-01-02T03:00:00Z") / 1000;
    expect(data.x).toEqual([t0, t0 + 10, t0 + 20]);
    expect(data.series).toEqual([
      { index: 0, values: [10, 20, null] },
      { index: 1, values: [null, null, 40] },
    ]);
    expect(gpuSeries([{ index: 0, points: [point("2026-01-02T03:00:00Z", 1, 3072)] }], "memory_used_mb", 1024).series[0]!.values).toEqual([3]);
  });

  it("turns host points into CPU and memory (GiB) series", () => {
    const host = hostSeries([{ at: "2026-01-02T03:00:00Z", samples: 2, cpu_pct: 12.5, memory_used_mb: 2048, memory_total_mb: 4096, running_jobs: 1 }]);
    expect(host).toEqual({ x: [Date.parse("2026-01-02T03:00:00Z") / 1000], cpu: [12.5], memory: [2] });
  });
});
