import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EmbeddedBroker } from '../../src/demo/embedded-broker.js';
import { VERSION } from '../../src/version.js';
import { freePort, Mosquitto, portOpen } from '../helpers/mosquitto.js';
import { mosquittoVersion, startSecureMosquitto } from '../helpers/secure-mosquitto.js';
import { sleep, track, waitFor } from '../helpers/process.js';

/** How the daemon and the subscriber reach a running broker. */
export interface RunningBroker {
  version: string;
  /** where the daemon connects (through the suite's proxy) */
  url: string;
  /** where the subscriber connects */
  subscriberUrl: string;
  /** mqtt section additions for the daemon (credentials, TLS) */
  mqtt?: Record<string, unknown>;
  subscriber?: { username?: string; password?: string };
  /** what the broker's setup adds to the notes */
  notes?: string[];
  stop(): Promise<void>;
}

export interface BrokerKind {
  /** the implementation, for the table and for counting distinct implementations */
  implementation: string;
  /** the row's label beside the implementation (e.g. "TLS, client certificate, password") */
  variant?: string;
  /** why it cannot run on this machine, or undefined when it can */
  unavailable(): string | undefined;
  start(dir: string, topicRoot: string): Promise<RunningBroker>;
}

const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** A child process in its own process group, so that stopping it also stops what it started. */
function spawnGroup(cmd: string, args: string[], env: NodeJS.ProcessEnv, logFile: string): { proc: ChildProcess; log: () => string } {
  const proc = track(spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true }));
  let text = '';
  proc.stdout!.on('data', (d) => (text += d));
  proc.stderr!.on('data', (d) => (text += d));
  proc.on('exit', () => writeFileSync(logFile, text));
  return { proc, log: () => text };
}

async function stopGroup(proc: ChildProcess, graceMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    process.kill(-proc.pid!, 'SIGTERM');
  } catch {
    return;
  }
  await Promise.race([exited, sleep(graceMs)]);
  if (proc.exitCode === null && proc.signalCode === null) {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

// The test helper lifts Mosquitto's queue and in-flight limits (so that the broker is never the
// weak link of a fault test); here the broker runs with its shipped defaults, as people run it.
const MOSQUITTO_DEFAULT_LIMITS = ['max_inflight_messages 20', 'max_queued_messages 1000'];

export const mosquitto: BrokerKind = {
  implementation: 'Mosquitto',
  unavailable: () => (has('mosquitto') ? undefined : 'mosquitto is not installed'),
  async start(dir) {
    const m = await Mosquitto.start(join(dir, 'mosquitto'), MOSQUITTO_DEFAULT_LIMITS);
    return { version: mosquittoVersion(), url: m.url, subscriberUrl: m.url, stop: () => m.stop() };
  },
};

export const mosquittoSecure: BrokerKind = {
  implementation: 'Mosquitto',
  variant: 'TLS with client certificate, password file, ACL',
  unavailable: () => (has('mosquitto') && has('openssl') ? undefined : 'mosquitto or openssl is not installed'),
  async start(dir, topicRoot) {
    const b = await startSecureMosquitto(join(dir, 'secure'), topicRoot, MOSQUITTO_DEFAULT_LIMITS);
    const pwFile = join(dir, 'secure', 'dev.pw');
    writeFileSync(pwFile, b.passwords.dev, { mode: 0o600 });
    return {
      version: b.version,
      url: `mqtts://127.0.0.1:${b.ports.tls}`,
      subscriberUrl: b.mosq.url,
      mqtt: { username: 'dev', passwordFile: pwFile, tls: { caFile: b.certs.ca, certFile: b.certs.clientCert, keyFile: b.certs.clientKey } },
      subscriber: { username: 'reader', password: b.passwords.reader },
      stop: () => b.mosq.stop(),
    };
  },
};

export const nats: BrokerKind = {
  implementation: 'NATS server',
  unavailable: () => (has('nats-server') ? undefined : 'nats-server is not installed (apt-get install nats-server)'),
  async start(dir) {
    const d = join(dir, 'nats');
    mkdirSync(join(d, 'js'), { recursive: true });
    const [client, mqtt] = [await freePort(), await freePort()];
    // MQTT in NATS needs JetStream (sessions and QoS 1 live in streams) and a server name
    writeFileSync(join(d, 'nats.conf'), `listen: 127.0.0.1:${client}\nserver_name: es_interop\njetstream { store_dir: "${d}/js" }\nmqtt { listen: 127.0.0.1:${mqtt} }\n`);
    const { proc, log } = spawnGroup('nats-server', ['-c', join(d, 'nats.conf')], {}, join(d, 'nats.log'));
    await waitFor(() => portOpen(mqtt), 20_000, `nats-server MQTT port: ${log()}`);
    const version = /v(\d+\.\d+\.\d+)/.exec(execFileSync('nats-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
    const url = `mqtt://127.0.0.1:${mqtt}`;
    return { version, url, subscriberUrl: url, stop: () => stopGroup(proc, 5000) };
  },
};

const RABBIT_HOME = '/usr/lib/rabbitmq';

function rabbitVersion(): string | undefined {
  if (!existsSync(join(RABBIT_HOME, 'lib'))) return undefined;
  const dir = readdirSync(join(RABBIT_HOME, 'lib')).find((f) => f.startsWith('rabbitmq_server-'));
  return dir?.slice('rabbitmq_server-'.length);
}

export const rabbitmq: BrokerKind = {
  implementation: 'RabbitMQ',
  variant: 'MQTT plugin',
  unavailable() {
    const v = rabbitVersion();
    if (!v || !existsSync(join(RABBIT_HOME, 'bin', 'rabbitmq-server'))) return 'RabbitMQ is not installed';
    if (!existsSync(join(RABBIT_HOME, 'lib', `rabbitmq_server-${v}`, 'plugins', `rabbitmq_mqtt-${v}`))) return 'the rabbitmq_mqtt plugin is not installed';
    return undefined;
  },
  async start(dir) {
    // A private node: its own name, ports, database, plugins file and cookie. The machine's
    // shared node (rabbit@localhost on 5672) is not touched: enabling the plugin there would
    // change a service others use, and its MQTT default port 1883 belongs to Mosquitto.
    const d = join(dir, 'rabbitmq');
    mkdirSync(d, { recursive: true });
    const [amqp, mqtt, dist] = [await freePort(), await freePort(), await freePort()];
    writeFileSync(join(d, 'env.conf'), '');
    writeFileSync(join(d, 'enabled_plugins'), '[rabbitmq_mqtt].\n');
    writeFileSync(
      join(d, 'rabbitmq.conf'),
      [`listeners.tcp.default = 127.0.0.1:${amqp}`, `mqtt.listeners.tcp.default = 127.0.0.1:${mqtt}`, 'mqtt.allow_anonymous = true', 'loopback_users = none', ''].join('\n'),
    );
    const env = {
      HOME: d, // the Erlang cookie is made here
      RABBITMQ_CONF_ENV_FILE: join(d, 'env.conf'), // not /etc/rabbitmq/rabbitmq-env.conf, which names the shared node
      RABBITMQ_NODENAME: `es-interop-${process.pid}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(amqp),
      RABBITMQ_DIST_PORT: String(dist),
      RABBITMQ_MNESIA_BASE: join(d, 'mnesia'),
      RABBITMQ_LOG_BASE: join(d, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(d, 'enabled_plugins'),
      RABBITMQ_CONFIG_FILE: join(d, 'rabbitmq'),
      RABBITMQ_PID_FILE: join(d, 'pid'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    const { proc, log } = spawnGroup(join(RABBIT_HOME, 'bin', 'rabbitmq-server'), [], env, join(d, 'startup.log'));
    try {
      await waitFor(() => portOpen(mqtt) || proc.exitCode !== null, 90_000, 'RabbitMQ private node', 250);
      if (proc.exitCode !== null) throw new Error(`rabbitmq-server exited ${proc.exitCode}: ${log().slice(-500)}`);
    } catch (err) {
      await stopGroup(proc, 15_000);
      throw err;
    }
    const url = `mqtt://127.0.0.1:${mqtt}`;
    return { version: rabbitVersion()!, url, subscriberUrl: url, notes: ['private node'], stop: () => stopGroup(proc, 30_000) };
  },
};

export const embedded: BrokerKind = {
  implementation: 'edge-sensor embedded broker',
  unavailable: () => undefined,
  async start() {
    const b = await new EmbeddedBroker({ receiveMaximum: 50, topicAliasMaximum: 10 }).listen();
    return { version: VERSION, url: b.url, subscriberUrl: b.url, notes: ['in-process, no persistence'], stop: () => b.close() };
  },
};
