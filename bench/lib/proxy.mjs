// A TCP proxy that counts the bytes passing each way (MQTT framing, CONNECT, PUBACKs included):
// what the daemon would send over a metered uplink.
import { createServer, connect } from 'node:net';

export async function countingProxy(targetPort, targetHost = '127.0.0.1') {
  const counts = { up: 0, down: 0, connections: 0 };
  const socks = new Set();
  const server = createServer((a) => {
    counts.connections++;
    const b = connect(targetPort, targetHost);
    socks.add(a).add(b);
    a.on('data', (d) => {
      counts.up += d.length;
      b.write(d);
    });
    b.on('data', (d) => {
      counts.down += d.length;
      a.write(d);
    });
    const close = () => {
      a.destroy();
      b.destroy();
      socks.delete(a);
      socks.delete(b);
    };
    a.on('close', close).on('error', close);
    b.on('close', close).on('error', close);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    counts,
    url: `mqtt://127.0.0.1:${server.address().port}`,
    reset() {
      counts.up = counts.down = counts.connections = 0;
    },
    async close() {
      for (const s of socks) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A slow link: every chunk leaves `delayMs` after it came, in order, each way (latency, no bandwidth limit). */
export async function delayingProxy(targetPort, delayMs, targetHost = '127.0.0.1') {
  const socks = new Set();
  const pipe = (from, to) => {
    let due = 0;
    from.on('data', (d) => {
      due = Math.max(Date.now() + delayMs, due);
      setTimeout(() => to.destroyed || to.write(d), due - Date.now());
    });
  };
  const server = createServer((a) => {
    const b = connect(targetPort, targetHost);
    socks.add(a).add(b);
    pipe(a, b);
    pipe(b, a);
    const close = () => {
      a.destroy();
      b.destroy();
      socks.delete(a);
      socks.delete(b);
    };
    a.on('close', close).on('error', close);
    b.on('close', close).on('error', close);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `mqtt://127.0.0.1:${server.address().port}`,
    async close() {
      for (const s of socks) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
