import type { Config } from './config/schema.js';
import type { Logger } from './util/logger.js';
import type { MqttLink } from './mqtt/link.js';
import type { Tick } from './sensors/reading.js';
import type { ControlHandlers } from './control/server.js';
import { commandTopic, type deviceTopics } from './topics.js';
import { LiveState } from './status/live-state.js';
import { Discovery } from './homeassistant/discovery.js';
import { readingKinds } from './homeassistant/entities.js';
import { MqttCommands } from './control/mqtt-commands.js';

export interface RemoteParts {
  link: MqttLink;
  store: { getConfig(key: string): string | undefined; setConfig(key: string, value: string): void; logEvent(type: string, details: Record<string, unknown>): void };
  mode: { readonly offlineByChoice: boolean };
  commands: ControlHandlers;
  topics: ReturnType<typeof deviceTopics>;
}

/**
 * What the daemon shows and answers beyond its batches: the live `state` message, Home Assistant
 * discovery and remote commands over MQTT, each built only when its option is on (off: nothing
 * subscribed, nothing published). The daemon feeds it committed ticks and starts and stops it.
 */
export function buildRemote(config: Config, parts: RemoteParts, log: Logger, now: () => number) {
  const { device, mqtt: m, sync: s, state, homeassistant: ha, control: { mqtt: cm } } = config;
  const { link, store, mode, commands, topics } = parts;
  const expected = config.sensors.flatMap((c) => readingKinds(c).kinds.map((k) => k.name));
  const live = (state.enabled ?? ha.enabled) ? new LiveState(link, { topic: topics.state, minIntervalMs: state.minIntervalMs, timeoutMs: s.publishTimeoutMs, expected }, () => !mode.offlineByChoice, log.child({ module: 'state' }), now) : undefined;
  const commandBase = cm.enabled ? commandTopic(m.topicPrefix, device.id, '') : undefined;
  const discovery = ha.enabled ? new Discovery(link, store, { deviceId: device.id, discoveryPrefix: ha.discoveryPrefix, topics, commandBase }, config.sensors, { timeoutMs: s.publishTimeoutMs, birthDelayMs: 5000 }, log.child({ module: 'homeassistant' })) : undefined;
  // a requester (mosquitto_rr, a fleet tool) waits a few seconds: a sync round answers within 5 s even under a backlog
  const remote = cm.enabled ? new MqttCommands(link, commands, store, { filter: topics.commands, burst: cm.burst, perMinute: cm.perMinute, timeoutMs: s.publishTimeoutMs, syncTimeoutMs: 5000 }, log.child({ module: 'control' }), now) : undefined;
  live?.on('names', (names) => discovery?.seen(names, (n) => live.payload()[n]?.unit ?? null));
  return {
    live,
    discovery,
    remote,
    /** readings committed: their values become the live state */
    written(ticks: readonly Tick[]): void {
      live?.update(ticks);
    },
    /** back online by choice: the state again (the connection may never have dropped) */
    backOnline(): void {
      live?.kick();
    },
    start(): void {
      live?.start();
      discovery?.start();
      remote?.start();
    },
    stop(): void {
      remote?.stop();
      discovery?.stop();
      live?.stop();
    },
  };
}
