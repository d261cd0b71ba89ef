import { createHash } from "node:crypto";
import {
  BACKUP_CONFIG_PATH,
  BACKUP_SERVICE,
  BACKUP_TIMER,
  BINLOG_SERVICE,
  CONFIG_DIR,
  INSTALLED_BINARY,
  UNIT_DIR,
} from "../contracts/units";

/**
 * The scripts that install the host scripts on a replica over SSH, as pure functions of their inputs: the
 * ReplicaAgent runs them, the tests run them for real below a scratch root.
 */

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/** The files installed on a replica, by their staged name. */
export interface StagedFiles {
  bundleSha256: string;
  config: string;
  service: string;
  timer: string;
  /** The binlog archiver's unit, or null when PITR is off. */
  binlogService: string | null;
}

/** Content hash of everything installed: any change re-stages and re-installs the whole set. */
export function installHash(f: StagedFiles): string {
  const parts = [f.bundleSha256, sha256(f.config), sha256(f.service), sha256(f.timer)];
  // Without PITR the hash stays what it was before the archiver existed: no re-install for nothing.
  if (f.binlogService !== null) parts.push(sha256(f.binlogService));
  return sha256(parts.join("\n"));
}

/** The private staging directory of one install (per content hash, owned by the SSH user). */
export function stageDir(hash: string): string {
  return `/var/tmp/mysql-backup-stage-${hash.slice(0, 16)}`;
}

/** Creates the staging directory and refuses one that someone else created first. */
export function stageScript(dir: string): string {
  return [
    "set -eu",
    `install -d -m 0700 ${dir}`,
    `[ -O ${dir} ] || { echo "${dir} exists and belongs to another user; remove it and retry" >&2; exit 1; }`,
  ].join("\n");
}

/**
 * Where an install records the hash it installed. A retried install whose staging directory is gone (the
 * install finished but Pulumi never heard) finds its own hash there; an uninstall removes only the install
 * it belongs to.
 */
export const INSTALL_MARKER = `${CONFIG_DIR}/installed`;

/** What an install script works on. */
export interface InstallScriptInput {
  /** The staging directory of this install. */
  dir: string;
  bundleSha256: string;
  /** The MySQL option file backup.json names, which must exist. */
  optionFile: string;
  /** The install hash this script installs. */
  hash: string;
  /** Install and (re)start the binlog archiver; false stops and removes one a previous install left. */
  binlog: boolean;
  /** A directory the absolute paths are taken below; only for tests. Defaults to "" (the host's root). */
  root?: string;
}

/**
 * Installs the staged files with root ownership and tight modes, (re)starts the timer (and the binlog
 * archiver, or removes it when PITR was turned off), records the hash
 * and only then removes the staging directory: every step can run again, so an install that failed at any
 * step (a unit systemd refused, a dropped connection) is retried by the next `pulumi up` from the same
 * staged files. Runs `set -eu`: the first failing step stops it.
 */
export function installScript(i: InstallScriptInput): string {
  const r = i.root ?? "";
  const marker = `${r}${INSTALL_MARKER}`;
  const copy = (mode: string, from: string, to: string) =>
    `  install -o root -g root -m ${mode} ${from} ${r}${to}`;
  return [
    "set -eu",
    `command -v node >/dev/null || { echo "node (20 or newer) is not installed on this host; install it, then re-run pulumi up" >&2; exit 1; }`,
    `[ -f ${r}${i.optionFile} ] || { echo "${i.optionFile} is missing: create it (mode 0600) with the backup user's [client] credentials" >&2; exit 1; }`,
    `if [ -d ${i.dir} ]; then`,
    `  echo "${i.bundleSha256}  ${i.dir}/mysql-backup.cjs" | sha256sum -c --quiet -`,
    copy("0755", `${i.dir}/mysql-backup.cjs`, INSTALLED_BINARY),
    `  install -d -o root -g root -m 0750 ${r}${CONFIG_DIR}`,
    copy("0640", `${i.dir}/backup.json`, BACKUP_CONFIG_PATH),
    copy("0644", `${i.dir}/${BACKUP_SERVICE}`, `${UNIT_DIR}/${BACKUP_SERVICE}`),
    copy("0644", `${i.dir}/${BACKUP_TIMER}`, `${UNIT_DIR}/${BACKUP_TIMER}`),
    ...(i.binlog ? [copy("0644", `${i.dir}/${BINLOG_SERVICE}`, `${UNIT_DIR}/${BINLOG_SERVICE}`)] : []),
    `elif [ "$(cat ${marker} 2>/dev/null)" != "${i.hash}" ]; then`,
    `  echo "${i.dir} is gone but install ${i.hash} never completed: run pulumi up --replace on this replica's -stage step" >&2; exit 1`,
    "fi",
    ...(i.binlog
      ? []
      : [
          `systemctl disable --now ${BINLOG_SERVICE} 2>/dev/null || true`,
          `rm -f ${r}${UNIT_DIR}/${BINLOG_SERVICE}`,
        ]),
    "systemctl daemon-reload",
    `systemctl enable ${BACKUP_TIMER}`,
    `systemctl restart ${BACKUP_TIMER}`,
    // The archiver restarts on the new bundle and config; a stop uploads what it read first.
    ...(i.binlog ? [`systemctl enable ${BINLOG_SERVICE}`, `systemctl restart ${BINLOG_SERVICE}`] : []),
    `echo ${i.hash} > ${marker}.new && mv ${marker}.new ${marker}`,
    `rm -rf ${i.dir}`,
  ].join("\n");
}

/**
 * Stops the schedule (and the binlog archiver, which uploads what it read first) and removes what install
 * `hash` added, while it is the current install; local archives and the archiver's state are left alone.
 */
export function uninstallScript(hash: string, root = ""): string {
  const marker = `${root}${INSTALL_MARKER}`;
  const files = [
    `${UNIT_DIR}/${BACKUP_SERVICE}`,
    `${UNIT_DIR}/${BACKUP_TIMER}`,
    `${UNIT_DIR}/${BINLOG_SERVICE}`,
    BACKUP_CONFIG_PATH,
    INSTALLED_BINARY,
  ];
  return [
    "set -eu",
    `[ "$(cat ${marker} 2>/dev/null)" = "${hash}" ] || { echo "install ${hash} is not the current one here; nothing to remove" >&2; exit 0; }`,
    `systemctl disable --now ${BACKUP_TIMER} || true`,
    `systemctl disable --now ${BINLOG_SERVICE} 2>/dev/null || true`,
    `rm -f ${files.map((f) => `${root}${f}`).join(" ")} ${marker}`,
    "systemctl daemon-reload",
  ].join("\n");
}
