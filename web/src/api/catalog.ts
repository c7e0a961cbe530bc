/** Calls to /api/datasets and /api/models: what jobs are made from. */

import { ApiError, api, toApiError, withQuery } from "./client";
import type { components } from "./schema";
import { tokenStore } from "./token";

type Schemas = components["schemas"];

export type Dataset = Schemas["Dataset"];
export type DatasetPage = Schemas["DatasetPage"];
export type Preview = Schemas["Preview"];
export type PreviewRow = Schemas["PreviewRow"];
export type DatasetFormat = Dataset["format"];
export const DATASET_FORMATS: DatasetFormat[] = ["alpaca", "sharegpt", "text", "pairwise"];

export type Model = Omit<Schemas["Model"], "details"> & { details: Record<string, unknown> };
export type ModelPage = Omit<Schemas["ModelPage"], "items"> & { items: Model[] };
export type LineageEntry = Model & { depth: number };
/** A preset to register, or what changes in a model (owners: name and remark; admins: a preset's sources too). */
export type ModelChange = Schemas["ModelPatch"];
export type Lineage = { model: Model; ancestors: LineageEntry[]; descendants: LineageEntry[]; descendants_truncated: boolean };

const DATASETS = "/api/datasets";
const MODELS = "/api/models";
const id = encodeURIComponent;

export interface DatasetFilters {
  q?: string;
  format?: string;
  visibility?: string;
  cursor?: string | null;
  limit?: number;
}

export interface UploadForm {
  name: string;
  format: DatasetFormat;
  remark?: string;
  files: File[];
}

export const datasetsApi = {
  list: (filters: DatasetFilters, signal?: AbortSignal) =>
    api.get<DatasetPage>(withQuery(DATASETS, { ...filters }), { signal }),
  get: (datasetId: string, signal?: AbortSignal) => api.get<Dataset>(`${DATASETS}/${id(datasetId)}`, { signal }),
  preview: (datasetId: string, rows = 5, signal?: AbortSignal) =>
    api.get<Preview>(withQuery(`${DATASETS}/${id(datasetId)}/preview`, { rows }), { signal }),
  patch: (datasetId: string, change: { name?: string; remark?: string }) =>
    api.patch<Dataset>(`${DATASETS}/${id(datasetId)}`, change),
  remove: (datasetId: string) => api.delete(`${DATASETS}/${id(datasetId)}`),
  downloadPath: (datasetId: string) => `${DATASETS}/${id(datasetId)}/download`,
  upload: uploadDataset,
};

/**
 * Multipart upload with progress (fetch reports none). Text parts go first, so the server refuses a bad
 * name before the file is sent.
 */
export function uploadDataset(form: UploadForm, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<Dataset> {
  const body = new FormData();
  body.append("name", form.name);
  body.append("format", form.format);
  if (form.remark) body.append("remark", form.remark);
  for (const file of form.files) body.append("file", file, file.name);

  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${DATASETS}/upload`);
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
        toApiError(response).then(reject, reject);
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network_error", "Could not reach the server. Check your connection and try again."));
    xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(body);
  });
}

export interface ModelFilters {
  q?: string;
  kind?: string;
  source?: string;
  page?: number;
  limit?: number;
  sort?: string;
  order?: string;
}

export const modelsApi = {
  list: (filters: ModelFilters, signal?: AbortSignal) => api.get<ModelPage>(withQuery(MODELS, { ...filters }), { signal }),
  get: (modelId: string, signal?: AbortSignal) => api.get<Model>(`${MODELS}/${id(modelId)}`, { signal }),
  lineage: (modelId: string, signal?: AbortSignal) => api.get<Lineage>(`${MODELS}/${id(modelId)}/lineage`, { signal }),
  /** Register a preset base model (admins). */
  create: (preset: ModelChange) => api.post<Model>(MODELS, preset),
  patch: (modelId: string, change: ModelChange) => api.patch<Model>(`${MODELS}/${id(modelId)}`, change),
  remove: (modelId: string) => api.delete(`${MODELS}/${id(modelId)}`),
};
