import { describe, expect, it } from "vitest";

import { toYaml } from "./yaml";

describe("toYaml", () => {
  it("writes scalars as PyYAML does", () => {
    expect(toYaml({ a: true, b: 0.0001, c: 1e-5, d: 3, e: null, f: "cosine", g: "true", h: "12", i: "a: b", j: "" })).toBe(
      "a: true\nb: 0.0001\nc: 1.0e-05\nd: 3\ne: null\nf: cosine\ng: 'true'\nh: '12'\ni: 'a: b'\nj: ''\n",
    );
  });

  it("nests mappings and lists", () => {
    expect(toYaml({ outer: { inner: [1, "x"], empty: {} }, list: [{ k: 1, l: 2 }] })).toBe(
      "outer:\n  inner:\n  - 1\n  - x\n  empty: {}\nlist:\n- k: 1\n  l: 2\n",
    );
  });
});
