import { ApiError } from "../api/client";

export interface FormErrors<F extends string> {
  /** Messages to show next to the fields the API named. */
  fields: Partial<Record<F, string>>;
  /** A message for the form as a whole, when no shown field is at fault. */
  form: string | null;
}

export const NO_ERRORS: FormErrors<never> = { fields: {}, form: null };

/** Place an error next to the field it names, or above the form when that field is not on it. */
export function formErrorsFrom<F extends string>(error: unknown, fields: readonly F[]): FormErrors<F> {
  if (error instanceof ApiError) {
    const field = fields.find((name) => name === error.field);
    if (field) return { fields: { [field]: error.message } as Partial<Record<F, string>>, form: null };
    return { fields: {}, form: error.message };
  }
  return { fields: {}, form: error instanceof Error ? error.message : String(error) };
}
