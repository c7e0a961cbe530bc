/** Calls to /api/jobs and /api/evals; shapes come from the generated OpenAPI types. */

import { api, withQuery } from "./client";
import type { components } from "./schema";

type Schemas = components["schemas"];

export type JobState = "pending" | "dispatched" | "running" | "succeeded" | "failed" | "cancelled";
export type JobKind = "train" | "eval" | "export";
export const JOB_STATES: JobState[] = ["pending", "dispatched", "running", "succeeded", "failed", "cancelled"];
export const JOB_KINDS: JobKind[] = ["train", "eval", "export"];
export const ACTIVE_STATES: ReadonlySet<string> = new Set(["pending", "dispatched", "running"]);

/** The last progress report of a running job (the scheduler stores it as a plain object). */
export interface Progress {
  step: number;
  total_steps: number;
  loss?: number | null;
  learning_rate?: number | null;
  epoch?: number | null;
  elapsed_s?: number | null;
  remaining_s?: number | null;
}

// The scheduler declares these as bare `dict`, which the generator reads as empty objects: say what they hold.
type Loose = Record<string, unknown>;
export type JobSummary = Omit<Schemas["JobSummary"], "progress"> & { progress: Progress | null };
export type JobDetail = Omit<Schemas["JobDetail"], "progress" | "config" | "estimate" | "metrics" | "request"> & {
  progress: Progress | null;
  config: Loose;
  estimate: Loose;
  metrics: Record<string, number> | null;
  request: Loose;
};
export type JobPage = Omit<Schemas["JobPage"], "items"> & { items: JobSummary[] };
export type ProgressPoint = Schemas["ProgressPoint"];
export type JobEvent = Schemas["JobEventOut"];

/** Request bodies: every field with a server default may be left out. */
type Body<T extends { kind: string }> = Partial<T> & Pick<T, "kind">;
export type TrainRequest = Body<Schemas["TrainRequest"]> & Pick<Schemas["TrainRequest"], "base_model" | "datasets">;
export type EvalRequest = Body<Schemas["EvalRequest"]> & Pick<Schemas["EvalRequest"], "model">;
export type ExportRequest = Body<Schemas["ExportRequest"]> & Pick<Schemas["ExportRequest"], "model">;
export type Quantization = Schemas["Quantization"];
export type JobRequest = TrainRequest | EvalRequest | ExportRequest;
export type JobPreview = Omit<Schemas["JobPreview"], "config" | "estimate"> & { config: Loose; estimate: Loose };

export type EvalSummary = Schemas["EvalSummary"];
export type EvalDetail = Omit<Schemas["EvalDetail"], "request"> & { request: Loose };
export type EvalPage = Schemas["EvalPage"];
export type Comparison = Schemas["Comparison"];
export type Sample = Schemas["Sample"];

export interface JobFilters {
  state?: string;
  kind?: string;
  cursor?: string | null;
  limit?: number;
}

const JOBS = "/api/jobs";
const EVALS = "/api/evals";
const id = encodeURIComponent;

export const jobsApi = {
  list: (filters: JobFilters, signal?: AbortSignal) => api.get<JobPage>(withQuery(JOBS, { ...filters }), { signal }),
  get: (jobId: string, signal?: AbortSignal) => api.get<JobDetail>(`${JOBS}/${id(jobId)}`, { signal }),
  submit: (body: JobRequest) => api.post<JobDetail>(JOBS, body),
  /** The exact config the job would run with, validated by the server; nothing is queued. */
  preview: (body: JobRequest, signal?: AbortSignal) =>
    api.post<JobPreview>(withQuery(JOBS, { dry_run: true }), body, { signal }),
  cancel: (jobId: string) => api.post<{ id: string; state: string }>(`${JOBS}/${id(jobId)}/cancel`),
  /** Run a failed or cancelled job again from the start (`retry`) or from its newest checkpoint (`resume`). */
  rerun: (jobId: string, how: "retry" | "resume") => api.post<JobDetail>(`${JOBS}/${id(jobId)}/${how}`),
  artifactsPath: (jobId: string) => `${JOBS}/${id(jobId)}/artifacts`,
  logPath: (jobId: string) => `${JOBS}/${id(jobId)}/log`,
  logsSocketPath: (jobId: string) => `${JOBS}/${id(jobId)}/logs`,
  feedSocketPath: () => `${JOBS}/feed`,
};

export const evalsApi = {
  list: (filters: { state?: string; evaluation?: string; cursor?: string | null; limit?: number }, signal?: AbortSignal) =>
    api.get<EvalPage>(withQuery(EVALS, { ...filters }), { signal }),
  get: (evalId: string, signal?: AbortSignal) => api.get<EvalDetail>(`${EVALS}/${id(evalId)}`, { signal }),
  samples: (evalId: string, offset: number, limit: number, signal?: AbortSignal) =>
    api.get<Schemas["SamplePage"]>(withQuery(`${EVALS}/${id(evalId)}/samples`, { offset, limit }), { signal }),
  compare: (ids: string[], samples = 10, signal?: AbortSignal) =>
    api.get<Comparison>(withQuery(`${EVALS}/compare`, { ids: ids.join(","), samples }), { signal }),
};
