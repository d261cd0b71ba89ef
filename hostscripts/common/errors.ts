/**
 * Exit codes of `mysql-backup`, documented in docs/operations.md. Each failure class has its own code
 * so a systemd unit, a wrapper or on-call can tell a lock timeout from a full disk without parsing logs.
 */
export const ExitCode = {
  Ok: 0,
  Internal: 1,
  Usage: 2,
  Config: 3,
  MysqlUnavailable: 4,
  LockTimeout: 5,
  SnapshotFailed: 6,
  ArchiveFailed: 7,
  UploadFailed: 8,
  SignalFailed: 9,
  VerificationFailed: 10,
  VerifierInfrastructure: 11,
  AlreadyRunning: 12,
  DiskSpace: 13,
  LockModeRefused: 14,
  /** `check` found something a run would fail on; its findings name each thing and the fix. */
  CheckFailed: 15,
  /**
   * The binlog archiver cannot go on: a binlog it must read is unreadable or corrupt, or the server is set up
   * so that its binlog does not hold the cluster's transactions (log_bin, log_slave_updates, gtid_mode).
   */
  BinlogFailed: 20,
  /**
   * A point-in-time restore was refused before anything was replayed: the archive does not continuously cover
   * the way from the snapshot to the point (the message names the missing GTIDs), or a segment is corrupt.
   */
  PitrRefused: 21,
} as const;

export type ExitCodeName = keyof typeof ExitCode;

/**
 * A failure the person on call can act on: `message` says what failed and where, `hint` what to do.
 * `reason` is the short machine-readable cause that metrics and reports carry.
 */
export class PipelineError extends Error {
  readonly exitCode: number;

  constructor(
    readonly kind: ExitCodeName,
    message: string,
    readonly hint: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PipelineError";
    this.exitCode = ExitCode[kind];
  }

  get reason(): string {
    return this.kind;
  }
}

/** The message of any thrown value, without losing a non-Error's text. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
