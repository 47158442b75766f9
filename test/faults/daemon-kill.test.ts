import { describe, it } from 'vitest';
import { backlog, plan, Scenario, sleep, withRun } from './lib/harness.js';

describe('fault: the daemon is killed', () => {
  it('daemon-kill: kill -9 while batches are in flight, restart at once; the backlog drains', async () => {
    const sc = new Scenario('daemon-kill', 'kill -9 of the daemon during the drain of a backlog (sampling 1000/s), restarted at once');
    const p = plan({ runs: 4, faultsPerRun: 5 }, { runs: 1, faultsPerRun: 3 });
    for (let i = 0; i < p.runs; i++) {
      await withRun(sc, { prefill: backlog(300_000), perSecond: 1000 }, async (run) => {
        await run.startDaemon();
        for (let f = 0; f < p.faultsPerRun; f++) {
          await sleep(sc.rng.between(50, 1000));
          await run.inDrain();
          run.markFault('kill -9');
          await run.daemon.kill9();
          await run.startDaemon();
          await run.recovered({ newProcess: true });
        }
      });
    }
    sc.finish();
  });
});
