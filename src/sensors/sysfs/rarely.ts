/**
 * For problems that repeat every tick: log the 1st, 10th, 100th, 1000th... occurrence, so a
 * flaky device shows up in the log with its count without flooding it (or the SD card).
 */
export function worthLogging(count: number): boolean {
  if (count === 1) return true;
  for (let p = 10; p <= count; p *= 10) if (p === count) return true;
  return false;
}
