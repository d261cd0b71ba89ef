import { readFile, stat } from "node:fs/promises";
import { PipelineError } from "./errors";

/** Groups of an ini file (my.cnf option files, AWS credentials files): group → key → value. */
export type IniGroups = Record<string, Record<string, string>>;

/** Parses the ini dialect MySQL and the AWS CLI share: `[group]`, `key=value`, `#`/`;` comments, quotes. */
export function parseIni(text: string): IniGroups {
  const groups: IniGroups = {};
  let current: Record<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const group = /^\[([^\]]+)\]$/.exec(line);
    if (group) {
      current = groups[group[1].trim()] ??= {};
      continue;
    }
    if (!current) continue;
    const eq = line.indexOf("=");
    const key = (eq < 0 ? line : line.slice(0, eq)).trim().replace(/_/g, "-");
    let value = eq < 0 ? "" : line.slice(eq + 1).trim();
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    current[key] = value;
  }
  return groups;
}

/**
 * Reads an ini file that holds a secret. Refuses a file that group or others can read, because the
 * secret would then be readable by every local account.
 */
export async function readSecretIni(path: string, what: string): Promise<IniGroups> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (e) {
    throw new PipelineError("Config", `${what} ${path} cannot be read`, `create it with mode 0600`, {
      cause: e,
    });
  }
  if ((mode & 0o077) !== 0) {
    throw new PipelineError(
      "Config",
      `${what} ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)})`,
      `run: chmod 600 ${path}`,
    );
  }
  try {
    return parseIni(await readFile(path, "utf8"));
  } catch (e) {
    throw new PipelineError(
      "Config",
      `${what} ${path} cannot be read: ${(e as Error).message}`,
      "point the config at a readable file",
      {
        cause: e,
      },
    );
  }
}
