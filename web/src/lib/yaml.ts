/** A small YAML writer for previews: mappings, lists and scalars, keys in insertion order (as the server's). */

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./,\- ]*$/;
const RESERVED = /^(?:true|false|yes|no|on|off|null|~|y|n)$/i;
const NUMERIC = /^[-+]?(?:\d[\d_]*)?(?:\.\d*)?(?:e[-+]?\d+)?$/i;

function scalar(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return formatNumber(value);
  const text = String(value);
  if (text !== "" && PLAIN.test(text) && !RESERVED.test(text) && !NUMERIC.test(text) && !text.endsWith(" ")) return text;
  return `'${text.replace(/'/g, "''")}'`;
}

/** Numbers as PyYAML writes them: floats keep a dot (1.0), small ones use an exponent (1.0e-05). */
function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? ".nan" : value > 0 ? ".inf" : "-.inf";
  if (Number.isInteger(value) && Math.abs(value) < 1e16) return String(value);
  // Python's repr switches to an exponent below 1e-4 (JavaScript only below 1e-6).
  const abs = Math.abs(value);
  const text = abs < 1e-4 || abs >= 1e16 ? value.toExponential() : String(value);
  if (!text.includes("e")) return text;
  const [mantissa = "", exponent = ""] = text.split("e");
  const sign = exponent.startsWith("-") ? "-" : "+";
  const digits = exponent.replace(/^[-+]/, "").padStart(2, "0");
  return `${mantissa.includes(".") ? mantissa : `${mantissa}.0`}e${sign}${digits}`;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function lines(value: unknown, indent: string): string[] {
  if (isMapping(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0) return [`${indent}{}`];
    return entries.flatMap(([key, item]) => {
      if ((isMapping(item) && Object.keys(item).length > 0) || (Array.isArray(item) && item.length > 0)) {
        return [`${indent}${scalar(key)}:`, ...lines(item, Array.isArray(item) ? indent : `${indent}  `)];
      }
      return [`${indent}${scalar(key)}: ${isMapping(item) ? "{}" : Array.isArray(item) ? "[]" : scalar(item)}`];
    });
  }
  if (Array.isArray(value)) {
    return value.flatMap((item) => {
      if (isMapping(item) || Array.isArray(item)) {
        const [first = "", ...rest] = lines(item, `${indent}  `);
        return [`${indent}- ${first.trimStart()}`, ...rest];
      }
      return [`${indent}- ${scalar(item)}`];
    });
  }
  return [`${indent}${scalar(value)}`];
}

export function toYaml(value: unknown): string {
  return `${lines(value, "").join("\n")}\n`;
}
