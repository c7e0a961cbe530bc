import { useState } from "react";

import { ApiError } from "../../api/client";
import { jobsApi, type JobDetail, type JobRequest } from "../../api/jobs";
import { formFieldOf } from "../../lib/catalog";

/** Submit a job and place a refusal next to the field it names (when that field is on the form). */
export function useJobSubmit<F extends string>(fields: readonly F[], onSubmitted: (job: JobDetail) => void) {
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Partial<Record<F, string>>>({});
  const [formError, setFormError] = useState<string | null>(null);

  const submit = async (body: JobRequest) => {
    setBusy(true);
    setErrors({});
    setFormError(null);
    try {
      onSubmitted(await jobsApi.submit(body));
    } catch (error) {
      setBusy(false);
      const field = error instanceof ApiError ? (formFieldOf(error.field) as F | null) : null;
      if (error instanceof ApiError && field && fields.includes(field)) setErrors({ [field]: error.message } as Partial<Record<F, string>>);
      else setFormError(error instanceof Error ? error.message : String(error));
    }
  };
  const clear = (field: F) => setErrors((current) => ({ ...current, [field]: undefined }));
  return { busy, errors, formError, submit, clear, setFormError };
}
