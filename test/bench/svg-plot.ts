/**
 * Plots for the benchmarks, as hand-made SVG (no dependency): a CDF or a
 * histogram of distributions side by side, and time series. One call per
 * figure, next to the bench's JSON:
 *
 *   writeSvg(benchResultPath('scheduler-lateness.svg'), {
 *     kind: 'cdf', title: 'Lateness', xLabel: '|actual − planned|', unit: 'ns', logX: true,
 *     series: [{ label: 'lockstep', values: latenessNs }, { label: 'setTimeout', values: other }],
 *   });
 *   writeSvg(path, { kind: 'line', title, xLabel: 's', yLabel: 'µs', series: [{ label, points: [[t, y], ...] }] });
 *
 * Values are plain numbers in the unit given (ns values are formatted as
 * ns/µs/ms/s on the axis when unit is 'ns').
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const PALETTE = ['#0969da', '#cf222e', '#1a7f37', '#8250df', '#bf8700', '#e16f24', '#1b7c83', '#bf3989'];

interface Common {
  title: string;
  /** Under the title: what ran, where (machine load...). */
  subtitle?: string;
  xLabel: string;
  width?: number;
  height?: number;
}

export interface DistributionSeries {
  label: string;
  values: number[];
  color?: string;
}

export interface CdfPlot extends Common {
  kind: 'cdf';
  /** 'ns' formats the x axis as durations. */
  unit?: 'ns' | string;
  /** Log x axis; values ≤ 0 are drawn at the axis minimum (say |x| in xLabel if you pass absolute values). */
  logX?: boolean;
  series: DistributionSeries[];
}

export interface HistogramPlot extends Common {
  kind: 'histogram';
  unit?: 'ns' | string;
  logX?: boolean;
  bins?: number;
  series: DistributionSeries[];
}

export interface LineSeries {
  label: string;
  points: [number, number][];
  color?: string;
  /** Markers instead of (or besides) a line: sparse samples read better as dots. */
  markers?: boolean;
  line?: boolean;
}

export interface LinePlot extends Common {
  kind: 'line';
  yLabel: string;
  /** 'ns' formats the y axis as durations. */
  yUnit?: 'ns' | string;
  logY?: boolean;
  series: LineSeries[];
}

export type Plot = CdfPlot | HistogramPlot | LinePlot;

/** bench-results/NAME under the current directory (where run.ts writes the JSON). */
export function benchResultPath(name: string): string {
  return join(process.cwd(), 'bench-results', name);
}

export function writeSvg(path: string, plot: Plot): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, renderSvg(plot));
  return path;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function formatValue(v: number, unit?: string): string {
  if (unit !== 'ns') {
    const a = Math.abs(v);
    const text = a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(1) : Number(v.toPrecision(4)).toString();
    return unit ? `${text} ${unit}` : text;
  }
  const a = Math.abs(v);
  const fix = (x: number) => Number(x.toPrecision(3)).toString();
  if (a < 1e3) return `${fix(v)} ns`;
  if (a < 1e6) return `${fix(v / 1e3)} µs`;
  if (a < 1e9) return `${fix(v / 1e6)} ms`;
  return `${fix(v / 1e9)} s`;
}

interface Axis {
  min: number;
  max: number;
  log: boolean;
  ticks: number[];
  /** value → 0..1 */
  frac(v: number): number;
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1) * mag;
}

function axis(values: number[], log: boolean, count = 6): Axis {
  const finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  let min = finite.length ? Math.min(...finite) : 0;
  let max = finite.length ? Math.max(...finite) : 1;
  if (log) {
    if (!finite.length) [min, max] = [1, 10];
    const lo = Math.floor(Math.log10(min));
    const hi = Math.max(lo + 1, Math.ceil(Math.log10(max)));
    const ticks: number[] = [];
    for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
    return { min: 10 ** lo, max: 10 ** hi, log, ticks, frac: (v) => (Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo) };
  }
  if (min === max) [min, max] = [min - 1, max + 1];
  const step = niceStep(max - min, count);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let t = lo; t <= hi + step / 2; t += step) ticks.push(Math.abs(t) < step / 1e6 ? 0 : t);
  return { min: lo, max: hi, log, ticks, frac: (v) => (v - lo) / (hi - lo) };
}

/** Down-samples a sorted array to at most n points (a CDF of 100,000 values needs no 100,000-point path). */
function thin<T>(list: T[], n: number): T[] {
  if (list.length <= n) return list;
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(list[Math.round((i * (list.length - 1)) / (n - 1))]!);
  return out;
}

export function renderSvg(plot: Plot): string {
  const W = plot.width ?? 760;
  const H = plot.height ?? 420;
  const m = { left: 78, right: 40, top: plot.subtitle ? 58 : 40, bottom: 52 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const parts: string[] = [];
  const colorOf = (i: number, c?: string) => c ?? PALETTE[i % PALETTE.length]!;

  let xAxis: Axis;
  let yAxis: Axis;
  let xUnit: string | undefined;
  let yUnit: string | undefined;
  let yLabel: string;
  const paths: { color: string; d: string; markers: [number, number][]; line: boolean }[] = [];
  const X = (a: Axis, v: number) => m.left + a.frac(v) * pw;
  const Y = (a: Axis, v: number) => m.top + ph - a.frac(v) * ph;

  if (plot.kind === 'cdf' || plot.kind === 'histogram') {
    xUnit = plot.unit;
    const all = plot.series.flatMap((s) => s.values);
    xAxis = axis(all, !!plot.logX);
    const clamp = (v: number) => (plot.logX ? Math.max(v, xAxis.min) : v);
    if (plot.kind === 'cdf') {
      yAxis = { min: 0, max: 1, log: false, ticks: [0, 0.25, 0.5, 0.75, 1], frac: (v) => v };
      yLabel = 'fraction ≤ x';
      plot.series.forEach((s, i) => {
        const sorted = [...s.values].filter(Number.isFinite).sort((a, b) => a - b);
        const pts = thin(sorted.map((v, k) => [clamp(v), (k + 1) / sorted.length] as [number, number]), 600);
        const d = pts.map(([x, y], k) => `${k ? 'L' : 'M'}${X(xAxis, x).toFixed(1)},${Y(yAxis, y).toFixed(1)}`).join('');
        paths.push({ color: colorOf(i, s.color), d, markers: [], line: true });
      });
    } else {
      const bins = plot.bins ?? 40;
      const edges = Array.from({ length: bins + 1 }, (_, k) => (xAxis.log ? 10 ** (Math.log10(xAxis.min) + (k / bins) * (Math.log10(xAxis.max) - Math.log10(xAxis.min))) : xAxis.min + (k / bins) * (xAxis.max - xAxis.min)));
      const counts = plot.series.map((s) => {
        const c = new Array<number>(bins).fill(0);
        for (const v of s.values) {
          const f = xAxis.frac(clamp(v));
          c[Math.min(bins - 1, Math.max(0, Math.floor(f * bins)))]!++;
        }
        return c.map((n) => n / Math.max(1, s.values.length));
      });
      yAxis = axis([0, ...counts.flat()], false, 5);
      yLabel = 'fraction of samples';
      counts.forEach((c, i) => {
        let d = `M${X(xAxis, edges[0]!).toFixed(1)},${Y(yAxis, 0).toFixed(1)}`;
        c.forEach((f, k) => (d += `L${X(xAxis, edges[k]!).toFixed(1)},${Y(yAxis, f).toFixed(1)}L${X(xAxis, edges[k + 1]!).toFixed(1)},${Y(yAxis, f).toFixed(1)}`));
        d += `L${X(xAxis, edges[bins]!).toFixed(1)},${Y(yAxis, 0).toFixed(1)}`;
        paths.push({ color: colorOf(i, plot.series[i]!.color), d, markers: [], line: true });
      });
    }
  } else {
    yUnit = plot.yUnit;
    yLabel = plot.yLabel;
    xAxis = axis(plot.series.flatMap((s) => s.points.map((p) => p[0])), false);
    yAxis = axis(plot.series.flatMap((s) => s.points.map((p) => p[1])), !!plot.logY);
    plot.series.forEach((s, i) => {
      const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
      const d = pts.map(([x, y], k) => `${k ? 'L' : 'M'}${X(xAxis, x).toFixed(1)},${Y(yAxis, y).toFixed(1)}`).join('');
      paths.push({ color: colorOf(i, s.color), d, markers: s.markers ? pts.map(([x, y]) => [X(xAxis, x), Y(yAxis, y)]) : [], line: s.line ?? !s.markers });
    });
  }

  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(plot.title)}</text>`);
  if (plot.subtitle) parts.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#57606a">${esc(plot.subtitle)}</text>`);
  // Grid and ticks.
  for (const t of xAxis.ticks) {
    const x = X(xAxis, t).toFixed(1);
    parts.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#eaeef2"/>`);
    parts.push(`<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle" fill="#57606a">${esc(formatValue(t, xUnit))}</text>`);
  }
  for (const t of yAxis.ticks) {
    const y = Y(yAxis, t).toFixed(1);
    parts.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#eaeef2"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" dy="4" text-anchor="end" fill="#57606a">${esc(plot.kind === 'cdf' ? String(t) : formatValue(t, yUnit))}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#8c959f"/>`);
  parts.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(plot.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  parts.push(`<clipPath id="plot-area"><rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}"/></clipPath>`);
  parts.push(`<g clip-path="url(#plot-area)">`);
  for (const p of paths) {
    if (p.line && p.d) parts.push(`<path d="${p.d}" fill="none" stroke="${p.color}" stroke-width="1.8"/>`);
    for (const [x, y] of p.markers) parts.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="2.2" fill="${p.color}"/>`);
  }
  parts.push(`</g>`);
  // Legend, top left inside the plot.
  const names = plot.series.map((s) => s.label);
  const legendWidth = 40 + 7 * Math.max(0, ...names.map((n) => n.length));
  parts.push(`<rect x="${m.left + 4}" y="${m.top + 2}" width="${legendWidth}" height="${names.length * 17 + 4}" fill="#fff" fill-opacity="0.85"/>`);
  names.forEach((name, i) => {
    const y = m.top + 14 + i * 17;
    parts.push(`<rect x="${m.left + 10}" y="${y - 9}" width="14" height="4" fill="${colorOf(i, plot.series[i]!.color)}"/>`);
    parts.push(`<text x="${m.left + 30}" y="${y - 3}">${esc(name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
