import type { SnapshotConfig } from "../../../contracts";
import { btrfsDriver } from "./btrfs";
import type { RunCommand, SnapshotDriver } from "./driver";
import { lvmDriver } from "./lvm";
import { zfsDriver } from "./zfs";

export * from "./driver";
export { btrfsDriver } from "./btrfs";
export { lvmDriver } from "./lvm";
export { zfsDriver } from "./zfs";

/** The driver the config names. */
export function driverFor(config: SnapshotConfig, run: RunCommand): SnapshotDriver {
  switch (config.driver) {
    case "btrfs":
      return btrfsDriver(config, run);
    case "lvm":
      return lvmDriver(config, run);
    case "zfs":
      return zfsDriver(config, run);
  }
}
