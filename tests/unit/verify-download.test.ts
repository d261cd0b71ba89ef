/** The ranges of a ranged download. */
import { laterRanges, totalFromContentRange } from "../../hostscripts/restore/download";

test("the total size comes from Content-Range", () => {
  expect(totalFromContentRange("bytes 0-1023/40960")).toBe(40960);
  expect(totalFromContentRange(undefined)).toBeUndefined();
  expect(totalFromContentRange("bytes */*")).toBeUndefined();
});

test("the parts after the first cover the rest exactly once, the last one short", () => {
  expect(laterRanges(10, 4)).toEqual(["bytes=4-7", "bytes=8-9"]);
  expect(laterRanges(8, 4)).toEqual(["bytes=4-7"]);
  expect(laterRanges(3, 4)).toEqual([]);
});
