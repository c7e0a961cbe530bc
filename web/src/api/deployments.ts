/** Calls to /api/deployments (deploy, watch, stop, log, adapters) and the playground's streamed chat. */

import { SseParser, chatEvent } from "../lib/sse";
import { AS_FILE, ApiError, api, download, ok } from "./client";
import type { components, paths } from "./schema";

type Schemas = components["schemas"];

export type DeploymentState = "queued" | "starting" | "ready" | "stopping" | "stopped" | "failed";
export const DEPLOYMENT_STATES: DeploymentState[] = ["queued", "starting", "ready", "stopping", "stopped", "failed"];
/** States that hold a slot (and count against the caller's limit). */
export const LIVE_DEPLOYMENT_STATES: ReadonlySet<string> = new Set(["queued", "starting", "ready", "stopping"]);

/** Generation defaults of a deployment (the deploy request's `generation`). */
export type Generation = Schemas["Generation"];

// The answer declares `generation` as a bare dict: it holds the request's (older rows may lack a key).
export type Deployment = Omit<Schemas["DeploymentOut"], "generation"> & { generation: Partial<Generation> };
export type DeploymentPage = Omit<Schemas["DeploymentPage"], "items"> & { items: Deployment[] };
/** A deploy request: fields with a server default (gpu_count, priority, each generation setting) may be left out. */
export type DeployRequest = Partial<Omit<Schemas["DeployRequest"], "generation">> & {
  model: string;
  generation?: Partial<Generation>;
};

/** The engine a deploy request asks for: "auto" is vLLM where the agent has it, else LLaMA-Factory's server. */
export type EngineChoice = NonNullable<Schemas["DeployRequest"]["engine"]>;
export const ENGINE_CHOICES: EngineChoice[] = ["auto", "vllm", "llamafactory"];

/** A deployment's engine as its agent last saw it: requests running and waiting, KV-cache use (0–100), adapters held. */
export type EngineLoad = NonNullable<Deployment["load"]>;
export type LoadedAdapter = NonNullable<EngineLoad["adapters"]>[number];
/** Requests, prompt and completion tokens of one user on one model of a deployment (`adapter` empty: the base). */
export type UsageRow = NonNullable<Deployment["usage"]>[number];
/** An adapter the caller may chat with on a deployment (`GET /api/deployments/{id}/adapters`). */
export type DeploymentAdapter = paths["/api/deployments/{deployment_id}/adapters"]["get"]["responses"][200]["content"]["application/json"][number];

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
  /** An answer: the model that gave it (the base model's or an adapter's name); shown, never sent. */
  model?: string;
}

/** Sampling settings sent with a turn (`POST /api/deployments/{id}/chat`). */
export type ChatSettings = Pick<Schemas["PlaygroundChat"], "temperature" | "top_p" | "max_tokens">;
/** A turn's settings and, to chat with one of the adapters the deployment pools, that adapter's registry name. */
export type ChatTurn = ChatSettings & { adapter?: string };

export interface ChatAnswer {
  content: string;
  finishReason: string | null;
  /** The name the engine answered as, when its chunks said (the deployment's id for the base model). */
  model: string | null;
}

export type DeploymentFilters = NonNullable<paths["/api/deployments"]["get"]["parameters"]["query"]>;

const deploymentPath = (deployment_id: string) => ({ params: { path: { deployment_id } } });

export const deploymentsApi = {
  list: (query: DeploymentFilters, signal?: AbortSignal) =>
    // "running only" off: no `active` at all, as the API's default.
    ok(api.GET("/api/deployments", { params: { query: { ...query, active: query.active || undefined } }, signal })) as Promise<DeploymentPage>,
  get: (deploymentId: string, signal?: AbortSignal) =>
    ok(api.GET("/api/deployments/{deployment_id}", { ...deploymentPath(deploymentId), signal })) as Promise<Deployment>,
  /** `key`: the Idempotency-Key (lib/submitKeys.ts), so that sending the same request again deploys nothing more. */
  create: (body: DeployRequest, key?: string) =>
    // Fields with a server default may be left out (the generator marks them required).
    ok(
      api.POST("/api/deployments", { body: body as Schemas["DeployRequest"], params: { header: { "Idempotency-Key": key } } }),
    ) as Promise<Deployment>,
  /** The adapters of the deployment's base the caller may chat with on it, and whether each is loaded now. */
  adapters: (deploymentId: string, signal?: AbortSignal) =>
    ok(api.GET("/api/deployments/{deployment_id}/adapters", { ...deploymentPath(deploymentId), signal })) as Promise<DeploymentAdapter[]>,
  stop: (deploymentId: string) => ok(api.POST("/api/deployments/{deployment_id}/stop", deploymentPath(deploymentId))) as Promise<Deployment>,
  downloadLog: (deploymentId: string, fallbackName: string) =>
    download(api.GET("/api/deployments/{deployment_id}/log", { ...deploymentPath(deploymentId), ...AS_FILE }), fallbackName),
  chat: streamChat,
};

/**
 * One playground turn: POST /api/deployments/{id}/chat with `stream: true`, calling `onDelta` with each piece
 * of the answer as it arrives. Resolves with the whole answer at `data: [DONE]` (or the stream's end); an error
 * event in the stream rejects with an ApiError, keeping what `onDelta` already received on screen. A full
 * deployment refuses with a 429 ApiError whose `retryAfter` says when to try again.
 */
export async function streamChat(
  deploymentId: string,
  messages: ChatMessage[],
  turn: ChatTurn,
  onDelta: (content: string) => void,
  signal?: AbortSignal,
): Promise<ChatAnswer> {
  const { response } = await api.POST("/api/deployments/{deployment_id}/chat", {
    ...deploymentPath(deploymentId),
    headers: { Accept: "text/event-stream" },
    // Only what the model reads: who answered a turn stays in this browser.
    body: { messages: messages.map(({ role, content }) => ({ role, content })), ...turn, stream: true },
    parseAs: "stream", // the body is read below, piece by piece
    signal,
  });
  if (!(response.headers.get("content-type") ?? "").includes("text/event-stream")) {
    return wholeAnswer(await response.text(), onDelta);
  }
  const answer: ChatAnswer = { content: "", finishReason: null, model: null };
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
        answer.model = event.model ?? answer.model;
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
  let body: { choices?: { message?: { content?: string }; finish_reason?: string }[]; model?: unknown; error?: { message?: string } };
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(502, "bad_answer", "The model server's answer could not be read.");
  }
  if (body.error) throw new ApiError(502, "upstream_error", body.error.message ?? "the model server failed");
  const choice = body.choices?.[0];
  const content = choice?.message?.content ?? "";
  if (content) onDelta(content);
  return { content, finishReason: choice?.finish_reason ?? null, model: typeof body.model === "string" && body.model ? body.model : null };
}
