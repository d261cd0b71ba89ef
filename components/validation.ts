/**
 * Argument checks shared by the components and the stack config reader. Each error names the field
 * (a component argument path or a config key) and says what it must be, so `pulumi preview` tells the
 * operator exactly which line of Pulumi.<stack>.yaml to fix.
 */

/** Thrown for an invalid argument or config value; `key` is the dotted path of the offending field. */
export class ConfigError extends Error {
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(`${key} ${problem}`);
    this.name = "ConfigError";
  }
}

/** The bounds of an integer setting, as its JSON Schema states them. */
export interface IntegerBounds {
  readonly minimum: number;
  readonly maximum: number;
}

/**
 * An integer within the bounds of its schema (`{ minimum, maximum }`), so a component checks its
 * arguments against the same numbers the stack config is validated with.
 */
export function requireInteger(key: string, value: unknown, { minimum, maximum }: IntegerBounds): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < minimum || value > maximum) {
    throw new ConfigError(
      key,
      `must be an integer from ${minimum} to ${maximum}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** One of the allowed values. */
export function requireOneOf<T extends string>(key: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new ConfigError(
      key,
      `must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}, got ${JSON.stringify(value)}`,
    );
  }
  return value as T;
}

/** A string matching `pattern` (described in `what` for the message). */
export function requireMatch(key: string, value: unknown, pattern: RegExp, what: string): string {
  if (typeof value !== "string" || !pattern.test(value)) {
    throw new ConfigError(key, `must be ${what}, got ${JSON.stringify(value)}`);
  }
  return value;
}
