import { useCallback, useState } from "react";

/** The message of an action that failed, for an error notice; `fail` fits a `.catch` or a `catch` block. */
export function useFailure() {
  const [failure, setFailure] = useState<string | null>(null);
  const fail = useCallback((error: unknown) => setFailure(error instanceof Error ? error.message : String(error)), []);
  const clear = useCallback(() => setFailure(null), []);
  return { failure, fail, clear };
}
