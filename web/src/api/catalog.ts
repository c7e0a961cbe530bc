/** Calls to /api/datasets and /api/models: what jobs are made from. */

import { AS_FILE, api, download, failure, networkError, ok } from "./client";
import type { components, paths } from "./schema";
import { tokenStore } from "./token";

type Schemas = components["schemas"];

export type Dataset = Schemas["Dataset"];
export type DatasetPage = Schemas["DatasetPage"];
export type Preview = Schemas["Preview"];
export type PreviewRow = Schemas["PreviewRow"];
export type DatasetFormat = Dataset["format"];
export const DATASET_FORMATS: DatasetFormat[] = ["alpaca", "sharegpt", "text", "pairwise"];
export type Visibility = Dataset["visibility"];
export const VISIBILITIES: Visibility[] = ["public", "private"];

export type Model = Omit<Schemas["Model"], "details"> & { details: Record<string, unknown> };
export type ModelPage = Omit<Schemas["ModelPage"], "items"> & { items: Model[] };
export type LineageEntry = Model & { depth: number };
/** A preset to register, or what changes in a model (owners: name and remark; admins: a preset's sources too). */
export type ModelChange = Schemas["ModelPatch"];
/** A preset to register (admins); `template` may be left out (the server's default). */
export type PresetCreate = Omit<Schemas["PresetCreate"], "template"> & Partial<Pick<Schemas["PresetCreate"], "template">>;
export type Lineage = Omit<Schemas["Lineage"], "model" | "ancestors" | "descendants"> & {
  model: Model;
  ancestors: LineageEntry[];
  descendants: LineageEntry[];
};

export type DatasetFilters = NonNullable<paths["/api/datasets"]["get"]["parameters"]["query"]>;
export type DatasetChange = Schemas["DatasetPatch"];

const datasetPath = (dataset_id: string) => ({ params: { path: { dataset_id } } });
const modelPath = (model_id: string) => ({ params: { path: { model_id } } });

export interface UploadForm {
  name: string;
  format: DatasetFormat;
  remark?: string;
  files: File[];
}

export const datasetsApi = {
  list: (query: DatasetFilters, signal?: AbortSignal) => ok(api.GET("/api/datasets", { params: { query }, signal })),
  get: (datasetId: string, signal?: AbortSignal) => ok(api.GET("/api/datasets/{dataset_id}", { ...datasetPath(datasetId), signal })),
  preview: (datasetId: string, rows = 5, signal?: AbortSignal) =>
    ok(api.GET("/api/datasets/{dataset_id}/preview", { params: { path: { dataset_id: datasetId }, query: { rows } }, signal })),
  patch: (datasetId: string, change: DatasetChange) =>
    ok(api.PATCH("/api/datasets/{dataset_id}", { ...datasetPath(datasetId), body: change })),
  remove: (datasetId: string) => ok(api.DELETE("/api/datasets/{dataset_id}", datasetPath(datasetId))),
  download: (datasetId: string, fallbackName: string) =>
    download(api.GET("/api/datasets/{dataset_id}/download", { ...datasetPath(datasetId), ...AS_FILE }), fallbackName),
  upload: uploadDataset,
};

/**
 * Multipart upload with progress (fetch reports none). Text parts go first, so the server refuses a bad
 * name before the file is sent.
 */
const UPLOAD = "/api/datasets/upload" satisfies keyof paths;
type Uploaded = paths[typeof UPLOAD]["post"]["responses"][201]["content"]["application/json"];

export function uploadDataset(form: UploadForm, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<Uploaded> {
  const body = new FormData();
  body.append("name", form.name);
  body.append("format", form.format);
  if (form.remark) body.append("remark", form.remark);
  for (const file of form.files) body.append("file", file, file.name);

  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", UPLOAD);
    xhr.setRequestHeader("Accept", "application/json");
    const token = tokenStore.get();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      const response = new Response(xhr.responseText || null, {
        status: xhr.status,
        statusText: xhr.statusText,
        headers: { "Content-Type": xhr.getResponseHeader("Content-Type") ?? "application/json" },
      });
      if (xhr.status >= 200 && xhr.status < 300) {
        response.json().then(resolve, reject);
      } else {
        failure(response, token !== null).then(reject, reject);
      }
    };
    xhr.onerror = () => reject(networkError());
    xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(body);
  });
}

export type ModelFilters = NonNullable<paths["/api/models"]["get"]["parameters"]["query"]>;

export const modelsApi = {
  list: (query: ModelFilters, signal?: AbortSignal) =>
    ok(api.GET("/api/models", { params: { query }, signal })) as Promise<ModelPage>,
  get: (modelId: string, signal?: AbortSignal) => ok(api.GET("/api/models/{model_id}", { ...modelPath(modelId), signal })) as Promise<Model>,
  lineage: (modelId: string, signal?: AbortSignal) =>
    ok(api.GET("/api/models/{model_id}/lineage", { ...modelPath(modelId), signal })) as Promise<Lineage>,
  /** Register a preset base model (admins). */
  create: (preset: PresetCreate) => ok(api.POST("/api/models", { body: preset as Schemas["PresetCreate"] })) as Promise<Model>,
  patch: (modelId: string, change: ModelChange) =>
    ok(api.PATCH("/api/models/{model_id}", { ...modelPath(modelId), body: change })) as Promise<Model>,
  remove: (modelId: string) => ok(api.DELETE("/api/models/{model_id}", modelPath(modelId))),
  /** A kept checkpoint of the caller's training job as a model: registered now, or the model it already is. */
  registerCheckpoint: (jobId: string, step: number) =>
    ok(api.POST("/api/models/checkpoints", { body: { job_id: jobId, step } })) as Promise<Model>,
};
