/**
 * The datasets service says which rows are wrong inside one message:
 * "3 of 10 rows do not fit the alpaca format: line 3: missing `output`; row 7: `text` is empty; …".
 * Split it so each row's problem is its own list item.
 */
export function rowProblems(message: string): { summary: string; rows: string[] } {
  const match = /^(\d+ of \d+ rows do not fit the \w+ format): (.*)$/s.exec(message);
  if (!match) return { summary: message, rows: [] };
  const rows = match[2]!
    .split("; ")
    .map((row) => row.trim())
    .filter((row) => row && row !== "…");
  return { summary: match[1]!, rows };
}
