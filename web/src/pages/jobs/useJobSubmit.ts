import { useRef, useState } from "react";

import { ApiError } from "../../api/client";
import { jobsApi, type JobDetail, type JobRequest } from "../../api/jobs";
import { formFieldOf } from "../../lib/catalog";
import { SubmitKeys } from "../../lib/submitKeys";

/** Submit a job and place a refusal next to the field it names (when that field is on the form). The same request
 * sent again (a retry after a network error) carries the same Idempotency-Key: one job, whatever happened to the
 * first answer. */
export function useJobSubmit<F extends string>(fields: readonly F[], onSubmitted: (job: JobDetail) => void) {
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Partial<Record<F, string>>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const keys = useRef(new SubmitKeys());

  const submit = async (body: JobRequest) => {
    setBusy(true);
    setErrors({});
    setFormError(null);
    try {
      const job = await jobsApi.submit(body, keys.current.keyFor(body));
      keys.current.succeeded();
      onSubmitted(job);
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
