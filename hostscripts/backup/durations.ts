/** A duration as the result, the manifest and the log report it: three decimals, in whatever unit it is. */
export function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** Seconds since `started`, a `performance.now()` reading. */
export function secondsSince(started: number): number {
  return (performance.now() - started) / 1000;
}
