import type { ServerFlavor } from "../../contracts";
import type { LockPlan } from "../common/dialect";

/**
 * The privileges a backup needs, derived from the statements it runs (common/dialect.ts, backup/freeze.ts),
 * per flavor — not from a list kept beside the code:
 *
 * | what the backup runs                                   | MariaDB 10.6+       | MySQL 8.0 / 8.4    |
 * |--------------------------------------------------------|---------------------|--------------------|
 * | lockMode global: FLUSH TABLES WITH READ LOCK           | RELOAD              | RELOAD             |
 * | lockMode commit: BACKUP STAGE START / BLOCK_COMMIT     | RELOAD              |                    |
 * | lockMode commit: LOCK INSTANCE FOR BACKUP              |                     | BACKUP_ADMIN       |
 * | performance_schema.log_status (MySQL's position)       |                     | BACKUP_ADMIN       |
 * | SHOW MASTER STATUS / SHOW BINARY LOG STATUS            | BINLOG MONITOR      | REPLICATION CLIENT |
 * | SHOW SLAVE STATUS / SHOW REPLICA STATUS                | SLAVE MONITOR       | REPLICATION CLIENT |
 * | SHOW BINARY LOGS (the binlog archiver)                 | BINLOG MONITOR      | REPLICATION CLIENT |
 * | information_schema.TABLES (the table inventory)        | SELECT on *.*       | SELECT on *.*      |
 * | KILL CONNECTION of its own lock session (the watchdog) | none (own session)  | none (own session) |
 *
 * The read-only statements are proven by running them (`check` reads the position exactly as the backup
 * does); the lock cannot be taken to prove it, so its privilege is read from SHOW GRANTS. The inventory
 * needs a global SELECT because information_schema shows only the tables a user holds a privilege on: with
 * less, the manifest would silently miss tables and the verifier would not check them.
 */

/** One privilege the backup needs, and what for. */
export interface PrivilegeNeed {
  privilege: string;
  /** The statement or step that needs it, for the message. */
  for: string;
  /** `statement`: proven by running the statement; `grant`: read from SHOW GRANTS. */
  provenBy: "statement" | "grant";
  /**
   * A need of a path this server does not take today but will when its tables change (MySQL: FTWRL once a
   * non-InnoDB table exists); missing, it is a warning, not a failure.
   */
  conditional?: string;
}

/** The statements of a position capture and the privilege each needs, by flavor. */
const STATEMENT_PRIVILEGES: Record<ServerFlavor, Array<[RegExp, string]>> = {
  mariadb: [
    [/^SHOW MASTER STATUS/i, "BINLOG MONITOR"],
    [/^SHOW (BINARY|MASTER) LOGS/i, "BINLOG MONITOR"],
    [/^SHOW (SLAVE|REPLICA) STATUS/i, "SLAVE MONITOR"],
    [/^FLUSH TABLES WITH READ LOCK/i, "RELOAD"],
    [/^BACKUP STAGE/i, "RELOAD"],
  ],
  mysql: [
    [/^SHOW (MASTER|BINARY LOG) STATUS/i, "REPLICATION CLIENT"],
    [/^SHOW (BINARY|MASTER) LOGS/i, "REPLICATION CLIENT"],
    [/^SHOW (SLAVE|REPLICA) STATUS/i, "REPLICATION CLIENT"],
    [/performance_schema\.log_status/i, "BACKUP_ADMIN"],
    [/^LOCK INSTANCE FOR BACKUP/i, "BACKUP_ADMIN"],
    [/^FLUSH TABLES WITH READ LOCK/i, "RELOAD"],
  ],
};

/** The privilege a statement of the backup needs on this flavor, or null when it needs none. */
export function privilegeForStatement(flavor: ServerFlavor, statement: string): string | null {
  const sql = statement.trim();
  return STATEMENT_PRIVILEGES[flavor].find(([pattern]) => pattern.test(sql))?.[1] ?? null;
}

/** A lock plan as far as privileges go: the statements that take the lock. */
export type PlanStatements = Pick<LockPlan, "mode" | "lockStatements">;

/**
 * Every privilege the backup needs with the lock plan it will use, and how `check` proves each: the lock
 * statements' privilege from SHOW GRANTS (the lock cannot be taken to prove it) unless the position read
 * runs a statement that needs the same one; the position's by running it. With `fallback` (lockMode
 * "auto", today lock-free), the lock privilege of the mode auto falls back to once a table that is not
 * crash-safe holds data: missing, it is a warning, not a failure.
 */
export function requiredPrivileges(
  flavor: ServerFlavor,
  plan: PlanStatements,
  positionStatements: string[],
  fallback: PlanStatements | null = null,
): PrivilegeNeed[] {
  const needs: PrivilegeNeed[] = [];
  const add = (need: PrivilegeNeed) => {
    if (!needs.some((n) => n.privilege === need.privilege)) needs.push(need);
  };
  const provenByRunning = new Set(positionStatements.map((s) => privilegeForStatement(flavor, s)));
  for (const statement of plan.lockStatements) {
    const privilege = privilegeForStatement(flavor, statement);
    if (privilege === null) continue;
    add({ privilege, for: statement, provenBy: provenByRunning.has(privilege) ? "statement" : "grant" });
  }
  for (const statement of positionStatements) {
    const privilege = privilegeForStatement(flavor, statement);
    if (privilege !== null) add({ privilege, for: statement.split("\n")[0].trim(), provenBy: "statement" });
  }
  for (const statement of fallback?.lockStatements ?? []) {
    const privilege = privilegeForStatement(flavor, statement);
    if (privilege === null) continue;
    add({
      privilege,
      for: statement,
      provenBy: "grant",
      conditional: `with lockMode "auto" the backup takes mode "${fallback?.mode}" (${statement}) once a table that is not crash-safe holds data`,
    });
  }
  add({ privilege: "SELECT", for: "the table inventory: information_schema.TABLES", provenBy: "grant" });
  return needs;
}

/** The privileges granted on `*.*` in SHOW GRANTS lines (also those of an enabled role), upper case. */
export function globalPrivileges(grants: string[]): Set<string> {
  const found = new Set<string>();
  for (const line of grants) {
    const match = /^GRANT\s+(.+?)\s+ON\s+\*\.\*\s+TO\s/i.exec(line.trim());
    if (match === null) continue;
    for (const privilege of match[1].split(","))
      found.add(privilege.trim().replace(/\s+/g, " ").toUpperCase());
  }
  return found;
}

/** Synonyms the servers print for the privileges above (MariaDB renamed several in 10.5). */
const SYNONYMS: Record<string, string[]> = {
  "BINLOG MONITOR": ["REPLICATION CLIENT"],
  "SLAVE MONITOR": ["REPLICA MONITOR"],
};

/** True when `granted` covers `privilege` (ALL PRIVILEGES covers every static one; SUPER is not enough). */
export function holds(granted: Set<string>, privilege: string): boolean {
  if (granted.has(privilege) || (SYNONYMS[privilege] ?? []).some((s) => granted.has(s))) return true;
  // Dynamic privileges of MySQL (BACKUP_ADMIN) are not part of ALL PRIVILEGES on every version: proven by running.
  return (granted.has("ALL PRIVILEGES") || granted.has("ALL")) && !privilege.includes("_");
}

/** `GRANT <privileges> ON *.* TO <user>`, for the fix. */
export function grantStatement(privileges: string[], user: string): string {
  return `GRANT ${privileges.join(", ")} ON *.* TO ${user}`;
}
