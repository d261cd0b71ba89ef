import type { LockMode } from "../../contracts";
import {
  dialectFor,
  readServerFacts,
  type Dialect,
  type LockPlan,
  type Query,
  type ServerFacts,
} from "../common/dialect";
import { readInventory, summarizeInventory } from "../common/inventory";
import {
  chooseLockMode,
  crashSafetyObstacles,
  memoryTablesWithRows,
  readCrashSafetyFacts,
  type LockChoice,
} from "../common/lockmode";
import { PipelineError, messageOf } from "../common/errors";
import { readOptionFile } from "../common/mysql";
import type { Checklist } from "./findings";
import {
  globalPrivileges,
  grantStatement,
  holds,
  privilegeForStatement,
  requiredPrivileges,
} from "./privileges";

/**
 * The replica's server as the backup will use it: the option file, a session, the position read exactly as
 * under the lock, every privilege the lock, the position and the inventory need, the inventory, and the
 * watchdog's way out (a second session that can kill the first).
 */

/** A client session of `check`. */
export interface CheckSession {
  /** `CONNECTION_ID()`. */
  id: number;
  query: Query;
  close(): Promise<void>;
}

/** How `check` reaches the server. */
export interface MysqlProbeDeps {
  /** The option file named by `mysql.optionFile`. */
  optionFile: string;
  /** The config's `lockMode`. Defaults to "auto", as the backup's. */
  lockMode?: "auto" | LockMode;
  /** Opens a session with the option file's credentials (the backup's own way). */
  openSession(): Promise<CheckSession>;
}

/** What later checks (the snapshot volume) need from the server. */
export interface ServerView {
  facts: ServerFacts;
  dialect: Dialect;
}

/** Runs the MySQL checks; returns the server's facts, or undefined when no session could be opened. */
export async function checkMysql(list: Checklist, deps: MysqlProbeDeps): Promise<ServerView | undefined> {
  const readable = await list.attempt("mysql.option-file", () => checkOptionFile(list, deps.optionFile));
  const session = readable ? await list.attempt("mysql.connect", deps.openSession) : undefined;
  if (session === undefined) {
    if (!readable) list.skip("mysql.connect", "the option file cannot be used");
    for (const check of [
      "mysql.lock-mode",
      "mysql.position",
      "mysql.privileges",
      "mysql.inventory",
      "mysql.watchdog",
    ]) {
      list.skip(check, "no session on the server");
    }
    return undefined;
  }
  try {
    const [who] = await session.query("SELECT CURRENT_USER() AS user");
    const user = quoteUser(String(who?.user ?? "?"));
    const facts = await readServerFacts(session.query);
    const dialect = dialectFor(facts.versionString);
    list.pass(
      "mysql.connect",
      `connected as ${user} to ${facts.versionString} (server_id ${facts.serverId})`,
    );
    const requested = deps.lockMode ?? "auto";
    const choice = await list.attempt("mysql.lock-mode", () =>
      checkLockMode(list, session, dialect, requested),
    );
    // A refused mode is still the one the config asks for: its privileges are checked all the same.
    const plan = dialect.lockPlan(choice?.mode ?? (requested === "auto" ? "global" : requested));
    const fallback =
      requested === "auto" && plan.mode === "none"
        ? dialect.lockPlan(dialect.flavor === "mariadb" ? "commit" : "global")
        : null;
    const position = await checkPosition(list, session, plan);
    await checkPrivileges(list, session, dialect, { plan, fallback }, position, user);
    await list.attempt("mysql.inventory", () => checkInventory(list, session));
    await list.attempt("mysql.watchdog", () => checkWatchdog(list, session, deps));
    return { facts, dialect };
  } finally {
    await session.close();
  }
}

/** The option file as the backup reads it (mode 0600, a user); its failure is the backup's own message. */
async function checkOptionFile(list: Checklist, path: string): Promise<true> {
  const options = await readOptionFile(path);
  const via = options.socket ? `socket ${options.socket}` : `${options.host}:${options.port ?? 3306}`;
  list.pass("mysql.option-file", `${path}: user ${options.user} via ${via}`);
  return true;
}

/**
 * The lock mode the backup will take, chosen exactly as the backup chooses it (common/lockmode.ts): a
 * configured mode the server cannot prove is the backup's own LockModeRefused, with each obstacle named.
 */
async function checkLockMode(
  list: Checklist,
  session: CheckSession,
  dialect: Dialect,
  requested: "auto" | LockMode,
): Promise<LockChoice> {
  let last = "";
  const tracked: Query = (sql) => {
    last = sql.split("\n")[0].trim();
    return session.query(sql);
  };
  const safety = await readCrashSafetyFacts(tracked, dialect.flavor).catch((error: unknown) => {
    if (!isAccessDenied(error)) throw error;
    // The backup decides its mode with the same statements: it would stop here too.
    throw new PipelineError(
      "MysqlUnavailable",
      `choosing the lock mode needs \`${last}\`, which the server refused (${messageOf(error)})`,
      "grant the privileges named under mysql.privileges",
    );
  });
  const choice = chooseLockMode(requested, dialect.flavor, crashSafetyObstacles(safety));
  const plan = dialect.lockPlan(choice.mode);
  const memory = memoryTablesWithRows(safety);
  const detail = `lockMode ${requested}: ${choice.mode} (${plan.method}); ${choice.reason}`;
  if (memory.length > 0) {
    list.warn(
      "mysql.lock-mode",
      `${detail}; MEMORY tables keep their rows only in memory, no snapshot holds them: ${memory.join(", ")}`,
      "move their data to InnoDB if it must survive a restore",
    );
  } else {
    list.pass("mysql.lock-mode", detail);
  }
  return choice;
}

/** What reading the position showed: the statements it ran, and those refused for want of a privilege. */
interface PositionRead {
  statements: string[];
  denied: Array<{ statement: string; message: string }>;
}

/**
 * Reads the position as the backup does under the lock (the same function), and says where the server
 * stands. A statement refused for want of a privilege answers with no rows here, so the read goes on and
 * every missing privilege is named at once, not one per run of `check`.
 */
async function checkPosition(list: Checklist, session: CheckSession, plan: LockPlan): Promise<PositionRead> {
  const read: PositionRead = { statements: [], denied: [] };
  const tracked: Query = async (sql) => {
    read.statements.push(sql);
    try {
      return await session.query(sql);
    } catch (error) {
      if (!isAccessDenied(error)) throw error;
      read.denied.push({ statement: sql.split("\n")[0].trim(), message: messageOf(error) });
      return [];
    }
  };
  try {
    const position = await plan.capturePosition(tracked);
    if (read.denied.length > 0) {
      list.fail(
        "mysql.position",
        `the server refused ${read.denied.map((d) => `\`${d.statement}\` (${d.message})`).join("; ")}`,
        "grant the privileges named under mysql.privileges",
      );
      return read;
    }
    const gtid = position.gtidSlavePos ?? position.gtidExecuted ?? position.gtidBinlogPos ?? "(none)";
    const binlog = position.binlog ? `${position.binlog.file}:${position.binlog.pos}` : "off";
    if (position.source === null) {
      list.warn(
        "mysql.position",
        `GTID ${gtid}, binlog ${binlog}; this server is not a replica: the lock would stop the writes of a primary`,
        "back up a replica (SHOW SLAVE STATUS / SHOW REPLICA STATUS shows its source)",
      );
    } else {
      list.pass(
        "mysql.position",
        `GTID ${gtid}, binlog ${binlog}, replica of ${position.source.host}:${position.source.port}`,
      );
    }
  } catch (error) {
    const statement = read.statements.at(-1) ?? "?";
    list.fail(
      "mysql.position",
      `reading the position failed on \`${statement.split("\n")[0].trim()}\`: ${messageOf(error)}`,
      "see the server's message",
    );
  }
  return read;
}

/** Every privilege of `requiredPrivileges`, proven by the statements run or read from SHOW GRANTS. */
async function checkPrivileges(
  list: Checklist,
  session: CheckSession,
  dialect: Dialect,
  lock: { plan: LockPlan; fallback: LockPlan | null },
  position: PositionRead,
  user: string,
): Promise<void> {
  const grants = (await session.query("SHOW GRANTS")).map((row) => String(Object.values(row)[0] ?? ""));
  const granted = globalPrivileges(grants);
  const denied = new Set(position.denied.map((d) => privilegeForStatement(dialect.flavor, d.statement)));
  const needs = requiredPrivileges(dialect.flavor, lock.plan, position.statements, lock.fallback);
  const missing = needs.filter((n) =>
    n.provenBy === "statement" ? denied.has(n.privilege) : !holds(granted, n.privilege),
  );
  const hard = missing.filter((n) => n.conditional === undefined);
  const soft = missing.filter((n) => n.conditional !== undefined);
  const names = (list: typeof needs) => list.map((n) => `${n.privilege} (${n.for})`).join(", ");
  const fix = grantStatement(
    missing.map((n) => n.privilege),
    user,
  );
  if (hard.length > 0) {
    list.fail(
      "mysql.privileges",
      `${user} lacks ${names(hard)} on ${dialect.flavor} ${dialect.version}`,
      fix,
    );
  } else if (soft.length > 0) {
    list.warn(
      "mysql.privileges",
      `${user} has what this backup needs (${names(needs.filter((n) => !missing.includes(n)))}) but not ${names(soft)}: ${soft[0].conditional}`,
      fix,
    );
  } else {
    list.pass("mysql.privileges", `${user} has ${names(needs)}`);
  }
}

async function checkInventory(list: Checklist, session: CheckSession): Promise<void> {
  list.pass("mysql.inventory", summarizeInventory(await readInventory(session.query)));
}

/** The watchdog's release: a second session of the same user kills the first, as on a lock timeout. */
async function checkWatchdog(list: Checklist, session: CheckSession, deps: MysqlProbeDeps): Promise<void> {
  const victim = await deps.openSession();
  try {
    await session.query(`KILL CONNECTION ${Number(victim.id)}`);
  } finally {
    await victim.close().catch(() => undefined);
  }
  list.pass(
    "mysql.watchdog",
    "a second session opens and the first can kill it (the lock timeout's release)",
  );
}

/** MySQL and MariaDB refuse a statement for want of a privilege with these errors. */
export function isAccessDenied(error: unknown): boolean {
  const e = error as { code?: string; errno?: number };
  return (
    e.code === "ER_SPECIFIC_ACCESS_DENIED_ERROR" ||
    e.code === "ER_ACCESS_DENIED_ERROR" ||
    e.code === "ER_TABLEACCESS_DENIED_ERROR" ||
    e.errno === 1227 ||
    e.errno === 1142
  );
}

/** `backup@localhost` → `'backup'@'localhost'`. */
export function quoteUser(user: string): string {
  const at = user.lastIndexOf("@");
  return at < 0 ? `'${user}'` : `'${user.slice(0, at)}'@'${user.slice(at + 1)}'`;
}
