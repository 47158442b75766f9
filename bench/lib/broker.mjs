// A private Mosquitto on a free port (the logic of test/helpers/mosquitto.ts). Unlike the test
// broker, persistence is off: a bench measures the client, and Mosquitto's autosave of every
// change would make the broker the bottleneck and the noise. Nothing here survives a broker restart.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, waitFor } from './util.mjs';

const portOpen = (port, host) =>
  new Promise((resolve) => {
    const s = connect(port, host);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

export async function startBroker(dir, { host = '127.0.0.1', port, netns } = {}) {
  mkdirSync(dir, { recursive: true });
  port ??= await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [`listener ${port} ${host}`, 'allow_anonymous true', 'persistence false', 'max_queued_messages 0', 'max_inflight_messages 0', 'user root', ''].join('\n'),
  );
  const cmd = netns ? ['ip', ['netns', 'exec', netns, 'mosquitto', '-c', conf]] : ['mosquitto', ['-c', conf]];
  const proc = spawn(cmd[0], cmd[1], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  await waitFor(() => portOpen(port, host), 10_000, `mosquitto on ${host}:${port}: ${log}`, 50);
  return {
    port,
    host,
    url: `mqtt://${host}:${port}`,
    pid: proc.pid,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}
