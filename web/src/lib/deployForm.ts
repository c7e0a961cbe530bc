/** The deploy form and the playground's generation settings: defaults, the scheduler's limits, request bodies. */

import type { ChatSettings, DeployRequest, EngineChoice, Generation } from "../api/deployments";
import { checkNumber, parseNumber, type Limit, type Problem } from "./trainForm";

/** The scheduler's bounds (schemas.py Generation / DeployRequest, gateway PlaygroundChat). */
export const DEPLOY_LIMITS = {
  gpu_count: { min: 0, max: 16, integer: true },
  idle_timeout_s: { min: 10, max: 86_400, integer: true },
  adapter_slots: { min: 1, max: 64, integer: true },
  max_lora_rank: { min: 8, max: 256, integer: true },
  max_in_flight: { min: 1, max: 256, integer: true },
  max_queue: { min: 0, max: 1024, integer: true },
  max_model_len: { min: 64, max: 131_072, integer: true },
  temperature: { min: 0, max: 2 },
  top_p: { min: 0, max: 1, exclusiveMin: true },
  top_k: { min: 1, max: 1000, integer: true },
  max_new_tokens: { min: 1, max: 32_768, integer: true },
  repetition_penalty: { min: 1, max: 2 },
} satisfies Record<string, Limit>;

export const CHAT_LIMITS = {
  temperature: DEPLOY_LIMITS.temperature,
  top_p: DEPLOY_LIMITS.top_p,
  max_tokens: DEPLOY_LIMITS.max_new_tokens,
} satisfies Record<string, Limit>;

/** The scheduler's generation defaults. */
export const GENERATION_DEFAULTS: Generation = {
  temperature: 0.95,
  top_p: 0.7,
  top_k: 50,
  max_new_tokens: 512,
  repetition_penalty: 1.0,
  do_sample: true,
};

/** How the engine serves (the "advanced" part of the form): the scheduler's defaults; max_model_len none: the model's own. */
export const SERVING_DEFAULTS = { adapter_slots: 4, max_lora_rank: 64, max_in_flight: 16, max_queue: 64 };
export const SERVING_FIELDS = ["adapter_slots", "max_lora_rank", "max_in_flight", "max_queue", "max_model_len"] as const;
export type ServingField = (typeof SERVING_FIELDS)[number];
export const DEFAULT_ENGINE: EngineChoice = "auto";

export type DeployNumberField = keyof typeof DEPLOY_LIMITS;
export type DeployField = "model" | "engine" | DeployNumberField;
export const DEPLOY_FIELDS: DeployField[] = ["model", "engine", ...(Object.keys(DEPLOY_LIMITS) as DeployNumberField[])];
/** Number fields that may be left empty: the platform's default (an idle timeout, the serving limits). */
const OPTIONAL_FIELDS: ReadonlySet<DeployNumberField> = new Set(["idle_timeout_s", ...SERVING_FIELDS]);

export interface DeployFormValues extends Record<DeployNumberField, string> {
  model: string;
  engine: EngineChoice;
  do_sample: boolean;
}

export function defaultDeployForm(model = "", gpus: number | null = null): DeployFormValues {
  const g = GENERATION_DEFAULTS;
  return {
    model,
    engine: DEFAULT_ENGINE,
    gpu_count: gpus ? "1" : "0",
    idle_timeout_s: "",
    adapter_slots: String(SERVING_DEFAULTS.adapter_slots),
    max_lora_rank: String(SERVING_DEFAULTS.max_lora_rank),
    max_in_flight: String(SERVING_DEFAULTS.max_in_flight),
    max_queue: String(SERVING_DEFAULTS.max_queue),
    max_model_len: "",
    temperature: String(g.temperature),
    top_p: String(g.top_p),
    top_k: String(g.top_k),
    max_new_tokens: String(g.max_new_tokens),
    repetition_penalty: String(g.repetition_penalty),
    do_sample: g.do_sample,
  };
}

export type Built<F extends string, B> = { ok: true; body: B } | { ok: false; problems: Partial<Record<F, Problem>> };

/**
 * The request body, or what is wrong with each field. The idle timeout and the serving limits may be left empty, and
 * the engine and serving limits are sent only where they differ from the platform's defaults: a body says what was chosen.
 */
export function buildDeployRequest(form: DeployFormValues): Built<DeployField, DeployRequest> {
  const problems: Partial<Record<DeployField, Problem>> = {};
  if (!form.model) problems.model = { key: "deploy.pickModel" };
  const numbers: Partial<Record<DeployNumberField, number>> = {};
  for (const field of Object.keys(DEPLOY_LIMITS) as DeployNumberField[]) {
    const value = parseNumber(form[field]);
    if (value === null) {
      if (!OPTIONAL_FIELDS.has(field)) problems[field] = { key: "form.required" };
      continue;
    }
    const problem = checkNumber(value, DEPLOY_LIMITS[field]);
    if (problem) problems[field] = problem;
    else numbers[field] = value;
  }
  if (Object.keys(problems).length) return { ok: false, problems };
  const { gpu_count, idle_timeout_s, adapter_slots, max_lora_rank, max_in_flight, max_queue, max_model_len, ...generation } = numbers;
  const serving = { adapter_slots, max_lora_rank, max_in_flight, max_queue, max_model_len };
  const chosen = Object.entries(serving).filter(
    ([name, value]) => value !== undefined && value !== SERVING_DEFAULTS[name as keyof typeof SERVING_DEFAULTS],
  );
  return {
    ok: true,
    body: {
      model: form.model,
      ...(form.engine === DEFAULT_ENGINE ? {} : { engine: form.engine }),
      gpu_count,
      ...(idle_timeout_s === undefined ? {} : { idle_timeout_s }),
      ...Object.fromEntries(chosen),
      generation: { ...generation, do_sample: form.do_sample },
    },
  };
}

/** Where the scheduler's error field lands on the form: `generation.temperature` → temperature. */
export function deployFieldOf(field: string | null): DeployField | null {
  if (!field) return null;
  const name = field.startsWith("generation.") ? field.slice("generation.".length) : field;
  return (DEPLOY_FIELDS as string[]).includes(name) ? (name as DeployField) : null;
}

export type ChatField = keyof typeof CHAT_LIMITS;
export type ChatSettingsValues = Record<ChatField, string>;

/** The playground's settings start from the deployment's own generation defaults. */
export function chatSettingsFrom(generation: Partial<Generation> | undefined): ChatSettingsValues {
  const g = { ...GENERATION_DEFAULTS, ...generation };
  return { temperature: String(g.temperature), top_p: String(g.top_p), max_tokens: String(g.max_new_tokens) };
}

/** Settings sent with a chat turn; an empty field is left to the deployment's default. */
export function buildChatSettings(values: ChatSettingsValues): Built<ChatField, ChatSettings> {
  const problems: Partial<Record<ChatField, Problem>> = {};
  const body: ChatSettings = {};
  for (const field of Object.keys(CHAT_LIMITS) as ChatField[]) {
    const value = parseNumber(values[field]);
    if (value === null) continue;
    const problem = checkNumber(value, CHAT_LIMITS[field]);
    if (problem) problems[field] = problem;
    else body[field] = value;
  }
  return Object.keys(problems).length ? { ok: false, problems } : { ok: true, body };
}
