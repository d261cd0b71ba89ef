/**
 * The systemd units that run the host scripts. Pure functions returning unit text: the ReplicaAgent
 * copies the backup service and timer to each replica, the VerifierFleet writes the verifier service
 * through cloud-init, and the tests check every rendering with `systemd-analyze verify`.
 */

/** Where the bundled CLI is installed on every host. */
export const INSTALLED_BINARY = "/usr/local/bin/mysql-backup";
/** Directory of the config files (root-owned, not world-readable). */
export const CONFIG_DIR = "/etc/mysql-backup";
/** The replica's config (`mysql-backup backup --config`). */
export const BACKUP_CONFIG_PATH = `${CONFIG_DIR}/backup.json`;
/** The verifier's config (`mysql-backup verify --config`). */
export const VERIFY_CONFIG_PATH = `${CONFIG_DIR}/verify.json`;
/** Where locally installed units live. */
export const UNIT_DIR = "/etc/systemd/system";

/** One backup run on a replica (oneshot). */
export const BACKUP_SERVICE = "mysql-backup.service";
/** The replica's backup schedule. */
export const BACKUP_TIMER = "mysql-backup.timer";
/** The verifier daemon. */
export const VERIFIER_SERVICE = "mysql-backup-verifier.service";

/** Options of the backup service on a replica. */
export interface BackupServiceOptions {
  /** Shown in `systemctl status` and the journal. */
  cluster: string;
  host: string;
  /** Defaults to INSTALLED_BINARY. */
  binary?: string;
  /** Defaults to BACKUP_CONFIG_PATH. */
  configPath?: string;
  /** Longest a run may take before systemd stops it (archive and upload included). Defaults to 6h. */
  timeoutStartSec?: string;
}

/** Options of the backup timer. */
export interface BackupTimerOptions {
  /** A systemd OnCalendar expression (`systemd-analyze calendar` must accept it), e.g. `*-*-* 02:00:00 UTC`. */
  schedule: string;
  /** Random delay so replicas of one cluster do not all start at the same second. Defaults to "0". */
  randomizedDelaySec?: string;
}

/** Options of the verifier daemon. */
export interface VerifierServiceOptions {
  /** Defaults to INSTALLED_BINARY. */
  binary?: string;
  /** Defaults to VERIFY_CONFIG_PATH. */
  configPath?: string;
}

function unit(sections: Record<string, Array<[string, string]>>): string {
  return (
    Object.entries(sections)
      .map(([name, entries]) => [`[${name}]`, ...entries.map(([k, v]) => `${k}=${v}`)].join("\n"))
      .join("\n\n") + "\n"
  );
}

/**
 * One backup run (oneshot). Runs as root because snapshots (btrfs, LVM, ZFS) need it; low CPU and
 * I/O priority so archiving does not slow the replica down while it keeps serving.
 */
export function backupServiceUnit(o: BackupServiceOptions): string {
  return unit({
    Unit: [
      ["Description", `MySQL snapshot backup of ${o.host} (cluster ${o.cluster})`],
      ["Wants", "network-online.target"],
      ["After", "network-online.target mariadb.service mysql.service"],
    ],
    Service: [
      ["Type", "oneshot"],
      ["ExecStart", `${o.binary ?? INSTALLED_BINARY} backup --config ${o.configPath ?? BACKUP_CONFIG_PATH}`],
      ["TimeoutStartSec", o.timeoutStartSec ?? "6h"],
      ["Nice", "10"],
      ["IOSchedulingClass", "best-effort"],
      ["IOSchedulingPriority", "7"],
      ["NoNewPrivileges", "yes"],
      ["PrivateTmp", "yes"],
      ["ProtectHome", "yes"],
      ["UMask", "0077"],
    ],
  });
}

/** The timer that starts the backup service; Persistent catches up on a run missed while the host was down. */
export function backupTimerUnit(o: BackupTimerOptions): string {
  if (/[\n\r]/.test(o.schedule))
    throw new Error(`schedule must be one OnCalendar expression, got ${JSON.stringify(o.schedule)}`);
  return unit({
    Unit: [["Description", "Schedule of the MySQL snapshot backup"]],
    Timer: [
      ["OnCalendar", o.schedule],
      ["Persistent", "true"],
      ["RandomizedDelaySec", o.randomizedDelaySec ?? "0"],
      ["AccuracySec", "1min"],
      ["Unit", BACKUP_SERVICE],
    ],
    Install: [["WantedBy", "timers.target"]],
  });
}

/**
 * The verifier daemon: long-polls the queue and restores each backup into a scratch server.
 * Runs as root so it can hand the scratch datadir to the `mysql` user; restarted when it fails.
 */
export function verifierServiceUnit(o: VerifierServiceOptions = {}): string {
  return unit({
    Unit: [
      ["Description", "MySQL backup verifier (restores every backup into a scratch server)"],
      ["Wants", "network-online.target"],
      ["After", "network-online.target"],
    ],
    Service: [
      ["Type", "simple"],
      ["ExecStart", `${o.binary ?? INSTALLED_BINARY} verify --config ${o.configPath ?? VERIFY_CONFIG_PATH}`],
      ["Restart", "on-failure"],
      ["RestartSec", "30s"],
      ["NoNewPrivileges", "yes"],
      ["PrivateTmp", "yes"],
      ["ProtectHome", "yes"],
      ["UMask", "0077"],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}
