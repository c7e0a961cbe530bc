/**
 * The training form: its state (text as typed), the server's limits, the checks the scheduler makes,
 * and the request body. The YAML preview is the scheduler's own (pages/jobs/ConfigPreview.tsx).
 */

import type { TrainRequest } from "../api/jobs";
import type { MessageKey } from "../i18n/en";

export type Stage = "pt" | "sft" | "rm" | "dpo" | "kto";
export type Finetuning = "lora" | "qlora" | "full" | "freeze";
export type EvalStrategy = "no" | "steps" | "epoch";
export type WarmupMode = "none" | "ratio" | "steps";

export const STAGES: Stage[] = ["sft", "pt", "rm", "dpo", "kto"];
export const FINETUNING: Finetuning[] = ["lora", "qlora", "full", "freeze"];

export interface TrainForm {
  base_model: string;
  datasets: string[];
  stage: Stage;
  finetuning_type: Finetuning;
  train_from_scratch: boolean;
  learning_rate: string;
  num_train_epochs: string;
  max_steps: string;
  per_device_train_batch_size: string;
  gradient_accumulation_steps: string;
  cutoff_len: string;
  warmup: WarmupMode;
  warmup_ratio: string;
  warmup_steps: string;
  lora_rank: string;
  lora_alpha: string;
  lora_dropout: string;
  lora_target: string;
  quantization_bit: "4" | "8";
  quantization_method: "bitsandbytes" | "hqq" | "eetq";
  quantization_type: "nf4" | "fp4";
  double_quantization: boolean;
  val_size: string;
  evaluation_strategy: EvalStrategy;
  eval_steps: string;
  logging_steps: string;
  save_steps: string;
  gpu_count: string;
  priority: string;
  template: string;
  gradient_checkpointing: boolean;
  config_overrides: string;
  // Experiment tracking (docs/tracking.md): sent as `tracking`, each tracker only when chosen.
  mlflow: boolean;
  mlflow_uri: string;
  mlflow_experiment: string;
  wandb: boolean;
  wandb_project: string;
  wandb_entity: string;
  wandb_name: string;
  wandb_tags: string;
  wandb_mode: "online" | "offline";
  tensorboard: boolean;
}

/** The scheduler's defaults (TrainRequest), except GPUs: none when no GPU was seen. */
export function defaultTrainForm(gpuCount = 1): TrainForm {
  return {
    base_model: "",
    datasets: [],
    stage: "sft",
    finetuning_type: "lora",
    train_from_scratch: false,
    learning_rate: "1e-4",
    num_train_epochs: "3",
    max_steps: "",
    per_device_train_batch_size: "2",
    gradient_accumulation_steps: "4",
    cutoff_len: "1024",
    warmup: "none",
    warmup_ratio: "0.1",
    warmup_steps: "0",
    lora_rank: "8",
    lora_alpha: "",
    lora_dropout: "0",
    lora_target: "all",
    quantization_bit: "4",
    quantization_method: "bitsandbytes",
    quantization_type: "nf4",
    double_quantization: true,
    val_size: "0",
    evaluation_strategy: "no",
    eval_steps: "",
    logging_steps: "5",
    save_steps: "500",
    gpu_count: String(gpuCount),
    priority: "0",
    template: "",
    gradient_checkpointing: true,
    config_overrides: "",
    mlflow: false,
    mlflow_uri: "",
    mlflow_experiment: "llmct",
    wandb: false,
    wandb_project: "",
    wandb_entity: "",
    wandb_name: "",
    wandb_tags: "",
    wandb_mode: "online",
    tensorboard: false,
  };
}

/** The form's tracking fields from a request's `tracking` (a copy of an earlier job). */
function trackingForm(form: TrainForm, tracking: unknown): void {
  if (typeof tracking !== "object" || tracking === null) return;
  const given = tracking as { mlflow?: Record<string, unknown> | null; wandb?: Record<string, unknown> | null; tensorboard?: boolean };
  const text = (value: unknown) => (typeof value === "string" ? value : "");
  if (given.mlflow) {
    form.mlflow = true;
    form.mlflow_uri = text(given.mlflow.tracking_uri);
    form.mlflow_experiment = text(given.mlflow.experiment) || form.mlflow_experiment;
  }
  if (given.wandb) {
    form.wandb = true;
    form.wandb_project = text(given.wandb.project);
    form.wandb_entity = text(given.wandb.entity);
    form.wandb_name = text(given.wandb.name);
    form.wandb_tags = Array.isArray(given.wandb.tags) ? given.wandb.tags.map(String).join(", ") : "";
    form.wandb_mode = given.wandb.mode === "offline" ? "offline" : "online";
  }
  form.tensorboard = Boolean(given.tensorboard);
}

/** A server's refusal of `tracking.…` names the form field it came from. */
export function trackingFieldOf(field: string): TrainField | null {
  const fields: Record<string, TrainField> = {
    "tracking.mlflow.tracking_uri": "mlflow_uri",
    "tracking.mlflow.experiment": "mlflow_experiment",
    "tracking.wandb.project": "wandb_project",
    "tracking.wandb.entity": "wandb_entity",
    "tracking.wandb.name": "wandb_name",
    "tracking.wandb.mode": "wandb_mode",
  };
  if (fields[field]) return fields[field];
  if (field.startsWith("tracking.wandb.tags")) return "wandb_tags";
  if (field.startsWith("tracking.wandb")) return "wandb_project";
  if (field.startsWith("tracking.mlflow")) return "mlflow_uri";
  return null;
}

/**
 * The form filled in from a job's request as submitted (`JobDetail.request`), to start a new job from it:
 * what the request leaves out keeps the form's default.
 */
export function formFromRequest(request: Record<string, unknown>, gpuCount = 1): TrainForm {
  const form = defaultTrainForm(gpuCount);
  const text = (value: unknown) => (value === null || value === undefined ? undefined : String(value));
  for (const field of Object.keys(form) as TrainField[]) {
    if (TRACKING_FIELDS.has(field)) continue;
    const value = request[field];
    if (value === undefined || value === null) continue;
    if (field === "datasets" && Array.isArray(value)) form.datasets = value.map(String);
    else if (typeof form[field] === "boolean") (form as unknown as Record<string, boolean>)[field] = Boolean(value);
    else if (field === "config_overrides") {
      if (typeof value === "object" && Object.keys(value).length > 0) form.config_overrides = JSON.stringify(value, null, 2);
    } else (form as unknown as Record<string, string>)[field] = text(value) ?? "";
  }
  const defaults = defaultTrainForm(gpuCount);
  if (Number(request.warmup_ratio ?? 0) > 0) form.warmup = "ratio";
  else if (Number(request.warmup_steps ?? 0) > 0) form.warmup = "steps";
  if (form.warmup !== "ratio") form.warmup_ratio = defaults.warmup_ratio;
  if (form.warmup !== "steps") form.warmup_steps = defaults.warmup_steps;
  trackingForm(form, request.tracking);
  return form;
}

const TRACKING_FIELDS = new Set<string>([
  "mlflow", "mlflow_uri", "mlflow_experiment", "wandb", "wandb_project", "wandb_entity", "wandb_name", "wandb_tags",
  "wandb_mode", "tensorboard",
]);
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The tracking part of the body, or what to fix (the scheduler's own checks of names; addresses are its own). */
function buildTracking(form: TrainForm, problems: Problems): TrainRequest["tracking"] {
  if (!form.mlflow && !form.wandb && !form.tensorboard) return undefined;
  const tracking: NonNullable<TrainRequest["tracking"]> = { tensorboard: form.tensorboard };
  if (form.mlflow) {
    const uri = form.mlflow_uri.trim();
    if (!uri) problems.mlflow_uri = { key: "form.required" };
    else if (!/^https?:\/\/[^\s@]+$/i.test(uri)) problems.mlflow_uri = { key: "train.trackingUrl" };
    const experiment = form.mlflow_experiment.trim() || "llmct";
    if (!/^[A-Za-z0-9][A-Za-z0-9_. /-]*$/.test(experiment) || experiment.length > 128) {
      problems.mlflow_experiment = { key: "train.trackingName" };
    }
    tracking.mlflow = { tracking_uri: uri, experiment };
  }
  if (form.wandb) {
    const project = form.wandb_project.trim();
    if (!project) problems.wandb_project = { key: "form.required" };
    else if (!NAME.test(project) || project.length > 128) problems.wandb_project = { key: "train.trackingName" };
    const entity = form.wandb_entity.trim();
    if (entity && (!NAME.test(entity) || entity.length > 128)) problems.wandb_entity = { key: "train.trackingName" };
    const tags = form.wandb_tags.split(",").map((tag) => tag.trim()).filter(Boolean);
    if (tags.length > 16 || tags.some((tag) => !/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/.test(tag) || tag.length > 64)) {
      problems.wandb_tags = { key: "train.trackingTags" };
    }
    const wandb: NonNullable<NonNullable<TrainRequest["tracking"]>["wandb"]> = { project, mode: form.wandb_mode, tags };
    if (entity) wandb.entity = entity;
    if (form.wandb_name.trim()) wandb.name = form.wandb_name.trim();
    tracking.wandb = wandb;
  }
  return tracking;
}

export interface Limit {
  min: number;
  max: number;
  /** The bound itself is refused. */
  exclusiveMin?: boolean;
  exclusiveMax?: boolean;
  integer?: boolean;
}

/** The scheduler's bounds (schemas.py); a unit test checks them against web/openapi.json. */
export const TRAIN_LIMITS = {
  learning_rate: { min: 0, max: 1, exclusiveMin: true },
  num_train_epochs: { min: 0, max: 1000, exclusiveMin: true },
  max_steps: { min: 1, max: 10_000_000, integer: true },
  per_device_train_batch_size: { min: 1, max: 64, integer: true },
  gradient_accumulation_steps: { min: 1, max: 512, integer: true },
  cutoff_len: { min: 8, max: 131_072, integer: true },
  warmup_ratio: { min: 0, max: 0.5 },
  warmup_steps: { min: 0, max: 1_000_000, integer: true },
  lora_rank: { min: 1, max: 1024, integer: true },
  lora_alpha: { min: 1, max: 4096, integer: true },
  lora_dropout: { min: 0, max: 1, exclusiveMax: true },
  val_size: { min: 0, max: 1, exclusiveMax: true },
  eval_steps: { min: 1, max: 1_000_000, integer: true },
  logging_steps: { min: 1, max: 100_000, integer: true },
  save_steps: { min: 1, max: 1_000_000, integer: true },
  gpu_count: { min: 0, max: 16, integer: true },
  priority: { min: -100, max: 100, integer: true },
} satisfies Record<string, Limit>;

export type NumberField = keyof typeof TRAIN_LIMITS;
export type TrainField = keyof TrainForm;

/** A message for the form, translated where it is shown. */
export interface Problem {
  key: MessageKey;
  values?: Record<string, string | number>;
}

export type Problems = Partial<Record<TrainField, Problem>>;

/** "1e-4" → 0.0001; null for empty; NaN for nonsense. */
export function parseNumber(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  return /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(trimmed) ? Number(trimmed) : Number.NaN;
}

/** What is wrong with a number against its limit, or null. */
export function checkNumber(value: number, limit: Limit): Problem | null {
  if (Number.isNaN(value)) return { key: "form.notANumber" };
  if (limit.integer && !Number.isInteger(value)) return { key: "form.wholeNumber" };
  const low = limit.exclusiveMin ? value <= limit.min : value < limit.min;
  const high = limit.exclusiveMax ? value >= limit.max : value > limit.max;
  if (low || high) {
    const key: MessageKey = limit.exclusiveMin
      ? "form.rangeAboveMin"
      : limit.exclusiveMax
        ? "form.rangeBelowMax"
        : "form.range";
    return { key, values: { min: limit.min, max: limit.max } };
  }
  return null;
}

/** Which parts of the form apply to the chosen stage and method. */
export function applies(form: TrainForm) {
  // Pretraining always trains the whole model (the scheduler renders finetuning_type: full).
  const method: Finetuning = form.stage === "pt" ? "full" : form.finetuning_type;
  return {
    lora: method === "lora" || method === "qlora",
    qlora: method === "qlora",
    fromScratch: form.stage === "pt",
    evaluation: (parseNumber(form.val_size) ?? 0) > 0,
    evalSteps: form.evaluation_strategy === "steps",
  };
}

/** A dataset of this format may serve this stage (the scheduler refuses the rest: dataset_not_for_stage). */
export function datasetFits(stage: Stage, format: string): boolean {
  if (stage === "rm" || stage === "dpo") return format === "pairwise";
  return format !== "pairwise";
}

export type Built = { ok: true; body: TrainRequest } | { ok: false; problems: Problems };

/** The request body, or what must be fixed first (the same combinations the scheduler refuses). */
export function buildTrainRequest(form: TrainForm): Built {
  const problems: Problems = {};
  const numbers: Partial<Record<NumberField, number>> = {};
  const use = applies(form);
  const required: NumberField[] = [
    "learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "cutoff_len",
    "val_size", "logging_steps", "save_steps", "gpu_count", "priority",
  ];
  const optional: NumberField[] = ["max_steps"];
  if (use.lora) required.push("lora_rank", "lora_dropout"), optional.push("lora_alpha");
  if (form.warmup === "ratio") required.push("warmup_ratio");
  if (form.warmup === "steps") required.push("warmup_steps");
  if (use.evaluation && use.evalSteps) required.push("eval_steps");

  for (const field of [...required, ...optional]) {
    const value = parseNumber(form[field]);
    if (value === null) {
      if (required.includes(field)) problems[field] = { key: "form.required" };
      continue;
    }
    const problem = checkNumber(value, TRAIN_LIMITS[field]);
    if (problem) problems[field] = problem;
    else numbers[field] = value;
  }
  if (!form.base_model) problems.base_model = { key: "train.pickModel" };
  if (form.datasets.length === 0) problems.datasets = { key: "train.pickDataset" };
  if (use.qlora && numbers.gpu_count === 0) problems.finetuning_type = { key: "train.qloraNeedsGpu" };
  if (form.train_from_scratch && form.stage !== "pt" && form.finetuning_type !== "full") {
    problems.train_from_scratch = { key: "train.scratchNeedsFull" };
  }
  if (form.template && !/^[A-Za-z0-9_.-]+$/.test(form.template)) problems.template = { key: "train.badTemplate" };
  if (form.lora_target && !/^[A-Za-z0-9_,.-]+$/.test(form.lora_target)) problems.lora_target = { key: "train.badTarget" };

  const tracking = buildTracking(form, problems);
  let overrides: Record<string, unknown> = {};
  if (form.config_overrides.trim()) {
    try {
      const parsed: unknown = JSON.parse(form.config_overrides);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        problems.config_overrides = { key: "train.overridesObject" };
      } else {
        overrides = parsed as Record<string, unknown>;
      }
    } catch (error) {
      problems.config_overrides = { key: "train.overridesJson", values: { reason: (error as Error).message } };
    }
  }
  if (Object.keys(problems).length > 0) return { ok: false, problems };

  const body: TrainRequest = {
    kind: "train",
    base_model: form.base_model,
    datasets: form.datasets,
    stage: form.stage,
    finetuning_type: form.stage === "pt" ? "full" : form.finetuning_type,
    learning_rate: numbers.learning_rate,
    num_train_epochs: numbers.num_train_epochs,
    per_device_train_batch_size: numbers.per_device_train_batch_size,
    gradient_accumulation_steps: numbers.gradient_accumulation_steps,
    cutoff_len: numbers.cutoff_len,
    val_size: numbers.val_size,
    logging_steps: numbers.logging_steps,
    save_steps: numbers.save_steps,
    gpu_count: numbers.gpu_count,
    priority: numbers.priority,
    gradient_checkpointing: form.gradient_checkpointing,
  };
  if (numbers.max_steps !== undefined) body.max_steps = numbers.max_steps;
  if (form.warmup === "ratio") body.warmup_ratio = numbers.warmup_ratio;
  if (form.warmup === "steps") body.warmup_steps = numbers.warmup_steps;
  if (use.lora) {
    body.lora_rank = numbers.lora_rank;
    body.lora_dropout = numbers.lora_dropout;
    body.lora_target = form.lora_target || "all";
    if (numbers.lora_alpha !== undefined) body.lora_alpha = numbers.lora_alpha;
  }
  if (use.qlora) {
    body.quantization_bit = Number(form.quantization_bit) as 4 | 8;
    body.quantization_method = form.quantization_method;
    body.quantization_type = form.quantization_type;
    body.double_quantization = form.double_quantization;
  }
  if (use.fromScratch && form.train_from_scratch) body.train_from_scratch = true;
  if (use.evaluation) {
    body.evaluation_strategy = form.evaluation_strategy;
    if (use.evalSteps) body.eval_steps = numbers.eval_steps;
  }
  if (form.template) body.template = form.template;
  if (Object.keys(overrides).length > 0) body.config_overrides = overrides;
  if (tracking) body.tracking = tracking;
  return { ok: true, body };
}

/** The example shown in the extra-parameters box. */
export const OVERRIDES_EXAMPLE = '{"lr_scheduler_type": "linear", "max_grad_norm": 0.5, "neftune_noise_alpha": 5}';
