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
/** The binlog archiver on a replica (always on). */
export const BINLOG_SERVICE = "mysql-backup-binlog.service";
/** The archiver's state and spool when its config names none (`binlog.stateDir`). */
export const BINLOG_STATE_DIR = "/var/lib/mysql-backup/binlog";
/**
 * How long a stop waits for the archiver: it cuts what it read and uploads it (one segment, retried for
 * about a minute) before it exits. Longer than the retries, so a stop during an S3 hiccup still ends cleanly.
 */
export const BINLOG_STOP_TIMEOUT_SECONDS = 90;

/**
 * The archiver's Node options. V8's default young generation (16 MiB semi-spaces) lets a long-running
 * process that parses every read grow; 1 MiB semi-spaces keep it lower (131 → 104 MiB in one side-by-side lab
 * run at 200 tx/s, for ~0.3 % of a core more). Its live heap is ~20 MiB whatever it reads (an open
 * transaction is counted, not kept; a read is 256 KiB; segments go up from the spool file), but catching up
 * on a backlog let V8 grow the old generation to ~50 MiB and keep it: 64 MiB bounds that (a standalone
 * harness, the shipped bundle, a 172 MiB backlog then 200 tx/s: peak 135 → 105 MiB, steady 200 tx/s 88 MiB,
 * the lag unchanged). Event bytes are Buffers, outside that heap. The lab and the benchmark run the archiver
 * with the same options.
 */
export const BINLOG_NODE_OPTIONS = "--max-semi-space-size=1 --max-old-space-size=64";
/**
 * The verifier's Node options: 1 MiB semi-spaces, as the archiver. Its peak is the chain proof's download and
 * extract of A beside B's verification; with V8's default young generation the process measured 280–340 MiB
 * there (bench --chain), with these 228–239 MiB, inside the 256 MiB target. The benchmark runs it the same way.
 */
export const VERIFIER_NODE_OPTIONS = "--max-semi-space-size=1";
/** The verifier daemon. */
export const VERIFIER_SERVICE = "mysql-backup-verifier.service";
/** Where the verifier daemon's output goes (the CloudWatch agent ships it); systemd creates the directory. */
export const VERIFIER_LOG_FILE = "/var/log/mysql-backup/verifier.log";
/** Where the verifier restores: the only path its unit may write besides its log. */
export const VERIFIER_SCRATCH_DIR = "/var/lib/mysql-verify";

/**
 * The longest a scratch server takes to stop once asked (hostscripts/restore/scratch-server.ts: SIGTERM,
 * then SIGKILL after this grace). The verifier's stop timeout leaves room for it, for releasing the
 * message and for removing the scratch directory.
 */
export const SCRATCH_SERVER_STOP_GRACE_SECONDS = 60;
/** How long systemd waits for the verifier to stop before it kills what is left. */
export const VERIFIER_STOP_TIMEOUT_SECONDS = SCRATCH_SERVER_STOP_GRACE_SECONDS + 30;

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
  /**
   * The paths the run writes: `localDir` and the snapshot directory (btrfs `snapshotDir`, LVM `mountDir`).
   * Given, the whole file system is read-only to the run except these (ProtectSystem=strict); absent, only
   * /usr, /boot and /etc are (ProtectSystem=full). Defaults to none.
   */
  writablePaths?: string[];
}

/** Options of the backup timer. */
export interface BackupTimerOptions {
  /** A systemd OnCalendar expression (`systemd-analyze calendar` must accept it), e.g. `*-*-* 02:00:00 UTC`. */
  schedule: string;
  /** Random delay so replicas of one cluster do not all start at the same second. Defaults to "0". */
  randomizedDelaySec?: string;
}

/** Options of the binlog archiver's service. */
export interface BinlogServiceOptions {
  /** Shown in `systemctl status` and the journal. */
  cluster: string;
  host: string;
  /** Defaults to INSTALLED_BINARY. */
  binary?: string;
  /** The replica's config, whose `binlog` section the archiver reads. Defaults to BACKUP_CONFIG_PATH. */
  configPath?: string;
  /** The archiver's state and spool, the one directory it writes. Defaults to BINLOG_STATE_DIR. */
  stateDir?: string;
}

/**
 * The sandbox the long-running services share (the binlog archiver and the verifier): no devices, no home, no
 * kernel or clock changes, no realtime or setuid. The backup unit needs devices (snapshots) and keeps its own.
 */
const SANDBOX: Array<[string, string]> = [
  ["PrivateTmp", "yes"],
  ["PrivateDevices", "yes"],
  ["ProtectHome", "yes"],
  ["ProtectKernelTunables", "yes"],
  ["ProtectKernelModules", "yes"],
  ["ProtectKernelLogs", "yes"],
  ["ProtectControlGroups", "yes"],
  ["ProtectClock", "yes"],
  ["ProtectHostname", "yes"],
  ["RestrictRealtime", "yes"],
  ["RestrictSUIDSGID", "yes"],
  ["LockPersonality", "yes"],
];

/** Options of the verifier daemon. */
export interface VerifierServiceOptions {
  /** Defaults to INSTALLED_BINARY. */
  binary?: string;
  /** Defaults to VERIFY_CONFIG_PATH. */
  configPath?: string;
  /** Where restores happen (its `scratchDir`), the one directory it writes. Defaults to VERIFIER_SCRATCH_DIR. */
  scratchDir?: string;
}

function unit(sections: Record<string, Array<[string, string]>>): string {
  return (
    Object.entries(sections)
      .map(([name, entries]) => [`[${name}]`, ...entries.map(([k, v]) => `${k}=${v}`)].join("\n"))
      .join("\n\n") + "\n"
  );
}

/**
 * Capabilities a backup keeps: mounting and snapshot ioctls (SYS_ADMIN), reading the mysql-owned datadir
 * (DAC_*), LVM's mlock while it suspends the origin (IPC_LOCK) and its device nodes (MKNOD). Everything
 * else root could do is dropped.
 */
const BACKUP_CAPABILITIES = [
  "CAP_SYS_ADMIN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_IPC_LOCK",
  "CAP_MKNOD",
];

/** LVM's lock and state directories, writable when present ("-": ignored on hosts without LVM). */
const LVM_RUNTIME_PATHS = ["-/run/lvm", "-/run/lock/lvm"];

/**
 * One backup run (oneshot). Runs as root because snapshots (btrfs, LVM, ZFS) need it, but hardened to what
 * a snapshot needs: the capabilities above, no new privileges, a read-only system, no home directories, a
 * private /tmp, no kernel tunables or modules. Idle I/O class and a high nice value so archiving does not
 * slow the replica down while it keeps serving. Devices stay visible: LVM needs /dev/mapper.
 */
export function backupServiceUnit(o: BackupServiceOptions): string {
  const writable = o.writablePaths ?? [];
  for (const path of writable) {
    if (!/^\/[^\s]*$/.test(path))
      throw new Error(`writable path must be absolute without spaces, got ${JSON.stringify(path)}`);
  }
  const filesystem: Array<[string, string]> =
    writable.length > 0
      ? [
          ["ProtectSystem", "strict"],
          ["ReadWritePaths", [...writable, ...LVM_RUNTIME_PATHS].join(" ")],
        ]
      : [["ProtectSystem", "full"]];
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
      // SIGTERM first; a run stopped mid-way is repaired by the next one (docs/operations.md).
      ["KillMode", "mixed"],
      // The replica's applier comes first. Between this unit and the database's own service (cgroup v2)
      // the weights decide (default 100 each): under contention the backup gets about a sixth of the CPU and
      // a tenth of the weighted I/O, and all of it when the host is idle. Within the process, the backup
      // lowers its own threads to nice 10 and the idle I/O class once the lock is released
      // (hostscripts/backup/priority.ts); set here, Nice and IOSchedulingClass would also slow the lock window.
      ["CPUWeight", "20"],
      ["IOWeight", "10"],
      ["NoNewPrivileges", "yes"],
      ["CapabilityBoundingSet", BACKUP_CAPABILITIES.join(" ")],
      ...filesystem,
      ["PrivateTmp", "yes"],
      ["ProtectHome", "yes"],
      ["ProtectKernelModules", "yes"],
      ["ProtectKernelLogs", "yes"],
      ["ProtectControlGroups", "yes"],
      ["ProtectClock", "yes"],
      ["ProtectHostname", "yes"],
      ["RestrictRealtime", "yes"],
      ["RestrictSUIDSGID", "yes"],
      ["LockPersonality", "yes"],
      ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
      ["SystemCallArchitectures", "native"],
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
      // The same offset every day on a host, different across hosts: runs stay evenly spread and predictable.
      ["FixedRandomDelay", "true"],
      ["AccuracySec", "1min"],
      ["Unit", BACKUP_SERVICE],
    ],
    Install: [["WantedBy", "timers.target"]],
  });
}

/**
 * The binlog archiver (`mysql-backup binlog`): always on, restarted whatever ended it (a crash, an OOM kill,
 * a failed start while the server is down), since every second it does not run is a second of transactions
 * not off site. Runs as root with one capability, reading the mysql-owned binlog files (DAC_READ_SEARCH), and
 * writes only its state directory: no new privileges, a read-only system, no home directories, private /tmp
 * and devices. A stop sends SIGTERM to it alone (it cuts and uploads what it read) and waits for that. It
 * yields to the database under contention (lower weights), but not as far as the backup does: its uploads
 * are what keeps the RPO.
 */
export function binlogServiceUnit(o: BinlogServiceOptions): string {
  const stateDir = o.stateDir ?? BINLOG_STATE_DIR;
  if (!/^\/[^\s]*$/.test(stateDir))
    throw new Error(`stateDir must be absolute without spaces, got ${JSON.stringify(stateDir)}`);
  return unit({
    Unit: [
      ["Description", `MySQL binlog archiver of ${o.host} (cluster ${o.cluster}): point-in-time recovery`],
      ["Wants", "network-online.target"],
      ["After", "network-online.target mariadb.service mysql.service"],
      // A server that stays down makes it fail over and over: it must keep trying, never give up.
      ["StartLimitIntervalSec", "0"],
    ],
    Service: [
      ["Type", "simple"],
      ["ExecStart", `${o.binary ?? INSTALLED_BINARY} binlog --config ${o.configPath ?? BACKUP_CONFIG_PATH}`],
      ["Environment", `"NODE_OPTIONS=${BINLOG_NODE_OPTIONS}"`],
      ["Restart", "always"],
      ["RestartSec", "5s"],
      ["KillMode", "mixed"],
      ["TimeoutStopSec", `${BINLOG_STOP_TIMEOUT_SECONDS}s`],
      ["CPUWeight", "50"],
      ["IOWeight", "50"],
      // Its working set is a few MiB; this only stops a runaway from taking the database's memory.
      ["MemoryMax", "512M"],
      ["NoNewPrivileges", "yes"],
      ["CapabilityBoundingSet", "CAP_DAC_READ_SEARCH"],
      ["ProtectSystem", "strict"],
      // Below /var/lib systemd creates the state directory (0700) and makes it writable; elsewhere the
      // install creates it.
      ...((stateDir.startsWith("/var/lib/")
        ? [
            ["StateDirectory", stateDir.slice("/var/lib/".length)],
            ["StateDirectoryMode", "0700"],
          ]
        : [["ReadWritePaths", stateDir]]) as Array<[string, string]>),
      ...SANDBOX,
      ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"],
      ["SystemCallArchitectures", "native"],
      ["UMask", "0077"],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}

/**
 * Capabilities the verifier keeps: handing the scratch datadir to the `mysql` user and reading and removing
 * what that server wrote (CHOWN, DAC_*, FOWNER), starting the scratch server as `mysql` (SETUID, SETGID) and
 * stopping it (KILL: it runs under another user). Everything else root could do is dropped.
 */
const VERIFIER_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_SETUID",
  "CAP_SETGID",
  "CAP_KILL",
];

/**
 * The verifier daemon: long-polls the queue and restores each backup into a scratch server. Runs as root so
 * it can hand the scratch datadir to the `mysql` user, hardened like the backup unit: the capabilities above,
 * no new privileges, a read-only system but its scratch directory (ProtectSystem=strict) and its log, no
 * home directories, private /tmp and devices, no kernel tunables or modules. A stop sends SIGTERM to the
 * daemon alone (it stops the scratch server and releases its message) and waits longer than the scratch
 * server's own stop before killing what is left. Restarted when it fails; its output goes to
 * VERIFIER_LOG_FILE, which the CloudWatch agent ships (the instances are gone after a scale-in).
 */
export function verifierServiceUnit(o: VerifierServiceOptions = {}): string {
  const scratchDir = o.scratchDir ?? VERIFIER_SCRATCH_DIR;
  if (!/^\/[^\s]*$/.test(scratchDir))
    throw new Error(`scratchDir must be absolute without spaces, got ${JSON.stringify(scratchDir)}`);
  return unit({
    Unit: [
      ["Description", "MySQL backup verifier (restores every backup into a scratch server)"],
      ["Wants", "network-online.target"],
      ["After", "network-online.target"],
    ],
    Service: [
      ["Type", "simple"],
      ["ExecStart", `${o.binary ?? INSTALLED_BINARY} verify --config ${o.configPath ?? VERIFY_CONFIG_PATH}`],
      ["Environment", `"NODE_OPTIONS=${VERIFIER_NODE_OPTIONS}"`],
      ["Restart", "on-failure"],
      ["RestartSec", "30s"],
      ["KillMode", "mixed"],
      ["TimeoutStopSec", `${VERIFIER_STOP_TIMEOUT_SECONDS}s`],
      ["LogsDirectory", VERIFIER_LOG_FILE.split("/").slice(3, -1).join("/")],
      ["StandardOutput", `append:${VERIFIER_LOG_FILE}`],
      ["StandardError", "inherit"],
      // The scratch server opens a file per table and index: give it room without needing CAP_SYS_RESOURCE.
      ["LimitNOFILE", "65536"],
      ["NoNewPrivileges", "yes"],
      ["CapabilityBoundingSet", VERIFIER_CAPABILITIES.join(" ")],
      ["ProtectSystem", "strict"],
      ["ReadWritePaths", scratchDir],
      ...SANDBOX,
      ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
      ["SystemCallArchitectures", "native"],
      ["UMask", "0077"],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}
