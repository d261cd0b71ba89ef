/** The key layout's reserved parts (contracts/keys): the binlog archive of a cluster, and the verdicts. */
import {
  binlogPrefix,
  hostPrefix,
  isVerdictKey,
  parseManifestKey,
  VERDICT_OBJECTS,
  VERIFICATION_OBJECT,
} from "../../contracts";

describe("binlog prefix", () => {
  it("is <prefix>/<cluster>/binlogs/, beside the hosts' prefixes", () => {
    expect(binlogPrefix("backups", "orders")).toBe("backups/orders/binlogs/");
    expect(binlogPrefix("/backups/", "orders")).toBe("backups/orders/binlogs/");
    expect(hostPrefix("backups", "orders", "orders-db3")).toBe("backups/orders/orders-db3/");
  });

  it("cannot be a host's prefix: a host named binlogs is refused, naming what to do", () => {
    expect(() => hostPrefix("backups", "orders", "binlogs")).toThrow(
      'host "binlogs" is reserved for the binary log archive: rename the host',
    );
    expect(() => parseManifestKey("backups/orders/binlogs/20261124T020000Z-3fa9c1/manifest.json")).toThrow(
      /reserved for the binary log archive/,
    );
  });

  it("checks the cluster name like every other key segment", () => {
    expect(() => binlogPrefix("backups", "Orders/EU")).toThrow(/cluster "Orders\/EU" must match/);
  });
});

describe("verdicts", () => {
  it("are a listed set that starts with verification.json", () => {
    expect(VERDICT_OBJECTS).toContain(VERIFICATION_OBJECT);
  });

  it("are recognised by the last segment of a key only", () => {
    expect(isVerdictKey("backups/orders/orders-db3/20261124T020000Z-3fa9c1/verification.json")).toBe(true);
    expect(isVerdictKey("backups/orders/orders-db3/20261124T020000Z-3fa9c1/archive.tar.zst")).toBe(false);
    expect(isVerdictKey("backups/orders/verification.json/archive.tar.zst")).toBe(false);
  });
});
