/** GTID positions (MariaDB) and sets (MySQL): what a replay skips, what a chain covers, what a gap lacks. */
import {
  emptyState,
  parseGtid,
  parseState,
  positionOfList,
  sameState,
} from "../../hostscripts/common/gtid-state";

const U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2 = "88ebc247-06ef-11ef-97ee-0242ac130004";

describe("MariaDB positions", () => {
  it("parses, prints canonically (domains in order) and ignores whitespace", () => {
    expect(parseState("mariadb", " 1-2-30,\n0-1-55 ").toString()).toBe("0-1-55,1-2-30");
    expect(parseState("mariadb", "").isEmpty()).toBe(true);
    expect(parseState("mariadb", null).toString()).toBe("");
  });

  it("refuses a domain named twice, a MySQL GTID, and numbers beyond 2^53", () => {
    expect(() => parseState("mariadb", "0-1-5,0-2-6")).toThrow(/names domain 0 twice/);
    expect(() => parseState("mariadb", `${U1}:5`)).toThrow(/mixes a MySQL GTID/);
    expect(() => parseGtid("0-1-99999999999999999999")).toThrow(/beyond what this tool handles/);
    expect(() => parseGtid("banana")).toThrow(/is not a GTID/);
  });

  it("holds a transaction by sequence number per domain, whatever server wrote it", () => {
    const p = parseState("mariadb", "0-1-100,1-3-7");
    expect(p.has(parseGtid("0-2-100"))).toBe(true);
    expect(p.has(parseGtid("0-1-101"))).toBe(false);
    expect(p.has(parseGtid("2-1-1"))).toBe(false);
    p.add(parseGtid("0-2-101"));
    expect(p.toString()).toBe("0-2-101,1-3-7");
  });

  it("covers per domain, and names what a gap lacks", () => {
    const behind = parseState("mariadb", "0-1-100");
    const ahead = parseState("mariadb", "0-1-120,1-1-3");
    expect(ahead.covers(behind)).toBe(true);
    expect(behind.covers(ahead)).toBe(false);
    expect(behind.missingFrom(ahead)).toBe(
      "0-*-101..0-1-120 (20 transactions of domain 0), 1-*-1..1-1-3 (3 transactions of domain 1)",
    );
    expect(ahead.missingFrom(behind)).toBeNull();
  });

  it("absorbs another position and reads a GTID_LIST (several servers per domain) as the highest per domain", () => {
    const p = parseState("mariadb", "0-1-10");
    p.absorb(parseState("mariadb", "0-2-8,1-1-4"));
    expect(p.toString()).toBe("0-1-10,1-1-4");
    expect(positionOfList([parseGtid("0-1-50"), parseGtid("0-2-70"), parseGtid("1-1-3")]).toString()).toBe(
      "0-2-70,1-1-3",
    );
    expect(sameState(parseState("mariadb", "0-1-5"), parseState("mariadb", "0-2-5"))).toBe(true);
  });
});

describe("MySQL GTID sets", () => {
  it("parses intervals, merges them and prints canonically (uuids in order)", () => {
    const s = parseState("mysql", `${U2}:1-5:7,\n${U1}:3:1-2:4`);
    expect(s.toString()).toBe(`${U1}:1-4,${U2}:1-5:7`);
    s.add(parseGtid(`${U2}:6`));
    expect(s.toString()).toBe(`${U1}:1-4,${U2}:1-7`);
  });

  it("refuses malformed elements", () => {
    expect(() => parseState("mysql", "not-a-uuid:1-3")).toThrow(/not a MySQL GTID set element/);
    expect(() => parseState("mysql", `${U1}:5-3`)).toThrow(/ends before it starts/);
    expect(() => parseState("mysql", `${U1}:x`)).toThrow(/bad interval/);
  });

  it("holds, covers and names the missing GTIDs as a set", () => {
    const chain = parseState("mysql", `${U1}:1-100`);
    const before = parseState("mysql", `${U1}:1-120,${U2}:1-2`);
    expect(chain.has(parseGtid(`${U1}:100`))).toBe(true);
    expect(chain.has(parseGtid(`${U1}:101`))).toBe(false);
    expect(before.covers(chain)).toBe(true);
    expect(chain.missingFrom(before)).toBe(`${U1}:101-120,${U2}:1-2`);
    const union = chain.clone();
    union.absorb(parseState("mysql", `${U2}:5`));
    expect(union.toString()).toBe(`${U1}:1-100,${U2}:5`);
    expect(chain.toString()).toBe(`${U1}:1-100`);
  });

  it("does not compare across flavors", () => {
    expect(() => emptyState("mysql").covers(emptyState("mariadb"))).toThrow(
      /MariaDB position compared with a MySQL/,
    );
  });
});
