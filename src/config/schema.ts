import { hostname } from 'node:os';
import { z } from 'zod';
import cron from 'node-cron';
import { parseDuration, parseSize } from '../util/duration.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

// Every object is strict: an unknown key is "either a typo or an option that does not exist"
// (Telegraf) and is reported rather than ignored.

const duration = (what: string) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration for ${what} (milliseconds, or e.g. "30s", "15m", "3d"), got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  });

const size = (what: string) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a size for ${what} (bytes, or e.g. "512MB", "2GiB"), got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  });

/** user:password@ of a URL replaced, so that a problem report never prints a password */
const hideUserinfo = (url: string) => url.replace(/\/\/[^/@]*@/, '//***@');

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

const schedule = z.string().refine((s) => cron.validate(s), {
  message: 'expected a cron expression with 5 or 6 fields, e.g. "*/5 * * * * *" (every 5 seconds)',
});

const sensorName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'expected 1-64 characters of A-Z a-z 0-9 _ . : -');

const sensorBase = {
  name: sensorName,
  schedule,
  unit: z.string().max(32).optional(),
  /** also take one reading as soon as sampling starts, not only at the first scheduled time */
  readAtStart: z.boolean().default(false),
};

const simulated = z.strictObject({
  type: z.literal('simulated'),
  ...sensorBase,
  count: int(1, 100_000).default(1),
  min: z.number().default(15),
  max: z.number().default(30),
  start: z.number().optional(),
  step: z.number().positive().default(0.5),
  seed: int(0, 2 ** 31 - 1).optional(),
});

const cpuTemperature = z.strictObject({ type: z.literal('cpu-temperature'), ...sensorBase });
const cpuLoad = z.strictObject({ type: z.literal('cpu-load'), ...sensorBase });
const memory = z.strictObject({
  type: z.literal('memory'),
  ...sensorBase,
  measure: z.enum(['used-percent', 'available-bytes']).default('used-percent'),
});
const disk = z.strictObject({
  type: z.literal('disk'),
  ...sensorBase,
  mount: z.string().default('/'),
  measure: z.enum(['used-percent', 'free-bytes']).default('used-percent'),
});

// Sensors that read device files under host.sysRoot (Raspberry Pi and other Linux boards).
const w1Id = z.string().regex(/^(10|22|28|3b|42)-[0-9a-f]{12}$/, 'expected a 1-Wire thermometer id as in /sys/bus/w1/devices, e.g. "28-0316a2797aff"');
const ds18b20 = z.strictObject({
  type: z.literal('ds18b20'),
  ...sensorBase,
  ids: z.array(w1Id).default([]),
  names: z.record(w1Id, sensorName).default({}),
});
const iioChannel = z.enum(['temperature', 'humidity', 'pressure', 'illuminance']);
// one unit per reading, chosen by the sensor: a single `unit` key would not fit
const { unit: _unit, ...unitlessBase } = sensorBase;
const iio = z.strictObject({
  type: z.literal('iio'),
  ...unitlessBase,
  device: z.union([z.string().min(1), int(0, 1_000_000)], { error: 'expected the IIO device name (e.g. "bme280") or its index N in iio:deviceN' }),
  channels: z.array(iioChannel).min(1).optional(),
  names: z.partialRecord(iioChannel, sensorName).default({}),
});
const piThrottled = z.strictObject({
  type: z.literal('pi-throttled'),
  ...unitlessBase,
  report: z.enum(['bitmask', 'flags', 'both']).default('bitmask'),
});

export const sensorSchema = z.discriminatedUnion('type', [simulated, cpuTemperature, cpuLoad, memory, disk, ds18b20, iio, piThrottled]);

const defaultSensors = [
  { type: 'simulated', name: 'sim-temp', unit: '°C', schedule: '*/5 * * * * *' },
  { type: 'cpu-load', name: 'cpu-load', schedule: '*/10 * * * * *' },
];

export const configSchema = z
  .strictObject({
    device: z
      .strictObject({
        id: z
          .string()
          .regex(/^[^/#+\s]{1,128}$/, 'expected 1-128 characters without "/", "#", "+" or spaces (it is part of MQTT topics)')
          .default(() => hostname()),
      })
      .prefault({}),
    database: z
      .strictObject({
        path: z.string().min(1).default('./data/edge-sensor.db'),
        // FULL: a reading reported committed survives a power cut (NORMAL lost some in our own trial)
        synchronous: z.enum(['FULL', 'NORMAL']).default('FULL'),
        busyTimeoutMs: int(0, 600_000).default(5000),
      })
      .prefault({}),
    mqtt: z
      .strictObject({
        url: z
          .string()
          .default('mqtt://127.0.0.1:1883')
          .superRefine((u, ctx) => {
            if (!/^(mqtts?|wss?|tcp|ssl):\/\/[^\s]+$/.test(u)) {
              ctx.addIssue({ code: 'custom', message: `expected a URL like mqtt://host:1883 or mqtts://host:8883, got ${JSON.stringify(hideUserinfo(u))}` });
            } else if (/^[a-z]+:\/\/[^/]*@/.test(u)) {
              // credentials in the URL would be printed by check-config --print and copied into backups
              ctx.addIssue({ code: 'custom', message: 'expected no user name or password in the URL (got some, not shown): use mqtt.username and mqtt.passwordFile or mqtt.passwordEnv' });
            }
          }),
        topicPrefix: z
          .string()
          .regex(/^[^#+\s]+$/, 'expected a topic prefix without wildcards or spaces')
          .refine((s) => !s.startsWith('/') && !s.endsWith('/'), 'expected no leading or trailing "/"')
          .default('edge-sensor'),
        protocolVersion: z.union([z.literal(5), z.literal(4)], { error: 'expected 5 (MQTT 5) or 4 (MQTT 3.1.1)' }).default(5),
        clientId: z.string().min(1).max(128).optional(),
        keepaliveSec: int(0, 65535).default(30),
        connectTimeoutMs: int(100, 600_000).default(10_000),
        sessionExpirySec: int(0, 0xffffffff).default(3600),
        /** MQTT 5 topic alias for the readings and status topics, when the broker offers aliases */
        topicAlias: z.boolean().default(true),
        username: z.string().min(1).max(65535).optional(),
        // The password itself never sits in this file: it would be printed by check-config --print,
        // copied into backups and support tickets. It comes from a file or the environment.
        passwordFile: z.string().min(1).optional(),
        passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected the name of an environment variable, e.g. EDGE_SENSOR_MQTT_PASSWORD').optional(),
        password: z.never({ error: 'a password is never read from the config file (got one, not shown): put it in a file named by mqtt.passwordFile or an environment variable named by mqtt.passwordEnv' }).optional(),
        tls: z
          .strictObject({
            /** PEM file of the CA(s) that signed the broker's certificate; default: the system's trusted CAs */
            caFile: z.string().min(1).optional(),
            /** PEM client certificate and its unencrypted key, for brokers that require one (mutual TLS) */
            certFile: z.string().min(1).optional(),
            keyFile: z.string().min(1).optional(),
            /** the name expected in the broker's certificate (and sent as SNI) when it differs from the URL's host */
            serverName: z.string().min(1).optional(),
            insecureSkipVerify: z.boolean().default(false),
          })
          .prefault({}),
      })
      .prefault({}),
    sync: z
      .strictObject({
        batchSize: int(1, 100_000).default(500),
        maxInFlight: int(1, 1000).default(8),
        intervalMs: int(10, 3_600_000).default(1000),
        publishTimeoutMs: int(100, 600_000).default(10_000),
        shutdownTimeoutMs: int(0, 600_000).default(5000),
        compression: z.enum(['none', 'gzip']).default('none'),
        retry: z
          .strictObject({
            initialDelayMs: int(1, 3_600_000).default(1000),
            maxDelayMs: int(1, 86_400_000).default(300_000),
            maxAttempts: int(1, 1_000_000).default(10),
          })
          .prefault({}),
      })
      .prefault({}),
    status: z
      .strictObject({
        intervalMs: int(1000, 86_400_000).default(30_000),
      })
      .prefault({}),
    retention: z
      .strictObject({
        syncedMaxAge: duration('retention.syncedMaxAge').default(3 * 86_400_000),
        pruneIntervalMs: int(1000, 86_400_000).default(60_000),
        syncLogMaxRows: int(100, 10_000_000).default(10_000),
        /** the database file plus its WAL never grows past this (0: no cap) */
        maxDatabaseBytes: size('retention.maxDatabaseBytes').default(1024 ** 3),
        /** keep at least this much free on the database's file system (0: no watermark) */
        minFreeDiskBytes: size('retention.minFreeDiskBytes').default(100 * 1024 ** 2),
        /** full with only unsynced rows left: drop the oldest (default) or stop sampling; both are counted */
        onFull: z.enum(['drop-oldest', 'stop-sampling']).default('drop-oldest'),
        checkIntervalMs: int(100, 3_600_000).default(5000),
      })
      .prefault({}),
    control: z
      .strictObject({
        socketPath: z.string().min(1).optional(),
      })
      .prefault({}),
    host: z
      .strictObject({
        procRoot: z.string().default('/proc'),
        sysRoot: z.string().default('/sys'),
      })
      .prefault({}),
    // prefault: the default list goes through the sensor schema, so its sensors get their own defaults (count, min, max...)
    sensors: z.array(sensorSchema).prefault(defaultSensors as never),
    log: z
      .strictObject({
        level: z.enum(LOG_LEVELS).default('info'),
      })
      .prefault({}),
  });

/**
 * Rules across fields, checked on the raw input so that they are reported together with
 * every other problem (zod skips refinements of an object that already has issues).
 */
export function crossFieldProblems(input: unknown): Array<{ path: Array<string | number>; message: string }> {
  const out: Array<{ path: Array<string | number>; message: string }> = [];
  const obj = (v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
  const root = obj(input);
  const sensors = root?.sensors;
  if (Array.isArray(sensors)) {
    const seen = new Map<string, number>();
    sensors.forEach((raw, i) => {
      const s = obj(raw);
      if (!s) return;
      if (typeof s.name === 'string') {
        const first = seen.get(s.name);
        if (first !== undefined) out.push({ path: ['sensors', i, 'name'], message: `expected a unique sensor name; "${s.name}" is also sensors[${first}]` });
        else seen.set(s.name, i);
      }
      if (s.type === 'simulated') {
        const min = typeof s.min === 'number' ? s.min : 15;
        const max = typeof s.max === 'number' ? s.max : 30;
        if (max <= min) out.push({ path: ['sensors', i, 'max'], message: `expected max > min (${min})` });
      }
    });
  }
  const mqtt = obj(root?.mqtt);
  if (mqtt) {
    const url = typeof mqtt.url === 'string' ? mqtt.url : 'mqtt://';
    const tls = obj(mqtt.tls);
    if (tls && Object.keys(tls).length > 0 && !/^(mqtts|wss|ssl):/.test(url)) {
      out.push({ path: ['mqtt', 'tls'], message: 'mqtt.tls is set but mqtt.url does not use TLS: expected an mqtts:// (or wss://) URL' });
    }
    // mqtt.js hands the server name to TLS sockets only, not to its WebSocket client
    if (tls?.serverName !== undefined && /^wss:/.test(url)) {
      out.push({ path: ['mqtt', 'tls', 'serverName'], message: 'serverName works with mqtts:// URLs only, not wss://' });
    }
    if (tls && (tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      out.push({ path: ['mqtt', 'tls', tls.certFile === undefined ? 'certFile' : 'keyFile'], message: 'expected both certFile and keyFile (a client certificate needs its key)' });
    }
    if (mqtt.passwordFile !== undefined && mqtt.passwordEnv !== undefined) {
      out.push({ path: ['mqtt', 'passwordEnv'], message: 'expected either mqtt.passwordFile or mqtt.passwordEnv, not both' });
    }
    // MQTT 3.1.1 has no password without a user name (MQTT 5 allows it)
    if (mqtt.protocolVersion === 4 && mqtt.username === undefined && (mqtt.passwordFile !== undefined || mqtt.passwordEnv !== undefined)) {
      out.push({ path: ['mqtt', 'username'], message: 'expected a user name: MQTT 3.1.1 sends a password only with a user name' });
    }
  }
  const retry = obj(obj(root?.sync)?.retry);
  if (retry) {
    const initial = typeof retry.initialDelayMs === 'number' ? retry.initialDelayMs : 1000;
    const max = typeof retry.maxDelayMs === 'number' ? retry.maxDelayMs : 300_000;
    if (max < initial) out.push({ path: ['sync', 'retry', 'maxDelayMs'], message: `expected maxDelayMs >= initialDelayMs (${initial})` });
  }
  return out;
}

export type Config = z.output<typeof configSchema>;
export type SensorConfig = z.output<typeof sensorSchema>;
export type SyncConfig = Config['sync'];
export type MqttConfig = Config['mqtt'];
export type DatabaseConfig = Config['database'];
export type RetentionConfig = Config['retention'];

// Pieces the collector's config (src/collector/config.ts) shares with the daemon's, so that one
// rule is written once: the MQTT connection, credential and TLS keys, and the value parsers.
export const mqttSchema = configSchema.shape.mqtt.unwrap();
export { duration, size, int, hideUserinfo };
