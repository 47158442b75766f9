import { describe, it } from 'vitest';
import { backlog, plan, Scenario, sleep, withRun } from './lib/harness.js';

describe('fault: the daemon is stopped', () => {
  it('sigterm: SIGTERM during a drain exits 0; the restart drains the rest', async () => {
    const sc = new Scenario('sigterm', 'SIGTERM during the drain of a backlog (sampling 1000/s), restarted at once');
    const p = plan({ runs: 4, faultsPerRun: 5 }, { runs: 1, faultsPerRun: 3 });
    let slowest = 0;
    for (let i = 0; i < p.runs; i++) {
      await withRun(sc, { prefill: backlog(300_000), perSecond: 1000 }, async (run) => {
        await run.startDaemon();
        for (let f = 0; f < p.faultsPerRun; f++) {
          await sleep(sc.rng.between(50, 1000));
          await run.inDrain();
          run.markFault('SIGTERM');
          const t = await run.daemon.term();
          slowest = Math.max(slowest, t.ms);
          if (t.code !== 0) throw new Error(`SIGTERM during a drain: exit ${t.code ?? t.signal} after ${t.ms} ms`);
          await run.startDaemon();
          await run.recovered({ newProcess: true });
        }
      });
    }
    sc.note(`every SIGTERM exited 0; the slowest stop took ${slowest} ms (sync.shutdownTimeoutMs 1000)`);
    sc.finish();
  });
});
