import type { VerifyConfig } from "./config";

/** How long a backup waits for its server lock before it gives up (`BackupConfig.lockTimeoutMs`). */
export const DEFAULT_LOCK_TIMEOUT_MS = 5000;

/** Every setting of `VerifyConfig` that has a default, with the type of its value. */
interface VerifyDefaults {
  sqs: Required<Pick<VerifyConfig["sqs"], "waitTimeSeconds" | "visibilityTimeoutSeconds">>;
  concurrency: NonNullable<VerifyConfig["concurrency"]>;
  mysqld: Required<
    Pick<NonNullable<VerifyConfig["mysqld"]>, "user" | "startTimeoutSeconds" | "bufferPoolMiB">
  >;
  checks: Required<NonNullable<VerifyConfig["checks"]>>;
  drift: Required<NonNullable<VerifyConfig["drift"]>>;
  download: Required<NonNullable<VerifyConfig["download"]>>;
  catchUp: Required<Pick<NonNullable<VerifyConfig["catchUp"]>, "timeoutSeconds">>;
  segments: Required<NonNullable<VerifyConfig["segments"]>>;
  /** `restoreAlongside` depends on the verifier's cores (`RESTORE_ALONGSIDE_MIN_CORES`). */
  chain: Required<Omit<NonNullable<VerifyConfig["chain"]>, "restoreAlongside">>;
  pitrDrill: Required<NonNullable<VerifyConfig["pitrDrill"]>>;
}

/**
 * The values `verify` and `restore` use for what their config leaves out, declared once; each setting's
 * doc comment in `VerifyConfig` names the same value ("Defaults to X.").
 */
export const VERIFY_DEFAULTS = {
  sqs: { waitTimeSeconds: 20, visibilityTimeoutSeconds: 3600 },
  concurrency: 1,
  mysqld: { user: "mysql", startTimeoutSeconds: 600, bufferPoolMiB: 512 },
  checks: { extended: false },
  drift: { maxShrinkShare: 0.5, minRows: 100 },
  download: { partSizeMiB: 8, concurrency: 4, workers: 0 },
  catchUp: { timeoutSeconds: 600 },
  segments: { maxDeferrals: 2, deferSeconds: 60, timeSkewSeconds: 60 },
  chain: { enabled: true, archiveWaitSeconds: 300, keepVerified: true, replayAlongside: true },
  pitrDrill: { enabled: true },
} as const satisfies VerifyDefaults;
