import { describe, it } from 'vitest';
import { backlog, plan, Scenario, sleep, withRun } from './lib/harness.js';

const PLAN = plan({ runs: 4, faultsPerRun: 5 }, { runs: 1, faultsPerRun: 3 });

describe('fault: the network between daemon and broker fails', () => {
  it('partition: a silent partition during the drain of a large backlog', async () => {
    const sc = new Scenario(
      'partition',
      'silent partition (proxy forwards nothing, closes nothing) of 0.3-3 publish timeouts during a drain; bytes held and delivered late, or dropped and the connection reset at the end',
    );
    for (let i = 0; i < PLAN.runs; i++) {
      await withRun(sc, { prefill: backlog(400_000), perSecond: 1000 }, async (run) => {
        await run.startDaemon();
        const proxy = run.proxy;
        for (let f = 0; f < PLAN.faultsPerRun; f++) {
          await sleep(sc.rng.between(50, 800));
          const mode = sc.rng.chance(0.5) ? 'hold' : 'drop';
          const ms = run.publishTimeoutMs * sc.rng.between(0.3, 3);
          await run.inDrain();
          run.markFault(`partition-${mode}-${Math.round(ms)}ms`);
          proxy.pause(mode);
          await sleep(ms);
          proxy.resume();
          await run.recovered();
        }
      });
    }
    sc.finish();
  });

  it('cut: connections reset during the drain of a large backlog (sometimes refused for a while)', async () => {
    const sc = new Scenario('cut', 'hard cut (TCP reset both ways) during a drain; half of the time new connections are refused for 0-1.5 s');
    for (let i = 0; i < PLAN.runs; i++) {
      await withRun(sc, { prefill: backlog(400_000), perSecond: 1000 }, async (run) => {
        await run.startDaemon();
        const proxy = run.proxy;
        for (let f = 0; f < PLAN.faultsPerRun; f++) {
          await sleep(sc.rng.between(50, 1000));
          const connects = run.daemon.connects();
          const refuseMs = sc.rng.chance(0.5) ? sc.rng.between(0, 1500) : 0;
          await run.inDrain();
          run.markFault(refuseMs ? `cut+refuse-${Math.round(refuseMs)}ms` : 'cut');
          proxy.refuse(refuseMs > 0);
          proxy.cut();
          await sleep(refuseMs);
          proxy.refuse(false);
          await run.daemon.reconnected(connects);
          await run.recovered();
        }
      });
    }
    sc.finish();
  });

  it('slow-link: a slow link with the in-flight window full; delay spikes around the publish timeout', async () => {
    const sc = new Scenario(
      'slow-link',
      'link delayed 100 ms each way (window always full), with spikes of 0.5-2.5 publish timeouts lasting 0.5-2.5 s',
    );
    for (let i = 0; i < PLAN.runs; i++) {
      await withRun(sc, { prefill: backlog(300_000), perSecond: 1000 }, async (run) => {
        const proxy = run.proxy;
        proxy.delayMs = 100;
        await run.startDaemon();
        for (let f = 0; f < PLAN.faultsPerRun; f++) {
          await sleep(sc.rng.between(300, 1500));
          const spike = run.publishTimeoutMs * sc.rng.between(0.5, 2.5);
          await run.inDrain();
          run.markFault(`delay-${Math.round(spike)}ms`);
          proxy.delayMs = spike;
          await sleep(sc.rng.between(500, 2500));
          proxy.delayMs = 100;
          await run.recovered({ lingerMs: spike });
        }
      });
    }
    sc.finish();
  });
});
