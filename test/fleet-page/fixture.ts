import { randomUUID } from 'node:crypto';
import { FleetPageServer, type FleetPageOptions } from '../../src/collector/http/server.js';
import type { PgStore } from '../../src/collector/pg/store.js';
import { silentLogger } from '../../src/util/logger.js';
import { testSchema } from '../helpers/postgres.js';
import { idOf, item, PREFIX, store } from '../collector/helpers.js';

/** A device id that is markup (no spaces or slashes: the collector refuses those in ids at decode). */
export const XSS_DEVICE = '<b>bold<i>x&amp;';
/** The exact name, put into the devices table directly: the page must hold whatever the table holds. */
export const XSS_DEVICE_SPACED = '<img src=x onerror=alert(1)>';
export const XSS_SENSOR = '<img src=y onerror=alert(2)>';
export const XSS_UNIT = '<svg onload=alert(3)>';

export const STEP_MS = 240_000;
/** readings i (per sensor) missing from pi-kitchen, never sent: an open gap */
export const OPEN_HOLE = [100, 139];
/** readings i announced dropped by pi-kitchen: a dropped gap */
export const DROPPED_HOLE = [200, 229];
export const N = 360;

const readingsMsg = (device: string, rows: Array<{ seq: number; ts: number; sensor: string; value: number; unit: string }>) =>
  item(`${PREFIX}/${device}/readings`, JSON.stringify({ device, batch: randomUUID(), readings: rows.map((r) => ({ id: idOf(device, r.seq), seq: r.seq, ts: new Date(r.ts).toISOString(), sensor: r.sensor, value: r.value, unit: r.unit })) }));

const statusMsg = (device: string, state: 'online' | 'offline', pending: number) =>
  item(`${PREFIX}/${device}/status`, JSON.stringify({ device, state, pending, version: '0.1.0', ts: new Date().toISOString() }));

/**
 * A fleet written through the collector's own store: pi-kitchen (two sensors every 4 min for the last
 * 24 hours, an open and a dropped hole), pi-garage (offline, days behind, a backlog), and devices
 * whose names, sensors and units are markup.
 */
export async function fleetFixture() {
  const s = await testSchema('fp');
  const st = store(s.url, s.schema);
  await st.open('migrate');
  const now = Date.now();
  const start = now - N * STEP_MS;
  const kitchen: Parameters<typeof readingsMsg>[1] = [];
  const dropped: number[] = [];
  for (let i = 0; i < N; i++) {
    const ts = start + i * STEP_MS;
    const rows = [
      { seq: 2 * i + 1, ts, sensor: 'temperature', value: 20 + 3 * Math.sin(i / 40), unit: '°C' },
      { seq: 2 * i + 2, ts, sensor: 'humidity', value: 50 + 10 * Math.cos(i / 55), unit: '%' },
    ];
    if (i >= OPEN_HOLE[0] && i <= OPEN_HOLE[1]) continue;
    if (i >= DROPPED_HOLE[0] && i <= DROPPED_HOLE[1]) {
      dropped.push(...rows.map((r) => r.seq));
      continue;
    }
    kitchen.push(...rows);
  }
  for (let i = 0; i < kitchen.length; i += 200) await st.write([readingsMsg('pi-kitchen', kitchen.slice(i, i + 200))]);
  await st.write([item(`${PREFIX}/pi-kitchen/dropped`, JSON.stringify({ device: 'pi-kitchen', ranges: [[dropped[0], dropped.at(-1)]], count: dropped.length, reasons: ['database cap'], ts: new Date().toISOString() }))]);
  await st.write([statusMsg('pi-kitchen', 'online', 12)]);
  // a message that could not be stored, counted per device and by reason
  await st.write([item(`${PREFIX}/pi-kitchen/readings`, '{"device":"pi-kitchen","readings":')]);

  const garage = Array.from({ length: 50 }, (_, i) => ({ seq: i + 1, ts: now - 3 * 86_400_000 + i * 60_000, sensor: 'temperature', value: 8 + i / 10, unit: '°C' }));
  await st.write([readingsMsg('pi-garage', garage)]);
  await st.write([statusMsg('pi-garage', 'offline', 2500)]);

  await st.write([readingsMsg(XSS_DEVICE, [{ seq: 1, ts: now - 60_000, sensor: XSS_SENSOR, value: 1, unit: XSS_UNIT }, { seq: 2, ts: now - 30_000, sensor: XSS_SENSOR, value: 2, unit: XSS_UNIT }])]);
  await s.q('INSERT INTO devices (device, online, last_seen) VALUES ($1, true, now())', [XSS_DEVICE_SPACED]);
  // a backlog history to chart: the collector samples live statuses as they come, these are older
  await s.q(`INSERT INTO status_samples (device, at, online, pending) SELECT 'pi-kitchen', now() - g * interval '20 minutes', true, (400 * exp(-power(g - 36, 2) / 80.0))::bigint FROM generate_series(1, 72) g`);
  return {
    ...s,
    st,
    now,
    async cleanup() {
      await st.close();
      await s.cleanup();
    },
  };
}

/** The page's server on a free loopback port over `st`. */
export async function startPage(st: PgStore, o: Partial<FleetPageOptions> = {}) {
  const server = new FleetPageServer({ listen: '127.0.0.1:0', auth: undefined, requestTimeoutMs: 10_000, trouble: { lagMs: 15 * 60_000, pending: 1000 }, ...o }, st, silentLogger());
  const addr = await server.start();
  return { server, base: `http://127.0.0.1:${addr.port}` };
}
