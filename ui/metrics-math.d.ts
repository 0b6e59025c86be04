// Types of ui/metrics-math.js, for the unit test that imports it
// (test/unit/status-math.test.ts); the browser loads the .js alone.

export interface Value {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}
export interface Sample {
  at: number;
  instance: string;
  process: string;
  metrics: Map<string, Value[]>;
}
type Keep = (labels: Record<string, string | number>) => boolean;

export function sampleOf(json: Array<{ name: string; values: Value[] }>, at: number): Sample;
export function count(n: number): string;
export function bytes(n: number): string;
export function perSecond(n: number): string;
export function duration(seconds: number): string;
export function values(metrics: Map<string, Value[]>, name: string, keep?: Keep): Value[];
export function total(metrics: Map<string, Value[]>, name: string, keep?: Keep): number;
export function increase(older: Sample, newer: Sample, name: string, keep?: Keep): number;
export function byLabel(
  metrics: Map<string, Value[]>,
  name: string,
  label: string,
): Map<string, number>;
export function listed(map: Map<string, number>, format?: (n: number) => string): string;
export function quantile(q: number, older: Sample, newer: Sample, keep?: Keep): number;
