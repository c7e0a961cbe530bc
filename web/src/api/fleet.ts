/**
 * Calls to /api/agents (the fleet) and /api/jobs/{id}/gpu. The scheduler's fleet routes are young: every
 * field beyond the agent's id is read as optional, so a page never breaks on a shape it did not expect.
 */

import { api, withQuery } from "./client";
import type { components } from "./schema";

type Schemas = components["schemas"];
type Loose<T> = { [K in keyof T]?: T[K] | null };

export type Gpu = Loose<Schemas["GpuOut"]> & { index: number };
export type Agent = Loose<Omit<Schemas["AgentOut"], "gpus">> & { id: string; gpus?: Gpu[] | null };
export type FleetSummary = Loose<Schemas["FleetSummary"]>;
export type FleetView = { summary?: FleetSummary | null; agents?: Agent[] | null };
export type GpuPoint = Schemas["GpuPoint"];
export type HostPoint = Schemas["HostPoint"];
export type GpuSeries = Schemas["GpuSeries"];
export type AgentMetrics = Omit<Schemas["AgentMetrics"], "host" | "gpus"> & { host?: HostPoint[]; gpus?: GpuSeries[] };
export type JobGpu = Omit<Schemas["JobGpu"], "gpus"> & { gpus?: GpuSeries[] };

export type AgentState = "online" | "offline" | "draining";
export const AGENT_STATES: AgentState[] = ["online", "draining", "offline"];

const AGENTS = "/api/agents";
const id = encodeURIComponent;

export const fleetApi = {
  list: (signal?: AbortSignal) => api.get<FleetView>(AGENTS, { signal }),
  get: (agentId: string, signal?: AbortSignal) => api.get<Agent>(`${AGENTS}/${id(agentId)}`, { signal }),
  drain: (agentId: string) => api.post<Agent>(`${AGENTS}/${id(agentId)}/drain`),
  undrain: (agentId: string) => api.post<Agent>(`${AGENTS}/${id(agentId)}/undrain`),
  metrics: (agentId: string, range: { from: string; to: string; step?: number }, signal?: AbortSignal) =>
    api.get<AgentMetrics>(withQuery(`${AGENTS}/${id(agentId)}/metrics`, { ...range }), { signal }),
  jobGpu: (jobId: string, signal?: AbortSignal) => api.get<JobGpu>(`/api/jobs/${id(jobId)}/gpu`, { signal }),
};
