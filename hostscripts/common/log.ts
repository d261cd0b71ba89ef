/** Fields attached to a log line: the backup id, host, step, figures. Never a secret. */
export type LogFields = Record<string, unknown>;

/** Where the host scripts write what they do: JSON lines for journald, readable lines on a TTY. */
export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger whose lines all carry `fields` too. */
  with(fields: LogFields): Logger;
}

type Level = "info" | "warn" | "error";

/**
 * Writes to stderr so that stdout stays free for the command's result (`--json`).
 * JSON lines unless `pretty`, which the CLI turns on when stderr is a terminal.
 */
export function createLogger(
  options: { pretty?: boolean; write?: (line: string) => void; base?: LogFields } = {},
): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const pretty = options.pretty ?? false;
  const emit = (base: LogFields, level: Level, message: string, fields?: LogFields): void => {
    const all = { ...base, ...fields };
    if (pretty) {
      const extra = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ");
      write(`${level === "info" ? "" : level.toUpperCase() + ": "}${message}${extra ? "  " + extra : ""}`);
    } else {
      write(JSON.stringify({ time: new Date().toISOString(), level, message, ...all }));
    }
  };
  const make = (base: LogFields): Logger => ({
    info: (m, f) => emit(base, "info", m, f),
    warn: (m, f) => emit(base, "warn", m, f),
    error: (m, f) => emit(base, "error", m, f),
    with: (f) => make({ ...base, ...f }),
  });
  return make(options.base ?? {});
}

/** A line as `memoryLogger` keeps it. */
export type MemoryLine = { level: Level; message: string } & LogFields;

/**
 * A logger that keeps its lines in memory, for tests that assert what was logged; `onLine` sees each one as it
 * is written (a test that acts at a given step).
 */
export function memoryLogger(onLine?: (line: MemoryLine) => void): Logger & { lines: MemoryLine[] } {
  const lines: MemoryLine[] = [];
  const logger = createLogger({
    write: (text) => {
      const line = JSON.parse(text) as MemoryLine;
      lines.push(line);
      onLine?.(line);
    },
  });
  return Object.assign(logger, { lines });
}
