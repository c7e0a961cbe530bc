/** Calls to /api/jobs and /api/evals; shapes come from the generated OpenAPI types. */

import { AS_FILE, api, download, ok } from "./client";
import type { components, paths } from "./schema";

type Schemas = components["schemas"];

/** Filters of the job list, as the API reads them (`GET /api/jobs`): state, kind, search, keyset page. */
export type JobFilters = NonNullable<paths["/api/jobs"]["get"]["parameters"]["query"]>;
export type EvalFilters = NonNullable<paths["/api/evals"]["get"]["parameters"]["query"]>;
export type JobState = NonNullable<JobFilters["state"]>;
/** Kinds of jobs these pages show (deployments have their own). */
export type JobKind = Exclude<NonNullable<JobFilters["kind"]>, "deploy">;
export const JOB_STATES: JobState[] = ["pending", "dispatched", "running", "succeeded", "failed", "cancelled"];
export const JOB_KINDS: JobKind[] = ["train", "eval", "export"];
export const ACTIVE_STATES: ReadonlySet<string> = new Set(["pending", "dispatched", "running"]);

/**
 * The last progress report of a running job, on a job and on the live feed: a progress point's fields (the
 * scheduler stores it as a plain object, so all but the step may be missing).
 */
export type Progress = Pick<Schemas["ProgressPoint"], "step" | "total_steps"> &
  Partial<Omit<Schemas["ProgressPoint"], "step" | "total_steps" | "at">>;

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
/** OpenAI's face of a job created through /v1/fine_tuning/jobs (`JobDetail.fine_tuning`). */
export type FineTuning = Schemas["FineTuningSummary"];
export type JobPage = Omit<Schemas["JobPage"], "items"> & { items: JobSummary[] };
export type ProgressPoint = Schemas["ProgressPoint"];
/** How far the agent is in bringing a job's inputs from the store (`objects` storage mode). */
export type InputsFetch = Schemas["InputsFetch"];
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

const jobPath = (job_id: string) => ({ params: { path: { job_id } } });

export const jobsApi = {
  /** A page of the caller's jobs; `q` searches part of the id or the model, on the server. */
  list: (query: JobFilters, signal?: AbortSignal) => ok(api.GET("/api/jobs", { params: { query }, signal })) as Promise<JobPage>,
  get: (jobId: string, signal?: AbortSignal) =>
    ok(api.GET("/api/jobs/{job_id}", { ...jobPath(jobId), signal })) as Promise<JobDetail>,
  /** `key`: the Idempotency-Key (lib/submitKeys.ts), so that sending the same request again makes no second job. */
  submit: (body: JobRequest, key?: string) =>
    ok(api.POST("/api/jobs", { body: asSent(body), params: { header: { "Idempotency-Key": key } } })) as Promise<JobDetail>,
  /** The exact config the job would run with, validated by the server; nothing is queued. */
  preview: (body: JobRequest, signal?: AbortSignal) =>
    ok(api.POST("/api/jobs", { params: { query: { dry_run: true } }, body: asSent(body), signal })) as Promise<JobPreview>,
  cancel: (jobId: string) => ok(api.POST("/api/jobs/{job_id}/cancel", jobPath(jobId))),
  /** A training job saves a checkpoint at the step it is on, then stops (`resume` goes on from it). */
  pause: (jobId: string) => ok(api.POST("/api/jobs/{job_id}/pause", jobPath(jobId))),
  /** Run a failed or cancelled job again from the start (`retry`) or from its newest checkpoint (`resume`). */
  rerun: (jobId: string, how: "retry" | "resume") =>
    ok(how === "retry" ? api.POST("/api/jobs/{job_id}/retry", jobPath(jobId)) : api.POST("/api/jobs/{job_id}/resume", jobPath(jobId))) as Promise<JobDetail>,
  downloadArtifacts: (jobId: string, fallbackName: string) =>
    download(api.GET("/api/jobs/{job_id}/artifacts", { ...jobPath(jobId), ...AS_FILE }), fallbackName),
  downloadLog: (jobId: string, fallbackName: string) =>
    download(api.GET("/api/jobs/{job_id}/log", { ...jobPath(jobId), ...AS_FILE }), fallbackName),
  /** WebSockets (outside the typed client: browsers cannot send the header; `socketUrl` adds a one-time ticket). */
  logsSocketPath: (jobId: string) => `/api/jobs/${encodeURIComponent(jobId)}/logs`,
  feedSocketPath: () => "/api/jobs/feed",
};

/** A request body as sent: fields with a server default may be left out (the generator marks them required). */
function asSent(body: JobRequest): Schemas["TrainRequest"] | Schemas["EvalRequest"] | Schemas["ExportRequest"] {
  return body as Schemas["TrainRequest"] | Schemas["EvalRequest"] | Schemas["ExportRequest"];
}

export const evalsApi = {
  list: (query: EvalFilters, signal?: AbortSignal) => ok(api.GET("/api/evals", { params: { query }, signal })),
  get: (evalId: string, signal?: AbortSignal) =>
    ok(api.GET("/api/evals/{job_id}", { params: { path: { job_id: evalId } }, signal })) as Promise<EvalDetail>,
  samples: (evalId: string, offset: number, limit: number, signal?: AbortSignal) =>
    ok(api.GET("/api/evals/{job_id}/samples", { params: { path: { job_id: evalId }, query: { offset, limit } }, signal })),
  compare: (ids: string[], samples = 10, signal?: AbortSignal) =>
    ok(api.GET("/api/evals/compare", { params: { query: { ids: ids.join(","), samples } }, signal })),
};

/** OpenAI's Files API: a fine-tuning job's results file is a file of its owner (`GET /v1/files/{id}/content`). */
export const filesApi = {
  downloadContent: (fileId: string, fallbackName: string) =>
    download(api.GET("/v1/files/{file_id}/content", { params: { path: { file_id: fileId } }, ...AS_FILE }), fallbackName),
};
