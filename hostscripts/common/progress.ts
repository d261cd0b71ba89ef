import type { Logger } from "./log";

/**
 * Progress of the long steps (archive, upload): a bar redrawn in place on a terminal, and on journald (JSON
 * lines) a `progress` line now and then, so an operator following the journal sees the run is alive.
 */

/** One step's progress. */
export interface ProgressBar {
  /** `bytes` more are done. */
  advance(bytes: number): void;
  /** The step ended (done or failed): the terminal line is finished. */
  end(): void;
}

/** Makes a bar per step. */
export interface ProgressView {
  start(step: string, totalBytes: number): ProgressBar;
}

/** Where a terminal view draws, and its clock (injected by tests). */
export interface TtyOutput {
  write(text: string): unknown;
  columns?: number;
}

const MiB = 1024 * 1024;
const BAR_WIDTH = 30;
/** Redraws at most this often: a terminal cannot show more, and each write costs a syscall. */
const TTY_REDRAW_MS = 100;

/** A bar on a terminal: `archive  [#########.....]  61%  812.4/1330.0 MiB  143.2 MiB/s`. */
export function ttyProgress(out: TtyOutput, now: () => number = () => performance.now()): ProgressView {
  return {
    start(step, totalBytes) {
      const started = now();
      let done = 0;
      let drawn = -Infinity;
      const draw = () => {
        drawn = now();
        out.write(`\r\x1b[2K${progressLine(step, done, totalBytes, (drawn - started) / 1000)}`);
      };
      return {
        advance(bytes) {
          done += bytes;
          if (now() - drawn >= TTY_REDRAW_MS) draw();
        },
        end() {
          draw();
          out.write("\n");
        },
      };
    },
  };
}

/** A `progress` log line per step at most every `intervalMs` (journald). */
export function logProgress(
  log: Logger,
  intervalMs = 30_000,
  now: () => number = () => performance.now(),
): ProgressView {
  return {
    start(step, totalBytes) {
      const started = now();
      let done = 0;
      let logged = started;
      return {
        advance(bytes) {
          done += bytes;
          if (now() - logged < intervalMs) return;
          logged = now();
          const seconds = (logged - started) / 1000;
          log.info("progress", {
            step,
            doneBytes: done,
            totalBytes,
            percent: percentOf(done, totalBytes),
            mibPerSecond: Math.round((done / MiB / Math.max(seconds, 0.001)) * 10) / 10,
          });
        },
        end() {
          // The step's own summary line follows; a last progress line would only repeat it.
        },
      };
    },
  };
}

/** One terminal line of a bar. A total that turns out low (a live estimate) shows as 100 %, not more. */
export function progressLine(step: string, done: number, total: number, seconds: number): string {
  const percent = percentOf(done, total);
  const filled = Math.round((percent / 100) * BAR_WIDTH);
  const bar = "#".repeat(filled) + ".".repeat(BAR_WIDTH - filled);
  const rate = done / MiB / Math.max(seconds, 0.001);
  return (
    `${step.padEnd(8)} [${bar}] ${String(percent).padStart(3)}%  ` +
    `${(done / MiB).toFixed(1)}/${(Math.max(total, done) / MiB).toFixed(1)} MiB  ${rate.toFixed(1)} MiB/s`
  );
}

function percentOf(done: number, total: number): number {
  return total <= 0 ? 100 : Math.min(100, Math.floor((done / total) * 100));
}
