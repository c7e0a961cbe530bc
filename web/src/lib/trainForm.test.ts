import { describe, expect, it } from "vitest";

import openapi from "../../openapi.json";
import { buildTrainRequest, checkNumber, datasetFits, defaultTrainForm, formFromRequest, parseNumber, trackingFieldOf, TRAIN_LIMITS, type TrainForm } from "./trainForm";

const READY: TrainForm = { ...defaultTrainForm(0), base_model: "tiny-llama", datasets: ["tiny_sft"] };

describe("TRAIN_LIMITS", () => {
  // The form's bounds must be the scheduler's: a drift here means a field the server refuses, or one it allows.
  const schema = (openapi as { components: { schemas: Record<string, { properties: Record<string, Record<string, unknown>> }> } })
    .components.schemas.TrainRequest!.properties;
  // An optional number is `oneOf: [{type: integer}, {type: null}]` with its bounds beside the oneOf.
  const bounds = (property: Record<string, unknown>): Record<string, unknown> => {
    const options = (property.oneOf ?? property.anyOf) as Record<string, unknown>[] | undefined;
    const typed = options?.find((o) => o.type === "integer" || o.type === "number");
    return typed ? { ...property, type: typed.type } : property;
  };

  it.each(Object.entries(TRAIN_LIMITS))("%s matches the OpenAPI snapshot", (field, limit) => {
    const property = bounds(schema[field]!);
    const low = (limit as { exclusiveMin?: boolean }).exclusiveMin ? property.exclusiveMinimum : property.minimum;
    const high = (limit as { exclusiveMax?: boolean }).exclusiveMax ? property.exclusiveMaximum : property.maximum;
    expect({ field, min: low, max: high, integer: property.type === "integer" }).toEqual({
      field,
      min: limit.min,
      max: limit.max,
      integer: Boolean((limit as { integer?: boolean }).integer),
    });
  });

  it("covers every defaulted number of the snapshot's TrainRequest", () => {
    const numeric = Object.entries(schema)
      .filter(([, p]) => ["integer", "number"].includes(String(bounds(p).type)) && ("minimum" in p || "exclusiveMinimum" in p))
      .map(([name]) => name)
      // quantization_bit is a choice, not a range; retries (after a lost agent) keeps the API's default of 1.
      .filter((name) => !["quantization_bit", "retries"].includes(name));
    expect(Object.keys(TRAIN_LIMITS).sort()).toEqual(expect.arrayContaining(numeric.sort()));
  });
});

describe("parseNumber and checkNumber", () => {
  it("reads the notations people type", () => {
    expect(parseNumber("1e-4")).toBe(0.0001);
    expect(parseNumber(" 12 ")).toBe(12);
    expect(parseNumber("")).toBeNull();
    expect(parseNumber("1,5")).toBeNaN();
  });

  it("says what is wrong with a value", () => {
    expect(checkNumber(0, TRAIN_LIMITS.learning_rate)?.key).toBe("form.rangeAboveMin");
    expect(checkNumber(1, TRAIN_LIMITS.val_size)?.key).toBe("form.rangeBelowMax");
    expect(checkNumber(2.5, TRAIN_LIMITS.lora_rank)?.key).toBe("form.wholeNumber");
    expect(checkNumber(65, TRAIN_LIMITS.per_device_train_batch_size)).toEqual({ key: "form.range", values: { min: 1, max: 64 } });
    expect(checkNumber(64, TRAIN_LIMITS.per_device_train_batch_size)).toBeNull();
  });
});

describe("tracking", () => {
  it("sends only the trackers chosen, and none when none is", () => {
    const none = buildTrainRequest(READY);
    expect(none.ok && none.body).not.toHaveProperty("tracking");
    const built = buildTrainRequest({
      ...READY, wandb: true, wandb_project: "p", wandb_entity: "team", wandb_tags: "a, b", wandb_mode: "offline", tensorboard: true,
    });
    expect(built.ok && built.body.tracking).toEqual({
      tensorboard: true, wandb: { project: "p", entity: "team", mode: "offline", tags: ["a", "b"] },
    });
  });

  it("refuses what the scheduler refuses, naming the field", () => {
    const built = buildTrainRequest({
      ...READY, mlflow: true, mlflow_uri: "file:///mlruns", wandb: true, wandb_project: "../x", wandb_tags: "ok, bad tag",
    });
    expect(!built.ok && Object.keys(built.problems).sort()).toEqual(["mlflow_uri", "wandb_project", "wandb_tags"]);
    const withCredentials = buildTrainRequest({ ...READY, mlflow: true, mlflow_uri: "https://me:pw@mlflow.example.com" });
    expect(!withCredentials.ok && withCredentials.problems.mlflow_uri?.key).toBe("train.trackingUrl");
  });

  it("starts a copy of a job with its tracking, and maps the server's field names onto the form's", () => {
    const form = formFromRequest({ kind: "train", tracking: { mlflow: { tracking_uri: "https://m.example.com", experiment: "e" }, wandb: null, tensorboard: true } });
    expect(form).toMatchObject({ mlflow: true, mlflow_uri: "https://m.example.com", mlflow_experiment: "e", wandb: false, tensorboard: true });
    expect(trackingFieldOf("tracking.wandb.tags[2]")).toBe("wandb_tags");
    expect(trackingFieldOf("tracking.mlflow.tracking_uri")).toBe("mlflow_uri");
    expect(trackingFieldOf("datasets[0]")).toBeNull();
  });
});

describe("buildTrainRequest", () => {
  it("sends the fields that apply, as numbers", () => {
    const built = buildTrainRequest({ ...READY, max_steps: "12", lora_rank: "4" });
    expect(built.ok).toBe(true);
    if (!built.ok) return;
    expect(built.body).toMatchObject({ kind: "train", base_model: "tiny-llama", datasets: ["tiny_sft"], max_steps: 12, lora_rank: 4, gpu_count: 0, learning_rate: 0.0001 });
    expect(built.body).not.toHaveProperty("quantization_bit");
    expect(built.body).not.toHaveProperty("evaluation_strategy");
    expect(built.body).not.toHaveProperty("lora_alpha");
  });

  it("leaves LoRA fields out of a full fine-tune, and sends pre-training as full", () => {
    const full = buildTrainRequest({ ...READY, finetuning_type: "full", lora_rank: "nonsense" });
    expect(full.ok && full.body).not.toHaveProperty("lora_rank");
    const pt = buildTrainRequest({ ...READY, stage: "pt", finetuning_type: "qlora", train_from_scratch: true });
    expect(pt.ok && pt.body).toMatchObject({ finetuning_type: "full", train_from_scratch: true });
  });

  it("refuses what the scheduler would refuse, naming the field", () => {
    const built = buildTrainRequest({ ...READY, base_model: "", datasets: [], finetuning_type: "qlora", gpu_count: "0", val_size: "1", config_overrides: "[1]" });
    expect(built.ok).toBe(false);
    if (built.ok) return;
    expect(Object.keys(built.problems).sort()).toEqual(["base_model", "config_overrides", "datasets", "finetuning_type", "val_size"]);
    expect(built.problems.config_overrides?.key).toBe("train.overridesObject");
  });

  it("asks for eval steps only when evaluating every N steps", () => {
    const noSteps = buildTrainRequest({ ...READY, val_size: "0.1", evaluation_strategy: "steps", eval_steps: "" });
    expect(!noSteps.ok && noSteps.problems.eval_steps?.key).toBe("form.required");
    const epoch = buildTrainRequest({ ...READY, val_size: "0.1", evaluation_strategy: "epoch", eval_steps: "" });
    expect(epoch.ok && epoch.body).toMatchObject({ val_size: 0.1, evaluation_strategy: "epoch" });
  });

  it("reports JSON that does not parse", () => {
    const built = buildTrainRequest({ ...READY, config_overrides: "{max_grad_norm: 1}" });
    expect(!built.ok && built.problems.config_overrides?.key).toBe("train.overridesJson");
  });
});

describe("datasetFits", () => {
  it("keeps pairwise data for rm and dpo only", () => {
    expect(datasetFits("dpo", "pairwise")).toBe(true);
    expect(datasetFits("dpo", "alpaca")).toBe(false);
    expect(datasetFits("sft", "pairwise")).toBe(false);
    expect(datasetFits("pt", "text")).toBe(true);
  });
});

describe("formFromRequest", () => {
  it("fills the form so that it builds the same request again", () => {
    const variants: Partial<TrainForm>[] = [
      { max_steps: "12", lora_rank: "4", lora_alpha: "16", warmup: "ratio", warmup_ratio: "0.05", config_overrides: '{"max_grad_norm": 0.5}' },
      { finetuning_type: "qlora", gpu_count: "1", quantization_bit: "8", double_quantization: false, val_size: "0.2", evaluation_strategy: "steps", eval_steps: "10" },
      { stage: "pt", finetuning_type: "full", train_from_scratch: true, warmup: "steps", warmup_steps: "30", template: "qwen", gradient_checkpointing: false },
    ];
    for (const variant of variants) {
      const built = buildTrainRequest({ ...READY, ...variant });
      if (!built.ok) throw new Error(JSON.stringify(built.problems));
      const again = buildTrainRequest(formFromRequest(built.body as unknown as Record<string, unknown>, 0));
      expect(again).toEqual(built);
    }
  });

  it("keeps the form's defaults for what the request leaves out, and the default warm-up values unused", () => {
    const form = formFromRequest({ kind: "train", base_model: "m", datasets: ["d"], warmup_ratio: 0, lora_alpha: null }, 0);
    expect(form).toEqual({ ...defaultTrainForm(0), base_model: "m", datasets: ["d"] });
  });
});
