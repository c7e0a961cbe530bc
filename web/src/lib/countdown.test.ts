import { act, renderHook } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { secondsLeft, useCountdown } from "./countdown";

describe("secondsLeft", () => {
  it("counts down from the server's value at the time it was measured, never below zero", () => {
    expect(secondsLeft(300, 10_000, 10_000)).toBe(300);
    expect(secondsLeft(300, 10_000, 12_500)).toBe(298);
    expect(secondsLeft(299.6, 0, 0)).toBe(300);
    expect(secondsLeft(5, 0, 60_000)).toBe(0);
    expect(secondsLeft(null, 0, 0)).toBeNull();
    expect(secondsLeft(undefined, 0, 0)).toBeNull();
  });
});

describe("useCountdown", () => {
  afterEach(() => vi.useRealTimers());

  it("ticks every second and starts again from a fresh value", () => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000_000);
    const { result, rerender } = renderHook(({ left, at }) => useCountdown(left, at), { initialProps: { left: 60 as number | null, at: 1_000_000 } });
    expect(result.current).toBe(60);
    act(() => void vi.advanceTimersByTime(3000));
    expect(result.current).toBe(57);
    rerender({ left: 60, at: Date.now() }); // a request restarted the idle timer
    expect(result.current).toBe(60);
    rerender({ left: null, at: Date.now() });
    expect(result.current).toBeNull();
  });
});
