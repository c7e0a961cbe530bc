import { describe, expect, it } from "vitest";

import openapi from "../../openapi.json";
import { ENGINE_CHOICES } from "../api/deployments";
import {
  DEFAULT_ENGINE,
  DEPLOY_LIMITS,
  GENERATION_DEFAULTS,
  SERVING_DEFAULTS,
  buildChatSettings,
  buildDeployRequest,
  chatSettingsFrom,
  defaultDeployForm,
  deployFieldOf,
} from "./deployForm";

type Props = Record<string, Record<string, unknown>>;
const schemas = (openapi as { components: { schemas: Record<string, { properties: Props }> } }).components.schemas;

function bounds(property: Record<string, unknown>) {
  const options = (property.oneOf ?? property.anyOf) as Record<string, unknown>[] | undefined;
  const typed = options?.find((o) => o.type === "integer" || o.type === "number");
  const p = typed ? { ...property, type: typed.type } : property;
  return { min: p.minimum ?? p.exclusiveMinimum, max: p.maximum ?? p.exclusiveMaximum, integer: p.type === "integer" };
}

describe("DEPLOY_LIMITS", () => {
  // The form's bounds must be the scheduler's: a drift is a value the server refuses, or one the form refuses wrongly.
  it.each(Object.entries(DEPLOY_LIMITS))("%s matches the OpenAPI snapshot", (field, limit) => {
    const property = schemas.Generation!.properties[field] ?? schemas.DeployRequest!.properties[field]!;
    expect(bounds(property)).toEqual({ min: limit.min, max: limit.max, integer: Boolean((limit as { integer?: boolean }).integer) });
  });

  it("starts from the scheduler's generation defaults", () => {
    for (const [name, value] of Object.entries(GENERATION_DEFAULTS)) {
      expect(schemas.Generation!.properties[name]!.default).toBe(value);
    }
  });

  it("starts from the scheduler's engine and serving defaults, and offers each engine it takes", () => {
    // A default that drifts would be sent as a choice the user never made (only changed values are sent).
    for (const [name, value] of Object.entries(SERVING_DEFAULTS)) {
      expect(schemas.DeployRequest!.properties[name]!.default).toBe(value);
    }
    expect(schemas.DeployRequest!.properties.max_model_len!.default).toBeUndefined();
    expect(schemas.DeployRequest!.properties.engine!.default).toBe(DEFAULT_ENGINE);
    expect(schemas.DeployRequest!.properties.engine!.enum).toEqual(ENGINE_CHOICES);
  });
});

describe("buildDeployRequest", () => {
  it("builds the body, leaving an empty idle timeout to the platform", () => {
    const built = buildDeployRequest({ ...defaultDeployForm("tiny-llama", null), temperature: "0.3", max_new_tokens: "16" });
    expect(built).toEqual({
      ok: true,
      body: {
        model: "tiny-llama",
        gpu_count: 0,
        generation: { temperature: 0.3, top_p: 0.7, top_k: 50, max_new_tokens: 16, repetition_penalty: 1, do_sample: true },
      },
    });
    const withIdle = buildDeployRequest({ ...defaultDeployForm("m", 2), idle_timeout_s: "600" });
    expect(withIdle.ok && withIdle.body).toMatchObject({ gpu_count: 1, idle_timeout_s: 600 });
  });

  it("sends the engine and the serving limits only where they differ from the defaults", () => {
    const form = { ...defaultDeployForm("tiny-llama"), engine: "vllm" as const, adapter_slots: "8", max_queue: "", max_model_len: "2048" };
    const built = buildDeployRequest(form);
    expect(built.ok && built.body).toMatchObject({ model: "tiny-llama", engine: "vllm", adapter_slots: 8, max_model_len: 2048 });
    expect(built.ok && Object.keys(built.body)).not.toContain("max_queue"); // empty: the platform's default
    expect(built.ok && Object.keys(built.body)).not.toContain("max_in_flight"); // the default as it was
    const bad = buildDeployRequest({ ...form, adapter_slots: "65", max_lora_rank: "4", max_in_flight: "0", max_queue: "1.5", max_model_len: "32" });
    expect(bad.ok ? [] : Object.keys(bad.problems).sort()).toEqual(["adapter_slots", "max_in_flight", "max_lora_rank", "max_model_len", "max_queue"]);
  });

  it("names every field that is wrong", () => {
    const built = buildDeployRequest({ ...defaultDeployForm(""), temperature: "3", top_p: "0", top_k: "1.5", idle_timeout_s: "5", max_new_tokens: "" });
    expect(built.ok).toBe(false);
    if (built.ok) return;
    expect(Object.keys(built.problems).sort()).toEqual(["idle_timeout_s", "max_new_tokens", "model", "temperature", "top_k", "top_p"]);
    expect(built.problems.top_p).toEqual({ key: "form.rangeAboveMin", values: { min: 0, max: 1 } });
    expect(built.problems.top_k).toEqual({ key: "form.wholeNumber" });
  });

  it("places the scheduler's error fields on the form", () => {
    expect(deployFieldOf("generation.temperature")).toBe("temperature");
    expect(deployFieldOf("idle_timeout_s")).toBe("idle_timeout_s");
    expect(deployFieldOf("engine")).toBe("engine");
    expect(deployFieldOf("adapter_slots")).toBe("adapter_slots");
    expect(deployFieldOf("config_overrides.x")).toBeNull();
    expect(deployFieldOf(null)).toBeNull();
  });
});

describe("chat settings", () => {
  it("start from the deployment's defaults and leave empty fields to them", () => {
    expect(chatSettingsFrom({ temperature: 0.1, max_new_tokens: 8 })).toEqual({ temperature: "0.1", top_p: "0.7", max_tokens: "8" });
    expect(buildChatSettings({ temperature: "0.5", top_p: "", max_tokens: "32" })).toEqual({ ok: true, body: { temperature: 0.5, max_tokens: 32 } });
    const bad = buildChatSettings({ temperature: "9", top_p: "1.5", max_tokens: "0" });
    expect(bad.ok ? [] : Object.keys(bad.problems).sort()).toEqual(["max_tokens", "temperature", "top_p"]);
  });
});
