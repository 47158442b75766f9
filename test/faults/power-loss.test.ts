import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { makeTmp } from '../helpers/tmp.js';
import Database from 'better-sqlite3';
import { plan, readDatabase, Scenario, sleep, withRun, type FaultRun } from './lib/harness.js';
import { copyImage, loopUnavailable, makeExt4Image, mountLoop, unmount, unmountAll } from './lib/mounts.js';

afterAll(() => unmountAll());

const IMAGE_MB = 64;

/**
 * An approximated power cut: kill -9 of the daemon, then at once a copy of the loop device's
 * backing file. The copy holds what the ext4 inside had written to its "disk"; what was still in
 * its page cache (a commit that was never fsynced) is missing, as after a real power cut. The
 * copy becomes the disk of the next boot: mounted (ext4 replays its journal), the daemon
 * restarted on it (SQLite recovers its WAL).
 */
class PowerCuts {
  private generation = 0;
  private readonly gone = new Set<string>();
  readonly perCut: number[] = [];

  constructor(
    private readonly dir: string,
    readonly mnt: string,
  ) {}

  image(n = this.generation): string {
    return join(this.dir, `disk-${n}.img`);
  }

  boot(): void {
    makeExt4Image(this.image(), IMAGE_MB);
    mountLoop(this.image(), this.mnt);
  }

  async cut(run: FaultRun): Promise<{ vanished: number; seqs: number[]; cutAt: number }> {
    run.markFault('power cut');
    const cutAt = Date.now();
    await run.daemon.kill9();
    const before = this.image();
    const after = this.image(++this.generation);
    copyImage(before, after);
    // what had been committed, read after the copy (the page cache still holds all of it)
    run.reader.pollAll();
    run.reader.close();
    unmount(this.mnt);
    rmSync(before);
    mountLoop(after, this.mnt);
    // the daemon opens the survivor first, as it would after a reboot
    await run.startDaemon('sampling');
    const { rows, integrity } = readDatabase(run.dbPath);
    if (integrity !== 'ok') throw new Error(`integrity check after power cut ${this.generation}: ${integrity}`);
    const seqs: number[] = [];
    for (const [id, seq] of run.reader.seen) {
      if (!rows.has(id) && !this.gone.has(id)) {
        this.gone.add(id);
        seqs.push(seq);
      }
    }
    run.reader.reopen(run.dbPath);
    run.reader.start();
    this.perCut.push(seqs.length);
    return { vanished: seqs.length, seqs: seqs.sort((a, b) => a - b), cutAt };
  }

  cleanup(): void {
    try {
      unmount(this.mnt);
    } catch {
      /* not mounted */
    }
  }
}

describe('fault: power loss under the database', () => {
  for (const synchronous of ['FULL', 'NORMAL'] as const) {
    it(`power-loss-${synchronous}: committed readings survive an approximated power cut (synchronous=${synchronous})`, async (ctx) => {
      const sc = new Scenario(
        `power-loss-${synchronous}`,
        `database on a loop-mounted ext4 image, synchronous=${synchronous}; kill -9 and a copy of the image at a random moment, the copy mounted and the daemon restarted on it; 20,000 readings pending at the start, sampling 1000/s over a slow link (the backlog grows)`,
      );
      const why = loopUnavailable();
      if (why) {
        sc.skip(why);
        ctx.skip(why);
        return;
      }
      const p = plan({ runs: 1, faultsPerRun: 20 }, { runs: 1, faultsPerRun: 3 });
      for (let i = 0; i < p.runs; i++) {
        const tmp = makeTmp('esf-pl-');
        const mnt = join(tmp.dir, 'm');
        mkdirSync(mnt);
        const cuts = new PowerCuts(tmp.dir, mnt);
        try {
          cuts.boot();
          await withRun(sc, { dbDir: mnt, synchronous, prefill: 20_000, perSecond: 1000, batchSize: 100, maxInFlight: 2 }, async (run) => {
            // about 650 readings/s get through: the backlog grows while sampling goes on
            run.proxy.delayMs = 150;
            await run.startDaemon();
            for (let f = 0; f < p.faultsPerRun; f++) {
              await sleep(sc.rng.between(1000, 4000));
              const { vanished, seqs } = await cuts.cut(run);
              await run.daemon.linkUp(30_000);
              if (vanished > 0) console.log(`[${sc.result.scenario}] run ${i + 1} cut ${f + 1}: ${vanished} committed readings missing after the cut (seq ${seqs[0]}-${seqs.at(-1)})`);
              await run.recovered();
            }
          });
        } finally {
          cuts.cleanup();
          tmp.cleanup();
        }
        sc.note(`run ${i + 1}: committed readings missing after each of ${cuts.perCut.length} power cuts: [${cuts.perCut.join(', ')}]`);
      }
      sc.finish({ measureOnly: synchronous === 'NORMAL' });
    });
  }
});

/** The newest reading's time and the seqs' shape: [count, min, max] (continuous when count = max − min + 1). */
function seqShape(path: string): { newestMs: number; count: number; min: number; max: number } {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const r = db.prepare('SELECT count(*) AS count, min(seq) AS min, max(seq) AS max, max(timestamp) AS newest FROM transactions').get() as { count: number; min: number; max: number; newest: string };
    return { newestMs: Date.parse(r.newest), count: r.count, min: r.min, max: r.max };
  } finally {
    db.close();
  }
}

describe('fault: power loss with a commit window', () => {
  const WINDOW_MS = 2000;
  it(`power-loss-window: a power cut costs at most one commit window (${WINDOW_MS} ms) of readings, seq stays continuous, nothing committed vanishes`, async (ctx) => {
    const sc = new Scenario(
      'power-loss-window',
      `as power-loss-FULL, with database.commitWindowMs ${WINDOW_MS}: readings wait in memory up to the window; per cut, the readings lost (never committed, never given a seq) are measured against one window, and seq must stay continuous`,
    );
    const why = loopUnavailable();
    if (why) {
      sc.skip(why);
      ctx.skip(why);
      return;
    }
    const p = plan({ runs: 1, faultsPerRun: 20 }, { runs: 1, faultsPerRun: 3 });
    for (let i = 0; i < p.runs; i++) {
      const tmp = makeTmp('esf-plw-');
      const mnt = join(tmp.dir, 'm');
      mkdirSync(mnt);
      const cuts = new PowerCuts(tmp.dir, mnt);
      const lostMs: number[] = [];
      const problems: string[] = [];
      try {
        cuts.boot();
        await withRun(
          sc,
          { dbDir: mnt, synchronous: 'FULL', commitWindowMs: WINDOW_MS, prefill: 5000, perSecond: 200, batchSize: 100, maxInFlight: 2 },
          async (run) => {
            await run.startDaemon();
            for (let f = 0; f < p.faultsPerRun; f++) {
              await sleep(sc.rng.between(1000, 4000));
              const { vanished, cutAt } = await cuts.cut(run);
              // what the cut cost: the time between the newest committed reading and the cut (the
              // readings of that stretch were in memory); at most one window and one tick
              const shape = seqShape(run.dbPath);
              lostMs.push(cutAt - shape.newestMs);
              if (cutAt - shape.newestMs > WINDOW_MS + 1000 + 1000) problems.push(`cut ${f + 1}: ${cutAt - shape.newestMs} ms of readings lost, more than one window`);
              if (vanished > 0) problems.push(`cut ${f + 1}: ${vanished} committed readings vanished`);
              await run.daemon.linkUp(30_000);
              await run.recovered();
            }
            const end = seqShape(run.dbPath);
            if (end.count !== end.max - end.min + 1) problems.push(`seq not continuous: ${end.count} rows between ${end.min} and ${end.max}`);
          },
          () => problems,
        );
      } finally {
        cuts.cleanup();
        tmp.cleanup();
      }
      sc.note(`run ${i + 1}: readings lost per power cut, in ms of sampling before the cut (window ${WINDOW_MS} ms, ticks 1 s): [${lostMs.join(', ')}]; problems: ${problems.length ? problems.join('; ') : 'none'}`);
    }
    sc.finish();
  });
});
