import { access } from "node:fs/promises";
import { createConnection, type Connection, type RowDataPacket } from "mysql2/promise";
import type { ServerFlavor } from "../../contracts";
import { PipelineError, messageOf } from "./errors";
import { readSecretIni } from "./ini";

/** How to reach the local server, as an option file's [client] group gives it. */
export interface ClientOptions {
  user: string;
  password?: string;
  socket?: string;
  host?: string;
  port?: number;
}

/** Environment variables that override the option file's user and password (e.g. from systemd credentials). */
export const MYSQL_USER_ENV = "MYSQL_BACKUP_USER";
export const MYSQL_PASSWORD_ENV = "MYSQL_BACKUP_PASSWORD";

/**
 * Reads the [client] group of a my.cnf-style option file, then [mysql-backup] on top of it, then the
 * MYSQL_BACKUP_USER / MYSQL_BACKUP_PASSWORD environment variables (for secret stores that inject the
 * environment). Credentials never come from a command line or the JSON config.
 */
export async function readOptionFile(
  path: string,
  env: Record<string, string | undefined> = process.env,
): Promise<ClientOptions> {
  const groups = await readSecretIni(path, "MySQL option file");
  const merged = { ...groups.client, ...groups["mysql-backup"] };
  if (env[MYSQL_USER_ENV]) merged.user = env[MYSQL_USER_ENV];
  if (env[MYSQL_PASSWORD_ENV] !== undefined) merged.password = env[MYSQL_PASSWORD_ENV];
  if (!merged.user) {
    throw new PipelineError("Config", `MySQL option file ${path} has no user`, "add user=... under [client]");
  }
  const options: ClientOptions = { user: merged.user };
  if (merged.password !== undefined) options.password = merged.password;
  if (merged.socket) options.socket = merged.socket;
  if (merged.host) options.host = merged.host;
  if (merged.port) options.port = Number(merged.port);
  if (!options.socket && !options.host) options.host = "127.0.0.1";
  return options;
}

/**
 * The option file a replica's config names (`mysql.optionFile`), read as `readOptionFile` does; a file that
 * cannot be read is a Config error pointing at the key.
 */
export async function readConfiguredOptionFile(path: string): Promise<ClientOptions> {
  await access(path).catch((e: unknown) => {
    throw new PipelineError(
      "Config",
      `cannot read the MySQL option file ${path}: ${messageOf(e)}`,
      "check mysql.optionFile in the config",
      { cause: e },
    );
  });
  return readOptionFile(path);
}

/** Opens a client session; a failure says which server and what to check. */
export async function connect(options: ClientOptions, what = "the local MySQL server"): Promise<Connection> {
  const where = options.socket ?? `${options.host}:${options.port ?? 3306}`;
  try {
    return await createConnection({
      user: options.user,
      password: options.password,
      socketPath: options.socket,
      host: options.socket ? undefined : options.host,
      port: options.socket ? undefined : options.port,
      connectTimeout: 10_000,
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      multipleStatements: false,
    });
  } catch (e) {
    throw new PipelineError(
      "MysqlUnavailable",
      `cannot connect to ${what} at ${where} as ${options.user}: ${messageOf(e)}`,
      "check that the server is running and that the option file's socket/host and credentials are right",
      { cause: e },
    );
  }
}

/** Runs a statement and returns its rows as plain objects. */
export async function query<T extends Record<string, unknown> = Record<string, unknown>>(
  conn: Connection,
  sql: string,
  values?: unknown[],
): Promise<T[]> {
  const [rows] = await conn.query<RowDataPacket[]>(sql, values);
  return rows as unknown as T[];
}

/** The server's flavor and numeric version from `@@version` (e.g. `10.11.6-MariaDB-0+deb12u1`, `8.0.36`). */
export function parseServerVersion(version: string): {
  flavor: ServerFlavor;
  version: string;
  major: number;
  minor: number;
} {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) throw new Error(`cannot read the server version "${version}"`);
  return {
    flavor: /mariadb/i.test(version) ? "mariadb" : "mysql",
    version: `${m[1]}.${m[2]}.${m[3]}`,
    major: Number(m[1]),
    minor: Number(m[2]),
  };
}
