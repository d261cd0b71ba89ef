import type { SnapshotConfig } from "../../contracts";
import { PipelineError } from "../errors";
import { btrfsDriver } from "./btrfs";
import type { RunCommand, SnapshotDriver } from "./driver";

export * from "./driver";
export { btrfsDriver } from "./btrfs";

/** The driver the config names. LVM and ZFS arrive with issue 5 and are refused clearly until then. */
export function driverFor(config: SnapshotConfig, run: RunCommand): SnapshotDriver {
  switch (config.driver) {
    case "btrfs":
      return btrfsDriver(config, run);
    case "lvm":
    case "zfs":
      throw new PipelineError(
        "NotImplemented",
        `the ${config.driver} snapshot driver is not available in this version`,
        'use snapshot.driver "btrfs", or upgrade mysql-backup',
      );
  }
}
