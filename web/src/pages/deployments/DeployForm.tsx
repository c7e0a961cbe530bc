import { Fragment, useEffect, useRef, useState, type FormEvent } from "react";

import { ApiError } from "../../api/client";
import { ENGINE_CHOICES, deploymentsApi, type Deployment, type EngineChoice } from "../../api/deployments";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { CheckboxField, SelectField } from "../../components/Fields";
import { ModelSelect } from "../../components/ModelSelect";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { modelsApi } from "../../api/catalog";
import { modelsFor, useFleetGpus } from "../../lib/catalog";
import { SubmitKeys } from "../../lib/submitKeys";
import {
  DEPLOY_LIMITS,
  SERVING_FIELDS,
  buildDeployRequest,
  defaultDeployForm,
  deployFieldOf,
  type DeployField,
  type DeployFormValues,
  type DeployNumberField,
  type ServingField,
} from "../../lib/deployForm";
import type { Problem } from "../../lib/trainForm";
import { useQuery } from "../../lib/useQuery";

interface Props {
  initialModel?: string;
  onDeployed: (deployment: Deployment) => void;
  /** The caller already has as many live deployments as allowed (409 deployment_limit). */
  onLimit: (error: ApiError) => void;
}

const ENGINE_NAMES: Record<EngineChoice, MessageKey> = {
  auto: "deploy.engineAuto",
  vllm: "deploy.engineVllm",
  llamafactory: "deploy.engineLlamafactory",
};
const SERVING_LABELS: Record<ServingField, [MessageKey, MessageKey]> = {
  adapter_slots: ["deploy.adapterSlots", "deploy.adapterSlotsHint"],
  max_lora_rank: ["deploy.maxLoraRank", "deploy.maxLoraRankHint"],
  max_in_flight: ["deploy.maxInFlight", "deploy.maxInFlightHint"],
  max_queue: ["deploy.maxQueue", "deploy.maxQueueHint"],
  max_model_len: ["deploy.maxModelLen", "deploy.maxModelLenHint"],
};
const GENERATION_FIELDS: DeployField[] = ["temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty"];

/** Pick a model and deploy it: engine, resources, idle timeout, serving limits, generation defaults. */
export function DeployForm({ initialModel, onDeployed, onLimit }: Props) {
  const { t } = useI18n();
  const models = useQuery((signal) => modelsApi.list({ sort: "name", order: "asc", limit: 200 }, signal), []);
  const gpus = useFleetGpus();
  const [values, setValues] = useState<DeployFormValues>(() => defaultDeployForm(initialModel ?? "", null));
  const touchedGpus = useRef(false);
  const [problems, setProblems] = useState<Partial<Record<DeployField, Problem | string>>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const keys = useRef(new SubmitKeys());
  const form = useRef<HTMLFormElement>(null);
  const advanced = useRef<HTMLDetailsElement>(null);
  const generation = useRef<HTMLDetailsElement>(null);
  // A folded section with a field at fault unfolds, so that the error (ours or the server's) is seen.
  useEffect(() => {
    const wrong = (fields: readonly DeployField[]) => fields.some((f) => problems[f] !== undefined);
    if (advanced.current && wrong(SERVING_FIELDS)) advanced.current.open = true;
    if (generation.current && wrong(GENERATION_FIELDS)) generation.current.open = true;
  }, [problems]);
  const choices = modelsFor(models.data?.items, "deploy");
  // One GPU by default where the fleet has any, else the CPU (the user may change it either way).
  const gpuValue = touchedGpus.current ? values.gpu_count : gpus ? "1" : "0";

  const set = (name: keyof DeployFormValues, value: string | boolean) => {
    if (name === "gpu_count") touchedGpus.current = true;
    setValues((v) => ({ ...v, [name]: value }));
    setProblems((p) => ({ ...p, [name]: undefined }));
  };
  const message = (problem: Problem | string | undefined) =>
    problem === undefined ? undefined : typeof problem === "string" ? problem : t(problem.key, problem.values);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setFormError(null);
    const built = buildDeployRequest({ ...values, gpu_count: gpuValue });
    if (!built.ok) {
      setProblems(built.problems);
      const first = Object.keys(built.problems)[0];
      window.setTimeout(() => form.current?.querySelector<HTMLElement>(`[name="${first}"]`)?.focus(), 0);
      return;
    }
    setBusy(true);
    try {
      const deployment = await deploymentsApi.create(built.body, keys.current.keyFor(built.body));
      keys.current.succeeded();
      onDeployed(deployment);
    } catch (error) {
      if (error instanceof ApiError && error.code === "deployment_limit") onLimit(error);
      else if (error instanceof ApiError && deployFieldOf(error.field)) setProblems({ [deployFieldOf(error.field)!]: error.message });
      else setFormError(error instanceof Error ? error.message : String(error));
    } finally {
      setBusy(false);
    }
  };

  const numberField = (name: DeployNumberField, label: string, hint?: string) => {
    const limit = DEPLOY_LIMITS[name];
    return (
      <Field
        label={label}
        name={name}
        inputMode="decimal"
        value={name === "gpu_count" ? gpuValue : values[name]}
        onChange={(e) => set(name, e.target.value)}
        error={message(problems[name])}
        hint={hint ?? t("form.rangeHint", { min: limit.min, max: limit.max })}
      />
    );
  };

  return (
    <form ref={form} className="form" onSubmit={submit} noValidate aria-labelledby="deploy-form-title">
      <h2 id="deploy-form-title">{t("deploy.formTitle")}</h2>
      {formError && <Alert tone="error">{formError}</Alert>}
      {models.error ? <Alert tone="error">{t("deploy.modelsFailed")}</Alert> : null}
      <ModelSelect
        label={t("deploy.model")}
        name="model"
        value={values.model}
        onChange={(name) => set("model", name)}
        own={choices.own}
        presets={choices.presets}
        error={message(problems.model)}
        hint={models.loading ? t("app.loading") : t("deploy.modelHint")}
      />
      <SelectField
        label={t("deploy.engine")}
        name="engine"
        value={values.engine}
        onChange={(e) => set("engine", e.target.value)}
        options={ENGINE_CHOICES.map((engine) => ({ value: engine, label: t(ENGINE_NAMES[engine]) }))}
        hint={t("deploy.engineHint")}
        error={message(problems.engine)}
      />
      <div className="grid-2">
        {numberField("gpu_count", t("deploy.gpus"), gpus ? t("deploy.gpusHint", { count: gpus }) : t("deploy.gpusNone"))}
        {numberField("idle_timeout_s", t("deploy.idle"), t("deploy.idleHint"))}
      </div>
      <details ref={advanced} className="deploy-generation">
        <summary>{t("deploy.advanced")}</summary>
        <p className="muted">{t("deploy.advancedHint")}</p>
        <div className="grid-2">
          {SERVING_FIELDS.map((name) => (
            <Fragment key={name}>{numberField(name, t(SERVING_LABELS[name][0]), t(SERVING_LABELS[name][1]))}</Fragment>
          ))}
        </div>
      </details>
      <details ref={generation} className="deploy-generation">
        <summary>{t("deploy.generation")}</summary>
        <p className="muted">{t("deploy.generationHint")}</p>
        <div className="grid-2">
          {numberField("temperature", t("gen.temperature"))}
          {numberField("top_p", t("gen.topP"))}
          {numberField("top_k", t("gen.topK"))}
          {numberField("max_new_tokens", t("gen.maxNewTokens"))}
          {numberField("repetition_penalty", t("gen.repetitionPenalty"))}
          <CheckboxField label={t("gen.doSample")} checked={values.do_sample} onChange={(v) => set("do_sample", v)} />
        </div>
      </details>
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={busy}>
          {busy ? t("deploy.deploying") : t("deploy.submit")}
        </Button>
      </div>
    </form>
  );
}
