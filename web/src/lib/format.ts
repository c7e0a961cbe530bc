/** Numbers, sizes and durations as people read them. */

/** 3725 → "1:02:05", 65 → "1:05"; null when unknown. */
export function formatDuration(seconds: number | null | undefined): string | null {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return null;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = h > 0 ? String(m).padStart(2, "0") : String(m);
  return `${h > 0 ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`;
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1536 → "1.5 KB" (powers of 1024, as disks are counted here). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "—";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : Number(value.toFixed(value < 10 ? 1 : 0))} ${UNITS[unit]}`;
}

/**
 * Bytes done of all as megabytes, one decimal under 10 MB (as the agent's log says it): (125829120, 314572800) →
 * ["120", "300"].
 */
export function formatMegabytes(done: number, total: number): [string, string] {
  const digits = total < 10 * 1024 * 1024 ? 1 : 0;
  const mb = (bytes: number) => (bytes / (1024 * 1024)).toFixed(digits);
  return [mb(done), mb(total)];
}

/** 7_000_000_000 → "7B", 1_200_000 → "1.2M". */
export function formatCount(count: number | null | undefined): string {
  if (count === null || count === undefined || !Number.isFinite(count)) return "—";
  const steps: [number, string][] = [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ];
  for (const [size, suffix] of steps) {
    if (Math.abs(count) >= size) return `${Number((count / size).toFixed(1))}${suffix}`;
  }
  return String(count);
}

const EXACT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** A count to the unit, grouped by thousands (1234567 → "1,234,567"): usage, where "1.2M" would hide what was used. */
export function formatExact(count: number | null | undefined): string {
  if (count === null || count === undefined || !Number.isFinite(count)) return "—";
  return EXACT.format(count);
}

/** Metrics: up to 4 significant decimals, never exponent noise like 0.30000000000000004. */
export function formatMetric(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (Math.abs(value) >= 1000) return value.toFixed(0);
  if (Math.abs(value) >= 1) return String(Number(value.toFixed(4)));
  return String(Number(value.toPrecision(4)));
}

/** Short form of a job id for tables (the full id stays in the title and the link). */
export function shortId(id: string): string {
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id;
}
