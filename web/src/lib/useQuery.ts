import { useCallback, useEffect, useRef, useState } from "react";

export interface Query<T> {
  data: T | undefined;
  error: unknown;
  /** True until the first answer for the current inputs (a refresh keeps showing the data it has). */
  loading: boolean;
  /** Load again, showing the loading state. */
  reload: () => void;
  /** Load again quietly, keeping what is shown until the answer arrives (live updates, polling). */
  refresh: () => void;
  update: (change: (current: T | undefined) => T | undefined) => void;
}

/**
 * Load data that depends on `deps` (filters, a page cursor, an id): a change of inputs cancels the request
 * in flight and shows the loading state; refreshes do not.
 */
export function useQuery<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[], enabled = true): Query<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(enabled);
  const [attempt, setAttempt] = useState({ n: 0, quiet: false });
  const loader = useRef(load);
  loader.current = load;
  const key = JSON.stringify(deps);
  const lastKey = useRef<string | null>(null);

  useEffect(() => {
    if (!enabled) return;
    const controller = new AbortController();
    const quiet = attempt.quiet && lastKey.current === key;
    lastKey.current = key;
    if (!quiet) {
      setLoading(true);
      setError(null);
    }
    loader.current(controller.signal).then(
      (value) => {
        setData(value);
        setError(null);
        setLoading(false);
      },
      (reason: unknown) => {
        // A quiet refresh that fails keeps what is shown; the next one tries again.
        if (controller.signal.aborted || quiet) return;
        setError(reason);
        setLoading(false);
      },
    );
    return () => controller.abort();
  }, [enabled, key, attempt]);

  const reload = useCallback(() => setAttempt((a) => ({ n: a.n + 1, quiet: false })), []);
  const refresh = useCallback(() => setAttempt((a) => ({ n: a.n + 1, quiet: true })), []);
  return { data, error, loading, reload, refresh, update: setData };
}
