import { open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import {
  METRIC_UNITS,
  PROMETHEUS_COUNTER_FAMILIES,
  PROMETHEUS_LABEL,
  PROMETHEUS_TIMESTAMPS,
  prometheusMetric,
  type MetricDatum,
  type MetricName,
} from "../../contracts";
import type { MetricsSink } from "./metrics";

/**
 * The Prometheus sink: the same data points as CloudWatch gets, kept as the current state of each series
 * in a text file that node_exporter's textfile collector serves. A backup is a short-lived process, so the
 * state lives in the file: counters add to what the last run left there, gauges hold the newest value,
 * and `*_last_success_timestamp_seconds` / `*_last_failure_timestamp_seconds` the time of the last outcome. Each write replaces the whole file
 * atomically (a temporary file in the same directory, fsync, rename): the collector never reads half a file.
 *
 * One event is one `put()`: CloudWatch gets it once per dimension set (per host, per cluster, per reason),
 * Prometheus once with all of them as labels — PromQL aggregates. The failure reason is a label of the last
 * failure's timestamp only, not of the counter, so the counter's series exist before the first failure (see
 * PROMETHEUS_COUNTER_FAMILIES).
 */

/** One series: a metric name and its labels, and its value. */
interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A series of the file's state, as kept in its state comment line. */
type State = Series[];

/** The file's state comment: a comment to the collector, the sink's memory across runs. */
const STATE_MARK = "# mysql-backup-state ";

/** Seams of the sink for tests. */
export interface PrometheusSinkOptions {
  /** Called between writing the temporary file and renaming it (tests interleave readers there). */
  beforeRename?: () => Promise<void>;
}

/** The sink writing `path` (a `.prom` file in the textfile collector's directory). Writes run one at a time. */
export function prometheusSink(path: string, options: PrometheusSinkOptions = {}): MetricsSink {
  let queue: Promise<void> = Promise.resolve();
  return {
    put(data) {
      const write = queue.then(async () => {
        if (data.length === 0) return;
        const state = apply(await readState(path), data);
        await writeAtomically(path, render(state), options);
      });
      queue = write.catch(() => undefined);
      return write;
    },
  };
}

/** The series the file at `path` holds, or none when there is no file yet. */
export async function readState(path: string): Promise<State> {
  const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return "";
    throw e;
  });
  const line = text.split("\n").find((l) => l.startsWith(STATE_MARK));
  if (line === undefined) return [];
  try {
    return JSON.parse(line.slice(STATE_MARK.length)) as State;
  } catch {
    // A damaged file loses the counters' history; the next write starts them again rather than failing a backup.
    return [];
  }
}

/** The state after one event's data points. */
export function apply(state: State, data: MetricDatum[]): State {
  const next = state.map((s) => ({ ...s, labels: { ...s.labels } }));
  const set = (name: string, labels: Record<string, string>, value: (old: number | undefined) => number) => {
    const found = next.find((s) => s.name === name && sameLabels(s.labels, labels));
    if (found) found.value = value(found.value);
    else next.push({ name, labels, value: value(undefined) });
  };
  for (const event of events(data)) {
    const { reason, ...labels } = event.labels;
    const metric = prometheusMetric(event.name);
    if (metric.type === "counter") {
      for (const member of PROMETHEUS_COUNTER_FAMILIES.find((f) => f.includes(event.name)) ?? [event.name]) {
        set(prometheusMetric(member).name, labels, (old) => old ?? 0);
      }
      set(metric.name, labels, (old) => (old ?? 0) + event.value);
    } else {
      set(metric.name, labels, () => event.value / metric.divisor);
    }
    const timestamp = PROMETHEUS_TIMESTAMPS[event.name];
    const at = Date.parse(event.timestamp) / 1000;
    if (timestamp !== undefined)
      set(timestamp, reason === undefined ? labels : { ...labels, reason }, () => at);
  }
  return next;
}

/**
 * The data points of one `put()` grouped into events: points with the same name, value and time whose
 * dimensions do not contradict each other are one event seen per dimension set, so their labels merge.
 */
function events(
  data: MetricDatum[],
): Array<{ name: MetricName; value: number; timestamp: string; labels: Record<string, string> }> {
  const merged: Array<{
    name: MetricName;
    value: number;
    timestamp: string;
    labels: Record<string, string>;
  }> = [];
  for (const d of data) {
    const labels = Object.fromEntries(
      Object.entries(d.dimensions).map(([k, v]) => [
        PROMETHEUS_LABEL[k as keyof typeof PROMETHEUS_LABEL],
        String(v),
      ]),
    );
    const same = merged.find(
      (e) =>
        e.name === d.name &&
        e.value === d.value &&
        e.timestamp === d.timestamp &&
        Object.entries(labels).every(([k, v]) => e.labels[k] === undefined || e.labels[k] === v),
    );
    if (same) Object.assign(same.labels, labels);
    else merged.push({ name: d.name, value: d.value, timestamp: d.timestamp, labels });
  }
  return merged;
}

/** The text format: `# HELP`, `# TYPE` and the samples of each metric, then the state comment. */
export function render(state: State): string {
  const byName = new Map<string, Series[]>();
  for (const s of [...state].sort((a, b) => a.name.localeCompare(b.name)))
    byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
  const lines: string[] = [];
  for (const [name, series] of byName) {
    const { help, type } = describe(name);
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const s of series) lines.push(`${name}${labelText(s.labels)} ${formatValue(s.value)}`);
  }
  lines.push(`${STATE_MARK}${JSON.stringify(state)}`);
  return lines.join("\n") + "\n";
}

/** HELP and TYPE of a name this sink writes: a metric of the contract, or the time of one's last outcome. */
function describe(name: string): { help: string; type: "counter" | "gauge" } {
  for (const metric of Object.keys(METRIC_UNITS) as MetricName[]) {
    if (PROMETHEUS_TIMESTAMPS[metric] === name) {
      return { help: `When ${metric} was last reported, in seconds since the epoch.`, type: "gauge" };
    }
    const mapped = prometheusMetric(metric);
    if (mapped.name === name) return mapped;
  }
  throw new Error(`${name} is not a metric of contracts/metrics.ts`);
}

function labelText(labels: Record<string, string>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return "";
  const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  return `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`;
}

function formatValue(value: number): string {
  return Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN";
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** Temporary file beside the target, fsync, rename: readers see the old file or the new one, never a part. */
async function writeAtomically(path: string, text: string, options: PrometheusSinkOptions): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const handle = await open(temporary, "w", 0o644);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await options.beforeRename?.();
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
