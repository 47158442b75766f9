import { hostname } from 'node:os';
import { z } from 'zod';
import { validSchedule } from '../sampler/cron.js';
import { parseDuration, parseSize } from '../util/duration.js';
import { SENSOR_NAME, SENSOR_NAME_RULE, UNIT_MAX_CHARS } from '../sensors/reading.js';
import { redactUrl, usesTls } from '../util/url.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

// Every object is strict: an unknown key is "either a typo or an option that does not exist"
// (Telegraf) and is reported rather than ignored.

const YEAR_MS = 365 * 86_400_000;

/** A duration in ms within [min, max]: beyond about ten years a date computed from it no longer exists. */
const duration = (what: string, min: number, max: number) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration for ${what} (milliseconds, or e.g. "30s", "15m", "3d"), got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({ code: 'custom', message: `expected ${what} between ${min} ms and ${max} ms (${Math.round(max / 86_400_000)} days), got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  })
  .meta({ kind: 'duration' });

/** A size in bytes: 0 (off) or within [min, max]. */
const size = (what: string, min: number, max: number) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a size for ${what} (bytes, or e.g. "512MB", "2GiB"), got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    if (n !== 0 && (n < min || n > max)) {
      ctx.addIssue({ code: 'custom', message: `expected ${what} to be 0 (off) or between ${min} and ${max} bytes, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  })
  .meta({ kind: 'size' });

/**
 * Characters that must not appear in anything that becomes part of a topic or a payload field:
 * C0 and C1 controls (U+0000 makes the broker drop the connection), lone surrogates (not
 * UTF-8) and the non-characters U+FFFE/U+FFFF, which MQTT forbids or discourages.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\ud800-\udfff\ufffe\uffff]/u;
const printableText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !UNPRINTABLE.test(s), 'expected no control characters (U+0000-U+001F, U+007F-U+009F) and valid UTF-8');

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

/** A file path: no NUL (the file system cannot take one), no longer than PATH_MAX. */
const filePath = () => z.string().min(1).max(4096).refine((s) => !s.includes('\u0000'), 'expected a path without NUL characters');

const schedule = z.string().refine((s) => validSchedule(s), {
  message: 'expected a cron expression with 5 or 6 fields, e.g. "*/5 * * * * *" (every 5 seconds)',
}).describe('When to read: a node-cron expression of 5 fields, or 6 starting with seconds (`"*/5 * * * * *"` is every 5 s). Every-N-seconds schedules (N dividing 60) share one clock, so sensors due in the same second share one wake-up and one transaction.');

const sensorName = z.string().regex(SENSOR_NAME, SENSOR_NAME_RULE);

const sensorBase = {
  name: sensorName.describe('Unique among the sensors; stored with each reading (`sensor`), and the prefix of the reading names of sensors that give several.'),
  schedule,
  unit: printableText(UNIT_MAX_CHARS).optional().meta({ description: 'Unit stored with each reading (at most 32 printable characters).', defaultText: "the type's own (`°C`, `%`, `B`); none for `simulated`" }),
  /** also take one reading as soon as sampling starts, not only at the first scheduled time */
  readAtStart: z.boolean().default(false).describe('Also take one reading as soon as the daemon starts instead of waiting for the first scheduled time (useful for long periods such as every 15 minutes).'),
};

const simulated = z.strictObject({
  type: z.literal('simulated'),
  ...sensorBase,
  count: int(1, 100_000).default(1).describe('Readings per tick.'),
  min: z.number().default(15).describe('Lower bound of the walk.'),
  max: z.number().default(30).describe('Upper bound of the walk (more than `min`).'),
  start: z.number().optional().meta({ description: 'First value.', defaultText: 'halfway between `min` and `max`' }),
  step: z.number().positive().default(0.5).describe('Largest change from one reading to the next.'),
  seed: int(0, 2 ** 31 - 1).optional().meta({ description: 'Seed of the random walk: the same seed gives the same values.', defaultText: 'a random one' }),
}).describe('A random walk within `min` and `max`, reproducible with `seed`: readings without any hardware.');

const cpuTemperature = z.strictObject({ type: z.literal('cpu-temperature'), ...sensorBase }).describe("The CPU's temperature in °C from its thermal zone under `{host.sysRoot}/class/thermal` (Raspberry Pi: `cpu-thermal`).");
const cpuLoad = z.strictObject({ type: z.literal('cpu-load'), ...sensorBase }).describe('CPU utilisation in % since the previous tick, from `{host.procRoot}/stat`.');
const memory = z.strictObject({
  type: z.literal('memory'),
  ...sensorBase,
  measure: z.enum(['used-percent', 'available-bytes']).default('used-percent').describe('`used-percent`: (total − available) / total in %; `available-bytes`: MemAvailable in bytes.'),
}).describe('Memory use from `{host.procRoot}/meminfo`.');
const disk = z.strictObject({
  type: z.literal('disk'),
  ...sensorBase,
  mount: filePath().default('/').describe('A path on the file system to measure (its mount point, usually).'),
  measure: z.enum(['used-percent', 'free-bytes']).default('used-percent').describe('`used-percent` or `free-bytes` (space available to unprivileged users).'),
}).describe('Disk use of a file system, from `statfs(2)` of `mount`, as `df` shows it.');

// Sensors that read device files under host.sysRoot (Raspberry Pi and other Linux boards).
const w1Id = z.string().regex(/^(10|22|28|3b|42)-[0-9a-f]{12}$/, 'expected a 1-Wire thermometer id as in /sys/bus/w1/devices, e.g. "28-0316a2797aff"');
const ds18b20 = z.strictObject({
  type: z.literal('ds18b20'),
  ...sensorBase,
  ids: z.array(w1Id).default([]).describe('The 1-Wire ids to read, e.g. `28-0316a2797aff` (also DS18S20 `10-`, DS1822 `22-`, DS1825 `3b-`, DS28EA00 `42-`); empty: every `28-*` device, looked for again at every tick.'),
  names: z.record(w1Id, sensorName).default({}).describe('Reading name per id, instead of `{name}.{id}`.'),
}).describe('DS18B20 1-Wire thermometers under `{host.sysRoot}/bus/w1/devices`, °C, one reading per device; see [Raspberry Pi sensors](raspberry-pi.md#ds18b20).');
const iioChannel = z.enum(['temperature', 'humidity', 'pressure', 'illuminance']);
// one unit per reading, chosen by the sensor: a single `unit` key would not fit
const { unit: _unit, ...unitlessBase } = sensorBase;
const iio = z.strictObject({
  type: z.literal('iio'),
  ...unitlessBase,
  device: z.union([printableText(64).min(1), int(0, 1_000_000)], { error: 'expected the IIO device name (e.g. "bme280") or its index N in iio:deviceN' }).describe('The IIO device: its driver name (`bme280`; the lowest N when several share it) or N of `iio:deviceN` (which can change between boots).'),
  channels: z.array(iioChannel).min(1).optional().meta({ description: 'The channels to read; one the device lacks is warned about once.', defaultText: 'every one of these the device has' }),
  names: z.partialRecord(iioChannel, sensorName).default({}).describe('Reading name per channel, instead of `{name}.{channel}`.'),
}).describe('Any Linux IIO device under `{host.sysRoot}/bus/iio/devices` (BME280, BMP280, BH1750, SHT3x, HTU21, DHT11/22…): temperature °C, humidity %, pressure hPa, illuminance lx; each reading carries its own unit, so there is no `unit` key. See [Raspberry Pi sensors](raspberry-pi.md#iio).');
const piThrottled = z.strictObject({
  type: z.literal('pi-throttled'),
  ...unitlessBase,
  report: z.enum(['bitmask', 'flags', 'both']).default('bitmask').describe('`bitmask`: one reading `{name}`, the value `vcgencmd get_throttled` prints; `flags`: eight 0/1 readings `{name}.under-voltage`…; `both`: all nine.'),
}).describe("The Raspberry Pi firmware's under-voltage and throttling flags from `get_throttled` under `{host.sysRoot}/devices/platform`, read without `vcgencmd`; no `unit`. See [Raspberry Pi sensors](raspberry-pi.md#pi-throttled).");

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
          .refine((s) => !UNPRINTABLE.test(s), 'expected no control characters and valid UTF-8 (it is part of MQTT topics)')
          .default(() => hostname())
          .meta({ description: 'Names this device in every topic and payload: 1-128 characters without `/`, `#`, `+`, whitespace or control characters.', defaultText: 'the host name' }),
      })
      .prefault({})
      .describe('Who this device is.'),
    database: z
      .strictObject({
        path: filePath().default('./data/edge-sensor.db').describe('The SQLite file, relative to the working directory unless absolute; created with mode 0600 (its folder 0750) by the daemon or `edge-sensor record`. A folder every user may write to is refused.'),
        // FULL: a reading reported committed survives a power cut (NORMAL lost some in our own trial)
        synchronous: z.enum(['FULL', 'NORMAL']).default('FULL').describe('`FULL` makes every committed reading survive a power cut; `NORMAL` loses what was committed since the last WAL checkpoint (see [durability](durability.md)).'),
        busyTimeoutMs: int(0, 600_000).default(5000).describe('How long a writer waits for another one (the CLI beside the daemon) before it gives up.'),
        commitWindowMs: int(0, 600_000).default(0).describe('For SD cards: readings wait in memory up to this long and are committed together (one fsync per window instead of one per tick; at most 50,000 readings, and at once on SIGTERM). A power cut loses at most one window of readings, which never got a seq: no false gap. 0: every tick is committed at once (see [durability](durability.md#commit-window)).'),
      })
      .prefault({})
      .describe('The SQLite database every reading is committed to before it is sent.'),
    mqtt: z
      .strictObject({
        url: z
          .string()
          .default('mqtt://127.0.0.1:1883')
          .describe('The broker: `mqtt://` (port 1883 by default), `mqtts://` (TLS, 8883), `ws://` or `wss://` (WebSocket); `tcp://` and `ssl://` are taken as `mqtt://` and `mqtts://`. No user name or password in it: see `username` and `passwordFile`.')
          .superRefine((u, ctx) => {
            if (!/^(mqtts?|wss?|tcp|ssl):\/\/[^\s]+$/.test(u)) {
              ctx.addIssue({ code: 'custom', message: `expected a URL like mqtt://host:1883 or mqtts://host:8883, got ${JSON.stringify(redactUrl(u))}` });
            } else if (/^[a-z]+:\/\/[^/]*@/.test(u)) {
              // credentials in the URL would be printed by check-config --print and copied into backups
              ctx.addIssue({ code: 'custom', message: 'expected no user name or password in the URL (got some, not shown): use mqtt.username and mqtt.passwordFile or mqtt.passwordEnv' });
            }
          }),
        topicPrefix: z
          .string()
          .regex(/^[^#+\s]{1,200}$/, 'expected a topic prefix of 1-200 characters without wildcards or spaces')
          .refine((s) => !UNPRINTABLE.test(s), 'expected no control characters and valid UTF-8')
          .refine((s) => !s.startsWith('/') && !s.endsWith('/'), 'expected no leading or trailing "/"')
          .default('edge-sensor')
          .describe('The first level(s) of every topic: `{topicPrefix}/{device.id}/readings`, `/status` and `/dropped`. 1-200 characters; no `#`, `+`, whitespace, control characters, or leading or trailing `/`.'),
        protocolVersion: z.union([z.literal(5), z.literal(4)], { error: 'expected 5 (MQTT 5) or 4 (MQTT 3.1.1)' }).default(5).describe('`5` (MQTT 5), or `4` (MQTT 3.1.1) for brokers without MQTT 5. MQTT 3.1.1 cannot report a refusal: a publish the broker denies looks delivered.'),
        clientId: printableText(128).min(1).optional().meta({ description: 'The MQTT client id.', defaultText: '`edge-sensor-{device.id}`' }),
        keepaliveSec: int(0, 65535).default(30).describe('MQTT keepalive: a dead link is noticed within 1.5 times this (0: none).'),
        connectTimeoutMs: int(100, 600_000).default(10_000).describe("How long a connection attempt waits for the broker's CONNACK."),
        sessionExpirySec: int(0, 0xffffffff).default(3600).describe("MQTT 5 session expiry: how long the broker keeps the device's session after a disconnect, so that a reconnect resumes it (0: a clean start each time)."),
        /** MQTT 5 topic alias for the readings and status topics, when the broker offers aliases */
        topicAlias: z.boolean().default(true).describe('MQTT 5 topic aliases for the readings and status topics, when the broker offers them: the topic is sent once per connection, then a 2-byte alias.'),
        username: printableText(1024).min(1).optional().describe('User name for the broker; needed for a password under MQTT 3.1.1 (`protocolVersion: 4`), which sends a password only with a user name.'),
        // The password itself never sits in this file: it would be printed by check-config --print,
        // copied into backups and support tickets. It comes from a file or the environment.
        passwordFile: filePath().optional().describe('A file holding the broker password, read at start (a final newline is not part of it; at most 64 KiB); see [security](security.md).'),
        passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected the name of an environment variable, e.g. EDGE_SENSOR_MQTT_PASSWORD').optional().describe('Or the name of an environment variable holding the password, e.g. `EDGE_SENSOR_MQTT_PASSWORD`; not together with `passwordFile`.'),
        password: z.never({ error: 'a password is never read from the config file (got one, not shown): put it in a file named by mqtt.passwordFile or an environment variable named by mqtt.passwordEnv' }).optional().describe('Refused: a password is never read from the config file. Use `passwordFile` or `passwordEnv`.'),
        tls: z
          .strictObject({
            /** PEM file of the CA(s) that signed the broker's certificate; default: the system's trusted CAs */
            caFile: filePath().optional().meta({ description: "PEM file of the CA(s) that signed the broker's certificate.", defaultText: "the system's trusted CAs" }),
            /** PEM client certificate and its unencrypted key, for brokers that require one (mutual TLS) */
            certFile: filePath().optional().describe('Client certificate (PEM), for brokers that require one; needs `keyFile`.'),
            keyFile: filePath().optional().describe("The client certificate's unencrypted key (PEM); needs `certFile`."),
            /** the name expected in the broker's certificate (and sent as SNI) when it differs from the URL's host */
            serverName: printableText(253).min(1).optional().meta({ description: "The name the broker's certificate must carry (also sent as TLS SNI), when it differs from the URL's host; `mqtts://` only.", defaultText: "the URL's host" }),
            insecureSkipVerify: z.boolean().default(false).describe('`true` accepts any broker certificate and logs a warning at every start. For a lab only.'),
          })
          .prefault({})
          .describe('TLS, for `mqtts://` and `wss://` URLs only (set with another URL it is refused rather than sending in clear). The broker certificate is always verified unless `insecureSkipVerify`.'),
      })
      .prefault({})
      .describe('The broker and the connection to it.'),
    sync: z
      .strictObject({
        batchSize: int(1, 100_000).default(500).describe("Readings per MQTT message at most; a batch is split further to stay under the broker's Maximum Packet Size."),
        maxInFlight: int(1, 1000).default(8).describe("Batches awaiting their PUBACK at once, never more than the broker's Receive Maximum − 1. A fault resends at most `maxInFlight` × `batchSize` readings."),
        intervalMs: int(10, 3_600_000).default(1000).describe('The shortest time between two sync rounds. A round starts when readings are committed (and at least every 30 s or this interval when idle, for rows written by other means). Longer: fewer rounds (less CPU and fewer SD-card writes), readings reach the broker later.'),
        ackWriteDelayMs: int(0, 600_000).default(10_000).describe('Rows the broker acknowledged are marked synced in the next append\'s transaction (no fsync of their own); with no append within this time, in one of their own. A crash before that write resends them (duplicates, never a loss; see [durability](durability.md#acknowledged-rows)). `sync`, SIGTERM and shutdown write them at once.'),
        publishTimeoutMs: int(100, 600_000).default(10_000).describe("No PUBACK by then: the batch's outcome is unknown; the daemon reconnects and its rows are sent again."),
        shutdownTimeoutMs: int(0, 600_000).default(5000).describe('On SIGTERM, how long to wait for the PUBACKs of batches in flight.'),
        endToEnd: z.boolean().default(false).describe("Keep each synced reading until the collector confirms it stored it (its retained `{topicPrefix}/{device.id}/stored` message), and send again what it asks for; see [durability](durability.md#end-to-end). Off: nothing is subscribed, the guarantee ends at the broker's PUBACK."),
        resendPerMinute: int(1, 10_000_000).default(30_000).describe('With `endToEnd`: readings sent again on the collector\'s request per minute at most (a flood of forged requests cannot saturate the uplink); the rest of a request waits for the next minute.'),
        compression: z.enum(['none', 'gzip']).default('none').describe('`gzip` compresses each readings payload (MQTT 5 content type `application/json+gzip`; under MQTT 3.1.1 consumers must know it from configuration).'),
        retry: z
          .strictObject({
            initialDelayMs: int(1, 3_600_000).default(1000).describe('Every delay is random between this and a cap that doubles per attempt (2×, 4×, … this); the first reconnect after a lost connection waits a random 0 to this.'),
            maxDelayMs: int(1, 86_400_000).default(300_000).describe("The doubling cap's limit; at least `initialDelayMs`."),
            maxAttempts: int(1, 1_000_000).default(10).describe('Refusals of a batch (MQTT 5 reason code ≥ 0x80) before its rows are parked: kept, left out of sync until `edge-sensor requeue`. Connection failures never park.'),
          })
          .prefault({})
          .describe('Backoff for reconnects and for batches the broker refused.'),
      })
      .prefault({})
      .describe('Sending pending readings.'),
    status: z
      .strictObject({
        intervalMs: int(1000, 86_400_000).default(30_000).describe('Period of the retained status message (also sent at every connect).'),
      })
      .prefault({})
      .describe("The device's status topic."),
    state: z
      .strictObject({
        // off unless asked for: about 150 bytes a sample on the uplink, several times what the readings cost gzipped
        enabled: z.boolean().optional().meta({ description: 'Publish the retained `{topicPrefix}/{device.id}/state` message: the latest value of every sensor, right after each sample, whatever the backlog. `homeassistant` needs it.', defaultText: 'as `homeassistant.enabled`' }),
        minIntervalMs: int(100, 3_600_000).default(1000).describe('At most one state message per this many ms: samples in between are coalesced (the newest value of each sensor wins).'),
      })
      .prefault({})
      .describe('Live values for dashboards; see [MQTT API](mqtt-api.md#live-values). They never mark anything synced: readings are delivered by the batch path only.'),
    homeassistant: z
      .strictObject({
        enabled: z.boolean().default(false).describe('Announce the device, its sensors, its diagnostics (and with `control.mqtt`, a sync button and an online switch) to Home Assistant by MQTT discovery; see [Home Assistant](home-assistant.md).'),
        discoveryPrefix: z
          .string()
          .regex(/^[^#+\s]{1,200}$/, 'expected a topic prefix of 1-200 characters without wildcards or spaces')
          .refine((s) => !UNPRINTABLE.test(s) && !s.startsWith('/') && !s.endsWith('/'), 'expected no control characters and no leading or trailing "/"')
          .default('homeassistant')
          .describe("Home Assistant's discovery prefix (its MQTT integration's setting); discovery goes to `{discoveryPrefix}/{component}/{device.id}/{object}/config`, and `{discoveryPrefix}/status` = `online` (its birth message) makes the device announce itself again."),
      })
      .prefault({})
      .describe('Home Assistant MQTT discovery.'),
    retention: z
      .strictObject({
        syncedMaxAge: duration('retention.syncedMaxAge', 0, 10 * YEAR_MS).default(3 * 86_400_000).describe('Synced rows are deleted once they were synced this long ago (at most 10 years), and with `sync.endToEnd` only once the collector confirmed them stored. Pending and parked rows are never deleted by age.'),
        pruneIntervalMs: int(1000, 86_400_000).default(600_000).describe('How often the deletion by age runs (each pass is a commit: every 10 minutes writes fewer pages than every minute, and keeps at most 10 minutes more).'),
        syncLogMaxRows: int(100, 10_000_000).default(10_000).describe('Newest `sync_log` events kept.'),
        /** the database file plus its WAL never grows past this (0: no cap) */
        maxDatabaseBytes: size('retention.maxDatabaseBytes', 1_000_000, 2 ** 50).default(1024 ** 3).describe('Cap for the database file plus its WAL (0: none, else at least 1 MB). Past it synced rows are deleted first (oldest first, whatever their age), then `onFull` decides.'),
        /** keep at least this much free on the database's file system (0: no watermark) */
        minFreeDiskBytes: size('retention.minFreeDiskBytes', 1, 2 ** 50).default(100 * 1024 ** 2).describe("Free space to keep on the database's file system, but never more than a tenth of that file system (0: none)."),
        /** full with only unsynced rows left: drop the oldest (default) or stop sampling; both are counted */
        onFull: z.enum(['drop-oldest', 'stop-sampling']).default('drop-oldest').describe('At the cap or watermark with only unsynced rows left: `drop-oldest` deletes the oldest of them (never those in flight), `stop-sampling` stores no new readings until there is room. Both are counted and announced on `/dropped`.'),
        checkIntervalMs: int(100, 3_600_000).default(5000).describe('How often the cap and the watermark are checked besides after every write (cheap: a stat of the database and its WAL, a statfs).'),
      })
      .prefault({})
      .describe('Keeping the disk bounded; see [durability](durability.md#bounded-disk).'),
    control: z
      .strictObject({
        socketPath: filePath().optional().meta({ description: 'The unix socket (mode 0660, no network port) through which `offline`, `online`, `sync` and `requeue` reach the running daemon; at most 107 bytes; a folder every user may write to is refused.', defaultText: '`{database.path}.sock`' }),
        mqtt: z
          .strictObject({
            enabled: z.boolean().default(false).describe('Accept commands on `{topicPrefix}/{device.id}/cmd/{verb}` (`sync`, `offline`, `online`, `requeue`, `status`, `record`, `ping`; `mode` for Home Assistant\'s switch), answered on the MQTT 5 response topic; while offline by choice the connection stays up for commands only. Restrict who may publish there with the broker\'s ACL: see [Home Assistant](home-assistant.md#who-may-send-commands).'),
            burst: int(1, 1000).default(10).describe('Commands accepted at once; beyond it one per `60000 / perMinute` ms, the rest refused with an error reply.'),
            perMinute: int(1, 6000).default(30).describe('Commands accepted per minute once the burst is used.'),
          })
          .prefault({})
          .describe('Remote commands over MQTT; see [MQTT API](mqtt-api.md#commands).'),
      })
      .prefault({})
      .describe("The CLI's channel to the running daemon, and remote commands over MQTT."),
    host: z
      .strictObject({
        procRoot: filePath().default('/proc').describe('Where `cpu-load` and `memory` read `/proc` (tests point it at a fake tree).'),
        sysRoot: filePath().default('/sys').describe('Where `cpu-temperature` and the Raspberry Pi sensors read `/sys` (tests point it at a fake tree).'),
      })
      .prefault({})
      .describe('Where the host sensors read.'),
    // prefault: the default list goes through the sensor schema, so its sensors get their own defaults (count, min, max...)
    sensors: z.array(sensorSchema).prefault(defaultSensors as never).describe('The sensors to sample, each with a `type` (below); `[]` for none.'),
    log: z
      .strictObject({
        level: z.enum(LOG_LEVELS).default('info').describe('pino log level. The `LOG_LEVEL` environment variable overrides it (a wrong value there is a config error too).'),
      })
      .prefault({})
      .describe('Logs: JSON lines on stdout.'),
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
    if (tls && Object.keys(tls).length > 0 && !usesTls(url)) {
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
  // Home Assistant's entities read their values from the state message
  if (obj(root?.homeassistant)?.enabled === true && obj(root?.state)?.enabled === false) {
    out.push({ path: ['state', 'enabled'], message: 'expected the state message on (or unset): homeassistant.enabled reads every value from it' });
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
export { duration, size, int };
