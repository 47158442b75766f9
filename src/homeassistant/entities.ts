import { createHash } from 'node:crypto';
import type { SensorConfig } from '../config/schema.js';
import { IIO_CHANNELS } from '../sensors/sysfs/iio.js';
import { THROTTLED_FLAGS } from '../sensors/sysfs/pi-throttled.js';
import { VERSION } from '../version.js';

// Home Assistant MQTT discovery, field by field as documented at
// https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery and the sensor, button and
// switch pages of the MQTT integration. Full key names only (no abbreviations): easier to read
// in a broker's retained messages, and a discovery message is sent rarely.

export interface DiscoveryContext {
  deviceId: string;
  discoveryPrefix: string;
  topics: { state: string; status: string };
  /** `{prefix}/{device}/cmd/`: with control.mqtt, the button and the switch publish below it */
  commandBase?: string;
}

/** One retained discovery message: its topic and its JSON body. */
export interface DiscoveryMessage {
  topic: string;
  config: Record<string, unknown>;
}

/** A reading as Home Assistant gets to know it: its name in the state message and how to show it. */
export interface ReadingKind {
  name: string;
  unit: string | null;
  deviceClass?: string;
  /** `measurement` for values that go up and down; omitted for flags and bitmasks */
  stateClass?: 'measurement';
  icon?: string;
  diagnostic?: boolean;
}

// the units Home Assistant accepts for each device class we use (a device class with another unit is refused)
const CLASS_BY_UNIT: Record<string, string> = { '°C': 'temperature', '°F': 'temperature', K: 'temperature', hPa: 'pressure', kPa: 'pressure', Pa: 'pressure', mbar: 'pressure', bar: 'pressure', lx: 'illuminance', B: 'data_size', kB: 'data_size', MB: 'data_size', GB: 'data_size' };

function byUnit(name: string, unit: string | null, icon?: string): ReadingKind {
  const deviceClass = unit ? CLASS_BY_UNIT[unit] : undefined;
  return { name, unit, deviceClass, stateClass: 'measurement', ...(deviceClass ? {} : icon ? { icon } : {}) };
}

/**
 * The readings a configured sensor gives and how each is shown. `names` true: the reading names are
 * all known from the config; false: more appear while it runs (DS18B20 or IIO found by looking),
 * announced as they are first seen, through `kindOf`.
 */
export function readingKinds(s: SensorConfig): { kinds: ReadingKind[]; complete: boolean } {
  switch (s.type) {
    case 'simulated':
      return { kinds: [byUnit(s.name, s.unit ?? null, 'mdi:chart-bell-curve')], complete: true };
    case 'cpu-temperature':
      return { kinds: [byUnit(s.name, s.unit ?? '°C')], complete: true };
    case 'cpu-load':
      return { kinds: [byUnit(s.name, s.unit ?? '%', 'mdi:cpu-64-bit')], complete: true };
    case 'memory':
      return { kinds: [byUnit(s.name, s.unit ?? (s.measure === 'used-percent' ? '%' : 'B'), 'mdi:memory')], complete: true };
    case 'disk':
      return { kinds: [byUnit(s.name, s.unit ?? (s.measure === 'used-percent' ? '%' : 'B'), 'mdi:harddisk')], complete: true };
    case 'ds18b20':
      return { kinds: s.ids.map((id) => byUnit(s.names[id] ?? `${s.name}.${id}`, s.unit ?? '°C')), complete: s.ids.length > 0 };
    case 'iio': {
      const channels = s.channels ?? [];
      return { kinds: channels.map((c) => iioKind(s.names[c] ?? `${s.name}.${c}`, c)), complete: s.channels !== undefined };
    }
    case 'pi-throttled': {
      const kinds: ReadingKind[] = [];
      if (s.report !== 'flags') kinds.push({ name: s.name, unit: null, icon: 'mdi:flash-alert', diagnostic: true });
      if (s.report !== 'bitmask') for (const [, flag] of THROTTLED_FLAGS) kinds.push({ name: `${s.name}.${flag}`, unit: null, icon: 'mdi:flash-alert', diagnostic: true });
      return { kinds, complete: true };
    }
  }
}

function iioKind(name: string, channel: keyof typeof IIO_CHANNELS): ReadingKind {
  const unit = IIO_CHANNELS[channel].unit;
  return channel === 'humidity' ? { name, unit, deviceClass: 'humidity', stateClass: 'measurement' } : byUnit(name, unit);
}

/** A reading first seen while running: shown as its sensor's kind, if it belongs to a configured one. */
export function kindOf(sensors: readonly SensorConfig[], name: string, unit: string | null): ReadingKind | undefined {
  for (const s of sensors) {
    if (s.type === 'ds18b20' && (name.startsWith(`${s.name}.`) || Object.values(s.names).includes(name))) return byUnit(name, unit);
    if (s.type === 'iio') {
      const channel = (Object.keys(IIO_CHANNELS) as Array<keyof typeof IIO_CHANNELS>).find((c) => name === (s.names[c] ?? `${s.name}.${c}`));
      if (channel) return iioKind(name, channel);
    }
  }
  return undefined;
}

/** A Jinja string literal for a name (sensor names are `[A-Za-z0-9_.:-]`, but a template is code: quote anyway). */
export function jinjaString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * A topic level Home Assistant accepts as node_id or object_id (`[a-zA-Z0-9_-]`). A name that had
 * to change gets a hash of the original, so that `a.b` and `a:b` stay two entities.
 */
export function objectId(s: string): string {
  const safe = s.replace(/[^a-zA-Z0-9_-]/g, '_');
  return safe === s ? s : `${safe}_${createHash('sha256').update(s).digest('hex').slice(0, 8)}`;
}

function common(ctx: DiscoveryContext, key: string) {
  return {
    unique_id: `edge-sensor_${ctx.deviceId}_${key}`,
    device: { identifiers: [`edge-sensor_${ctx.deviceId}`], name: ctx.deviceId, model: 'edge-sensor', manufacturer: 'edge-sensor', sw_version: VERSION },
    origin: { name: 'edge-sensor', sw_version: VERSION },
  };
}

/** Available while the status says the device is online (its last will says offline). */
function availability(ctx: DiscoveryContext, template = '{{ value_json.state }}') {
  return { availability: [{ topic: ctx.topics.status, value_template: template, payload_available: 'online', payload_not_available: 'offline' }] };
}

function topicOf(ctx: DiscoveryContext, component: string, key: string): string {
  return `${ctx.discoveryPrefix}/${component}/${objectId(ctx.deviceId)}/${objectId(key)}/config`;
}

/** The `sensor` entity of one reading, its value taken from the retained state message. */
export function readingEntity(ctx: DiscoveryContext, k: ReadingKind): DiscoveryMessage {
  return {
    topic: topicOf(ctx, 'sensor', k.name),
    config: {
      name: k.name,
      ...common(ctx, k.name),
      state_topic: ctx.topics.state,
      value_template: `{{ value_json[${jinjaString(k.name)}].value }}`,
      ...(k.unit ? { unit_of_measurement: k.unit } : {}),
      ...(k.deviceClass ? { device_class: k.deviceClass } : {}),
      ...(k.stateClass ? { state_class: k.stateClass } : {}),
      ...(k.icon ? { icon: k.icon } : {}),
      ...(k.diagnostic ? { entity_category: 'diagnostic' } : {}),
      ...availability(ctx),
    },
  };
}

// `is defined`: the last will carries only the state, and a missing key must not be a template error
const statusField = (field: string, expr = `value_json.${field}`) => `{{ ${expr} if value_json.${field} is defined and value_json.${field} is not none else None }}`;

/** The device's own figures from its status topic, as diagnostic entities. */
export function diagnosticEntities(ctx: DiscoveryContext): DiscoveryMessage[] {
  const d = (key: string, name: string, extra: Record<string, unknown>): DiscoveryMessage => ({
    topic: topicOf(ctx, 'sensor', key),
    config: { name, ...common(ctx, key), state_topic: ctx.topics.status, entity_category: 'diagnostic', ...extra, ...availability(ctx) },
  });
  return [
    d('pending', 'Pending readings', { value_template: statusField('pending'), state_class: 'measurement', unit_of_measurement: 'readings', icon: 'mdi:tray-full' }),
    d('oldest_pending_age', 'Oldest pending age', { value_template: statusField('oldestPendingAgeMs', '(value_json.oldestPendingAgeMs / 1000) | round(0)'), device_class: 'duration', unit_of_measurement: 's', state_class: 'measurement' }),
    d('lost_total', 'Lost readings', { value_template: statusField('lostTotal'), state_class: 'total_increasing', unit_of_measurement: 'readings', icon: 'mdi:delete-alert' }),
    d('last_ack', 'Last acknowledgement', { value_template: statusField('lastAckAt'), device_class: 'timestamp' }),
  ];
}

/** With remote commands: a button that forces a sync round, a switch for online / offline by choice. */
export function commandEntities(ctx: DiscoveryContext): DiscoveryMessage[] {
  if (!ctx.commandBase) return [];
  return [
    {
      topic: topicOf(ctx, 'button', 'sync'),
      config: { name: 'Sync now', ...common(ctx, 'sync'), command_topic: `${ctx.commandBase}sync`, payload_press: 'PRESS', icon: 'mdi:cloud-upload', ...availability(ctx) },
    },
    {
      topic: topicOf(ctx, 'switch', 'online'),
      config: {
        name: 'Online',
        ...common(ctx, 'online'),
        command_topic: `${ctx.commandBase}mode`,
        payload_on: 'online',
        payload_off: 'offline',
        state_topic: ctx.topics.status,
        value_template: '{{ value_json.mode if value_json.mode is defined else None }}',
        state_on: 'online',
        state_off: 'offline-by-choice',
        entity_category: 'config',
        icon: 'mdi:cloud-check',
        // offline by choice keeps the connection for commands: the switch must stay usable then
        ...availability(ctx, "{{ 'online' if value_json.state == 'online' or value_json.mode == 'offline-by-choice' else 'offline' }}"),
      },
    },
  ];
}
