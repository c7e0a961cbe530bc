/** The deploy form and the playground's generation settings: defaults, the scheduler's limits, request bodies. */

import type { ChatSettings, DeployRequest, Generation } from "../api/deployments";
import { checkNumber, parseNumber, type Limit, type Problem } from "./trainForm";

/** The scheduler's bounds (schemas.py Generation / DeployRequest, gateway PlaygroundChat). */
export const DEPLOY_LIMITS = {
  gpu_count: { min: 0, max: 16, integer: true },
  idle_timeout_s: { min: 10, max: 86_400, integer: true },
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

export type DeployNumberField = keyof typeof DEPLOY_LIMITS;
export type DeployField = "model" | DeployNumberField;
export const DEPLOY_FIELDS: DeployField[] = ["model", ...(Object.keys(DEPLOY_LIMITS) as DeployNumberField[])];

export interface DeployFormValues extends Record<DeployNumberField, string> {
  model: string;
  do_sample: boolean;
}

export function defaultDeployForm(model = "", gpus: number | null = null): DeployFormValues {
  const g = GENERATION_DEFAULTS;
  return {
    model,
    gpu_count: gpus ? "1" : "0",
    idle_timeout_s: "",
    temperature: String(g.temperature),
    top_p: String(g.top_p),
    top_k: String(g.top_k),
    max_new_tokens: String(g.max_new_tokens),
    repetition_penalty: String(g.repetition_penalty),
    do_sample: g.do_sample,
  };
}

export type Built<F extends string, B> = { ok: true; body: B } | { ok: false; problems: Partial<Record<F, Problem>> };

/** The request body, or what is wrong with each field (idle timeout may be left empty: the platform's default). */
export function buildDeployRequest(form: DeployFormValues): Built<DeployField, DeployRequest> {
  const problems: Partial<Record<DeployField, Problem>> = {};
  if (!form.model) problems.model = { key: "deploy.pickModel" };
  const numbers: Partial<Record<DeployNumberField, number>> = {};
  for (const field of Object.keys(DEPLOY_LIMITS) as DeployNumberField[]) {
    const value = parseNumber(form[field]);
    if (value === null) {
      if (field !== "idle_timeout_s") problems[field] = { key: "form.required" };
      continue;
    }
    const problem = checkNumber(value, DEPLOY_LIMITS[field]);
    if (problem) problems[field] = problem;
    else numbers[field] = value;
  }
  if (Object.keys(problems).length) return { ok: false, problems };
  const { gpu_count, idle_timeout_s, ...generation } = numbers;
  return {
    ok: true,
    body: {
      model: form.model,
      gpu_count,
      ...(idle_timeout_s === undefined ? {} : { idle_timeout_s }),
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
