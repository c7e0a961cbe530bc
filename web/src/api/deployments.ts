/** Calls to /api/deployments (deploy, watch, stop, log) and the playground's streamed chat. */

import { SseParser, chatEvent } from "../lib/sse";
import { ApiError, api, authorizedFetch, withQuery } from "./client";
import type { components } from "./schema";

type Schemas = components["schemas"];

export type DeploymentState = "queued" | "starting" | "ready" | "stopping" | "stopped" | "failed";
export const DEPLOYMENT_STATES: DeploymentState[] = ["queued", "starting", "ready", "stopping", "stopped", "failed"];
/** States that hold a slot (and count against the caller's limit). */
export const LIVE_DEPLOYMENT_STATES: ReadonlySet<string> = new Set(["queued", "starting", "ready", "stopping"]);

export interface Generation {
  temperature: number;
  top_p: number;
  top_k: number;
  max_new_tokens: number;
  repetition_penalty: number;
  do_sample: boolean;
}

// The scheduler declares `generation` as a bare dict: say what it holds (older rows may lack a key).
export type Deployment = Omit<Schemas["DeploymentOut"], "generation"> & { generation: Partial<Generation> };
export type DeploymentPage = Omit<Schemas["DeploymentPage"], "items"> & { items: Deployment[] };
export type DeployRequest = Partial<Omit<Schemas["DeployRequest"], "generation">> & {
  model: string;
  generation?: Partial<Generation>;
};

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatSettings {
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
}

export interface ChatAnswer {
  content: string;
  finishReason: string | null;
}

const DEPLOYMENTS = "/api/deployments";
const id = encodeURIComponent;

export const deploymentsApi = {
  list: (filters: { active?: boolean; cursor?: string | null; limit?: number }, signal?: AbortSignal) =>
    api.get<DeploymentPage>(withQuery(DEPLOYMENTS, { ...filters, active: filters.active ? "true" : undefined }), { signal }),
  get: (deploymentId: string, signal?: AbortSignal) => api.get<Deployment>(`${DEPLOYMENTS}/${id(deploymentId)}`, { signal }),
  create: (body: DeployRequest) => api.post<Deployment>(DEPLOYMENTS, body),
  stop: (deploymentId: string) => api.post<Deployment>(`${DEPLOYMENTS}/${id(deploymentId)}/stop`),
  logPath: (deploymentId: string) => `${DEPLOYMENTS}/${id(deploymentId)}/log`,
  chat: streamChat,
};

/**
 * One playground turn: POST /api/deployments/{id}/chat with `stream: true`, calling `onDelta` with each piece
 * of the answer as it arrives. Resolves with the whole answer at `data: [DONE]` (or the stream's end); an error
 * event in the stream rejects with an ApiError, keeping what `onDelta` already received on screen.
 */
export async function streamChat(
  deploymentId: string,
  messages: ChatMessage[],
  settings: ChatSettings,
  onDelta: (content: string) => void,
  signal?: AbortSignal,
): Promise<ChatAnswer> {
  const response = await authorizedFetch(`${DEPLOYMENTS}/${id(deploymentId)}/chat`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ messages, ...settings, stream: true }),
    signal,
  });
  if (!(response.headers.get("content-type") ?? "").includes("text/event-stream")) {
    return wholeAnswer(await response.text(), onDelta);
  }
  const answer: ChatAnswer = { content: "", finishReason: null };
  const parser = new SseParser();
  let done = false;
  const take = (events: string[]) => {
    for (const data of events) {
      const event = chatEvent(data);
      if (event.type === "done") done = true;
      else if (event.type === "error") throw new ApiError(502, "upstream_error", event.message);
      else if (event.type === "delta") {
        if (event.content) {
          answer.content += event.content;
          onDelta(event.content);
        }
        answer.finishReason = event.finishReason ?? answer.finishReason;
      }
    }
  };
  const body = response.body;
  if (!body) return wholeAnswer(await response.text(), onDelta);
  const reader = body.getReader();
  const decoder = new TextDecoder();
  try {
    while (!done) {
      const { value, done: ended } = await reader.read();
      if (ended) {
        take(parser.push(decoder.decode()));
        take(parser.end());
        break;
      }
      take(parser.push(decoder.decode(value, { stream: true })));
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
  return answer;
}

/** A server that answered in one piece (stream ignored): the same result, delivered as one delta. */
function wholeAnswer(text: string, onDelta: (content: string) => void): ChatAnswer {
  let body: { choices?: { message?: { content?: string }; finish_reason?: string }[]; error?: { message?: string } };
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(502, "bad_answer", "The model server's answer could not be read.");
  }
  if (body.error) throw new ApiError(502, "upstream_error", body.error.message ?? "the model server failed");
  const choice = body.choices?.[0];
  const content = choice?.message?.content ?? "";
  if (content) onDelta(content);
  return { content, finishReason: choice?.finish_reason ?? null };
}
