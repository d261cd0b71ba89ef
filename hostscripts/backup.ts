import { parseBackupConfig, type BackupConfig } from "../contracts";
import type { Subcommand } from "./command";
import { PipelineError } from "./errors";

export const backupCommand: Subcommand<BackupConfig> = {
  name: "backup",
  describe: "(being written)",
  parseConfig: parseBackupConfig,
  async run() {
    throw new PipelineError("NotImplemented", "backup is being written", "");
  },
};
