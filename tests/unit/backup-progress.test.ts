/**
 * The progress views: the terminal bar (redrawn in place, throttled, finished with a newline) and the
 * journald lines (at most one per interval), with an injected clock.
 */
import { memoryLogger } from "../../hostscripts/common/log";
import { logProgress, progressLine, ttyProgress } from "../../hostscripts/common/progress";

const MiB = 1024 * 1024;

test("a bar line shows the share done, the bytes and the rate, and never more than 100 %", () => {
  expect(progressLine("archive", 25 * MiB, 100 * MiB, 5)).toBe(
    "archive  [########......................]  25%  25.0/100.0 MiB  5.0 MiB/s",
  );
  expect(progressLine("upload", 120 * MiB, 100 * MiB, 2)).toBe(
    "upload   [##############################] 100%  120.0/120.0 MiB  60.0 MiB/s",
  );
  expect(progressLine("archive", 0, 0, 0)).toContain("100%");
});

test("the terminal bar redraws in place at most every 100 ms and ends with a newline", () => {
  let t = 0;
  const written: string[] = [];
  const bar = ttyProgress({ write: (text: string) => written.push(text) }, () => t).start("upload", 10 * MiB);
  bar.advance(MiB); // first draw
  t = 50;
  bar.advance(MiB); // too soon: not drawn
  t = 150;
  bar.advance(MiB);
  bar.end();
  expect(written).toHaveLength(4);
  expect(written.slice(0, 3).every((w) => w.startsWith("\r\x1b[2K"))).toBe(true);
  expect(written[1]).toContain("3.0/10.0 MiB");
  expect(written[2]).toContain(" 30%");
  expect(written[3]).toBe("\n");
});

test("on journald, one progress line per interval with the figures", () => {
  let t = 0;
  const log = memoryLogger();
  const bar = logProgress(log, 30_000, () => t).start("archive", 100 * MiB);
  bar.advance(10 * MiB);
  t = 29_000;
  bar.advance(10 * MiB);
  t = 30_000;
  bar.advance(10 * MiB);
  t = 40_000;
  bar.advance(10 * MiB);
  bar.end();
  expect(log.lines).toEqual([
    expect.objectContaining({
      level: "info",
      message: "progress",
      step: "archive",
      doneBytes: 30 * MiB,
      totalBytes: 100 * MiB,
      percent: 30,
      mibPerSecond: 1,
    }),
  ]);
});
