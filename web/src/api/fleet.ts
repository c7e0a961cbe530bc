/**
 * Calls to /api/agents (the fleet) and /api/jobs/{id}/gpu. The scheduler's fleet routes are young: every
 * field beyond the agent's id is read as optional, so a page never breaks on a shape it did not expect.
 */

import { api, ok } from "./client";
import type { components, paths } from "./schema";

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

export type JoinToken = Schemas["JoinToken"];
export type JoinTokenCreated = Schemas["JoinTokenCreated"];
export type JoinTokenCreate = Schemas["JoinTokenCreate"];
export type AgentCredentials = Schemas["AgentCredentials"];

export type AgentState = "online" | "offline" | "draining";
export const AGENT_STATES: AgentState[] = ["online", "draining", "offline"];

export type MetricsRange = NonNullable<paths["/api/agents/{agent_id}/metrics"]["get"]["parameters"]["query"]>;

const agentPath = (agent_id: string) => ({ params: { path: { agent_id } } });

// Read tolerantly: the answers are taken as the loose shapes above.
export const fleetApi = {
  list: (signal?: AbortSignal) => ok(api.GET("/api/agents", { signal })) as Promise<FleetView>,
  get: (agentId: string, signal?: AbortSignal) => ok(api.GET("/api/agents/{agent_id}", { ...agentPath(agentId), signal })) as Promise<Agent>,
  drain: (agentId: string) => ok(api.POST("/api/agents/{agent_id}/drain", agentPath(agentId))) as Promise<Agent>,
  undrain: (agentId: string) => ok(api.POST("/api/agents/{agent_id}/undrain", agentPath(agentId))) as Promise<Agent>,
  metrics: (agentId: string, range: MetricsRange, signal?: AbortSignal) =>
    ok(api.GET("/api/agents/{agent_id}/metrics", { params: { path: { agent_id: agentId }, query: range }, signal })) as Promise<AgentMetrics>,
  joinTokens: (signal?: AbortSignal): Promise<JoinToken[]> => ok(api.GET("/api/agents/join-tokens", { signal })),
  createJoinToken: (data: JoinTokenCreate): Promise<JoinTokenCreated> => ok(api.POST("/api/agents/join-tokens", { body: data })),
  revokeJoinToken: (tokenId: string): Promise<JoinToken> =>
    ok(api.DELETE("/api/agents/join-tokens/{token_id}", { params: { path: { token_id: tokenId } } })),
  credentials: (signal?: AbortSignal): Promise<AgentCredentials[]> => ok(api.GET("/api/agents/credentials", { signal })),
  revokeCredentials: (agentId: string) => ok(api.DELETE("/api/agents/{agent_id}/credentials", agentPath(agentId))),
  jobGpu: (jobId: string, signal?: AbortSignal) =>
    ok(api.GET("/api/jobs/{job_id}/gpu", { params: { path: { job_id: jobId } }, signal })) as Promise<JobGpu>,
};
