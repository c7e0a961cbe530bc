import "uplot/dist/uPlot.min.css";

import { useEffect, useRef } from "react";
import uPlot from "uplot";

export interface Series {
  label: string;
  /** y for each x; null leaves a gap. */
  values: (number | null)[];
  color: string;
  /** Put this series on the right-hand axis (e.g. the learning rate beside the loss). */
  right?: boolean;
}

interface LineChartProps {
  title: string;
  xLabel: string;
  x: number[];
  series: Series[];
  height?: number;
  /** x is a time in seconds since the epoch (uPlot's time axis, in the browser's zone). */
  time?: boolean;
}

function axisFormat(values: number[]): string[] {
  return values.map((v) => (v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4)))));
}

/**
 * An interactive line chart (uPlot: zoom by dragging, hover for values, a legend that toggles series).
 * It is redrawn in place when data arrive, never rebuilt.
 */
export default function LineChart({ title, xLabel, x, series, height = 260, time = false }: LineChartProps) {
  const host = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const shape = series.map((s) => `${s.label}:${s.right ? "r" : "l"}`).join("|");

  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const hasRight = series.some((s) => s.right);
    const options: uPlot.Options = {
      width: Math.max(280, element.clientWidth || 600),
      height,
      scales: { x: { time } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      axes: [
        { label: xLabel, stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.15)" } },
        { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.15)" }, values: (_u, v) => axisFormat(v), size: 60 },
        ...(hasRight ? [{ side: 1, scale: "right", stroke: "currentColor", grid: { show: false }, values: (_u: uPlot, v: number[]) => axisFormat(v), size: 64 }] : []),
      ],
      series: [
        { label: xLabel },
        ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, scale: s.right ? "right" : "y", spanGaps: true, points: { show: x.length < 60 } })),
      ],
    };
    const plot = new uPlot(options, [x, ...series.map((s) => s.values)] as uPlot.AlignedData, element);
    chart.current = plot;
    const observer =
      typeof ResizeObserver === "undefined"
        ? null
        : new ResizeObserver(() => plot.setSize({ width: Math.max(280, element.clientWidth), height }));
    observer?.observe(element);
    return () => {
      observer?.disconnect();
      plot.destroy();
      chart.current = null;
    };
    // Rebuilt only when the set of series changes; new points go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height, xLabel, time]);

  useEffect(() => {
    chart.current?.setData([x, ...series.map((s) => s.values)] as uPlot.AlignedData);
  }, [x, series]);

  return (
    <figure className="chart">
      <figcaption className="chart__title">{title}</figcaption>
      <div ref={host} className="chart__plot" data-points={x.length} />
    </figure>
  );
}
