import { useId, type ReactNode, type SelectHTMLAttributes, type TextareaHTMLAttributes } from "react";

interface Described {
  label: string;
  hint?: ReactNode;
  error?: string | null | undefined;
}

/** ids for a control's hint and error, and the aria attributes that link them. */
function useDescribed(hint: unknown, error: unknown) {
  const id = useId();
  const hintId = hint ? `${id}-hint` : undefined;
  const errorId = error ? `${id}-error` : undefined;
  return {
    id,
    hintId,
    errorId,
    aria: {
      "aria-invalid": error ? true : undefined,
      "aria-describedby": [errorId, hintId].filter(Boolean).join(" ") || undefined,
    },
  };
}

function Notes({ hint, error, hintId, errorId }: { hint?: ReactNode; error?: string | null; hintId?: string; errorId?: string }) {
  return (
    <>
      {error && (
        <p id={errorId} className="field__error">
          {error}
        </p>
      )}
      {hint && (
        <p id={hintId} className="field__hint">
          {hint}
        </p>
      )}
    </>
  );
}

type SelectProps = Described & Omit<SelectHTMLAttributes<HTMLSelectElement>, "id"> & {
  options: { value: string; label: string; disabled?: boolean }[];
};

/** A labelled select with hint and error, wired like Field. */
export function SelectField({ label, hint, error, options, className, ...select }: SelectProps) {
  const { id, hintId, errorId, aria } = useDescribed(hint, error);
  return (
    <div className={["field", error ? "field--invalid" : "", className ?? ""].join(" ").trim()}>
      <label htmlFor={id}>{label}</label>
      <select id={id} {...aria} {...select}>
        {options.map((option) => (
          <option key={option.value} value={option.value} disabled={option.disabled}>
            {option.label}
          </option>
        ))}
      </select>
      <Notes hint={hint} error={error} hintId={hintId} errorId={errorId} />
    </div>
  );
}

type TextAreaProps = Described & Omit<TextareaHTMLAttributes<HTMLTextAreaElement>, "id">;

export function TextAreaField({ label, hint, error, className, ...area }: TextAreaProps) {
  const { id, hintId, errorId, aria } = useDescribed(hint, error);
  return (
    <div className={["field", error ? "field--invalid" : "", className ?? ""].join(" ").trim()}>
      <label htmlFor={id}>{label}</label>
      <textarea id={id} {...aria} {...area} />
      <Notes hint={hint} error={error} hintId={hintId} errorId={errorId} />
    </div>
  );
}

interface CheckboxProps extends Described {
  checked: boolean;
  onChange: (checked: boolean) => void;
  disabled?: boolean;
  name?: string;
}

export function CheckboxField({ label, hint, error, checked, onChange, disabled, name }: CheckboxProps) {
  const { id, hintId, errorId, aria } = useDescribed(hint, error);
  return (
    <div className={["field field--check", error ? "field--invalid" : ""].join(" ").trim()}>
      <div className="check">
        <input
          id={id}
          type="checkbox"
          name={name}
          checked={checked}
          disabled={disabled}
          onChange={(event) => onChange(event.target.checked)}
          {...aria}
        />
        <label htmlFor={id}>{label}</label>
      </div>
      <Notes hint={hint} error={error} hintId={hintId} errorId={errorId} />
    </div>
  );
}
