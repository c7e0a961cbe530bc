import { describe, expect, it } from "vitest";

import { formFieldOf } from "./catalog";
import { formatBytes, formatCount, formatDuration, formatExact, formatMegabytes, formatMetric } from "./format";
import { rowProblems } from "../pages/datasets/uploadErrors";

describe("formatting", () => {
  it("durations", () => {
    expect(formatDuration(65)).toBe("1:05");
    expect(formatDuration(3725)).toBe("1:02:05");
    expect(formatDuration(null)).toBeNull();
    expect(formatDuration(-1)).toBeNull();
  });

  it("sizes and counts", () => {
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(null)).toBe("—");
    expect(formatCount(494_032_768)).toBe("494M");
    expect(formatCount(7_000_000_000)).toBe("7B");
    expect(formatCount(64)).toBe("64");
    expect(formatExact(1_234_567)).toBe("1,234,567");
    expect(formatExact(0)).toBe("0");
    expect(formatExact(null)).toBe("—");
    expect(formatMegabytes(120 * 1024 * 1024, 300 * 1024 * 1024)).toEqual(["120", "300"]);
    expect(formatMegabytes(1.5 * 1024 * 1024, 3 * 1024 * 1024)).toEqual(["1.5", "3.0"]);
  });

  it("metrics without float noise", () => {
    expect(formatMetric(0.30000000000000004)).toBe("0.3");
    expect(formatMetric(7.604213)).toBe("7.6042");
    expect(formatMetric(0.000123456)).toBe("0.0001235");
    expect(formatMetric(undefined)).toBe("—");
  });
});

describe("formFieldOf", () => {
  it("maps an API field path to the form's input", () => {
    expect(formFieldOf("datasets[1]")).toBe("datasets");
    expect(formFieldOf("config_overrides.output_dir")).toBe("config_overrides");
    expect(formFieldOf("quantization.calibration_dataset")).toBe("calibration_dataset");
    expect(formFieldOf(null)).toBeNull();
  });
});

describe("rowProblems", () => {
  it("lists each bad row on its own", () => {
    expect(rowProblems("3 of 10 rows do not fit the alpaca format: line 3: missing `output`; row 7: `text` is empty; …")).toEqual({
      summary: "3 of 10 rows do not fit the alpaca format",
      rows: ["line 3: missing `output`", "row 7: `text` is empty"],
    });
    expect(rowProblems("the dataset has no rows")).toEqual({ summary: "the dataset has no rows", rows: [] });
  });
});
