import { rmSync } from 'node:fs';
import { afterAll, describe, it } from 'vitest';
import { runCli } from '../helpers/process.js';
import { makeTmp } from '../helpers/tmp.js';
import { integrityNow, plan, Scenario, sleep, withRun } from './lib/harness.js';
import { fillUp, mountTmpfs, tmpfsUnavailable, unmount, unmountAll } from './lib/mounts.js';

const LOST_LOG = 'cannot store readings; they are lost';
const BACK_LOG = 'writing readings works again';
const PER_SECOND = 1000;
const PREFILL = 40_000;

afterAll(() => unmountAll());

describe('fault: the disk under the database is full', () => {
  it('disk-full: sampling fails with a counted loss, the daemon keeps running and resumes; the database stays intact', async (ctx) => {
    const sc = new Scenario(
      'disk-full',
      `database on a 32 MB tmpfs (40,000 readings pending at the start) whose free space is filled, and freed 0-1.5 s after the first failed write (sampling ${PER_SECOND}/s)`,
    );
    const why = tmpfsUnavailable();
    if (why) {
      sc.skip(why);
      ctx.skip(why);
      return;
    }
    const p = plan({ runs: 4, faultsPerRun: 5 }, { runs: 1, faultsPerRun: 3 });
    const counted: string[] = [];
    let noFailure = 0;
    for (let i = 0; i < p.runs; i++) {
      const mnt = makeTmp('esf-mnt-');
      mountTmpfs(mnt.dir, 32 << 20);
      let statusLost = -1;
      try {
        await withRun(
          sc,
          { dbDir: mnt.dir, perSecond: PER_SECOND, prefill: PREFILL },
          async (run) => {
            await run.startDaemon();
            const d = run.daemon;
            for (let f = 0; f < p.faultsPerRun; f++) {
              await sleep(sc.rng.between(500, 1500));
              const lostLines = d.count((l) => l.msg === LOST_LOG);
              const backLines = d.count((l) => l.msg === BACK_LOG);
              run.markFault('disk full');
              const filler = fillUp(mnt.dir);
              let failed;
              try {
                // a write fails once SQLite needs a new page: at once, or once the room left in
                // the WAL file (reused after each checkpoint) is used up
                failed = await d.waitLog((l) => l.msg === LOST_LOG, 45_000, 'a failed write', lostLines + 1).catch(() => undefined);
                if (!failed) noFailure++;
                await sleep(sc.rng.between(0, 1500));
              } finally {
                rmSync(filler);
              }
              if (failed) await d.waitLog((l) => l.msg === BACK_LOG, 10_000, 'writes working again', backLines + 1);
              const integrity = integrityNow(run.dbPath);
              if (integrity !== 'ok') throw new Error(`integrity check after disk full: ${integrity}`);
              await run.recovered();
            }
            const st = await runCli(['status', '--json', '--config', run.configPath]);
            statusLost = (JSON.parse(st.stdout) as { lostTotal: number }).lostTotal;
          },
          (run, outcome) => {
            // the sampling daemon's "stopped" line: what it wrote and what it could not store
            const t = run.daemon.stoppedTotals();
            counted.push(`run ${i + 1}: written ${t.written}, lost ${t.lost}, status lostTotal ${statusLost}`);
            const failures: string[] = [];
            if (t.lost === 0) failures.push('no loss counted although writes failed');
            if (t.written !== outcome.finalRows - PREFILL) failures.push(`daemon says ${t.written} written, the database holds ${outcome.finalRows - PREFILL} besides the backlog`);
            // a tick is stored or lost as a whole: every reading taken is either written or counted lost
            if ((t.written + t.lost) % PER_SECOND !== 0) failures.push(`written + lost = ${t.written + t.lost}, not whole ticks of ${PER_SECOND}`);
            if (statusLost !== t.lost) failures.push(`status --json lostTotal ${statusLost}, the daemon counted ${t.lost}`);
            return failures;
          },
        );
      } finally {
        unmount(mnt.dir);
        mnt.cleanup();
      }
    }
    sc.note(`losses counted by the daemon: ${counted.join('; ')}`);
    if (noFailure > 0) sc.note(`${noFailure} times the disk stayed full for 45 s without a failed write (the WAL file had room)`);
    sc.finish();
  });
});
