import type { LinkMessage } from '../mqtt/link.js';
import type { Logger } from '../util/logger.js';
import { RateLimiter } from '../util/rate-limit.js';
import { parseCommand, type ControlResponse } from './protocol.js';
import type { ControlHandlers } from './server.js';

export interface CommandLink {
  publish(topic: string, payload: string, opts: { qos?: 0 | 1; properties?: Record<string, unknown> }, timeoutMs: number): Promise<void>;
  subscribe(filter: string, qos: 0 | 1): void;
  on(event: 'message', fn: (m: LinkMessage) => void): unknown;
}

export interface MqttCommandsOptions {
  /** `{prefix}/{device}/cmd/+` */
  filter: string;
  burst: number;
  perMinute: number;
  timeoutMs: number;
  /** a `sync` without its own timeoutMs waits this long for its round (a requester waits a few seconds at most) */
  syncTimeoutMs: number;
}

/** a command's arguments are a few fields: anything larger is refused unread */
const MAX_PAYLOAD_BYTES = 64 * 1024;
/** refusals of a flood are written to sync_log as one event per this period */
const FLOOD_REPORT_MS = 60_000;

/**
 * Remote commands: `{prefix}/{device}/cmd/{verb}` with a JSON object of arguments (or nothing),
 * run by the same handlers as the control socket, answered on the MQTT 5 Response Topic with the
 * request's Correlation Data: `{"ok":true,"verb":…,"result":…}` or `{"ok":false,"verb":…,"error":…}`.
 * Home Assistant's button (`PRESS`) and switch (`online`/`offline` on `cmd/mode`) send plain words
 * and no response topic: they run, unanswered. Every command is written to sync_log; past the rate
 * limit they are refused (one sync_log event per minute for a flood). Nothing a client sends can
 * make this throw.
 */
export class MqttCommands {
  private readonly limiter: RateLimiter;
  /** answers to refused commands are limited too: a flood must not turn into a flood of replies */
  private readonly refusalReplies: RateLimiter;
  private refused = 0;
  private floodTimer?: NodeJS.Timeout;
  private readonly base: string;
  /** commands handled (answered or not), for tests and status */
  handled = 0;
  private stopped = false;

  constructor(
    private readonly link: CommandLink,
    private readonly handlers: ControlHandlers,
    private readonly store: { logEvent(type: string, details: Record<string, unknown>): void },
    private readonly opts: MqttCommandsOptions,
    private readonly log: Logger,
    now: () => number = Date.now,
  ) {
    this.limiter = new RateLimiter(opts.burst, 60_000 / opts.perMinute, now);
    this.refusalReplies = new RateLimiter(5, 1000, now);
    this.base = opts.filter.slice(0, -1);
  }

  start(): void {
    this.link.on('message', (m) => this.onMessage(m));
    this.link.subscribe(this.opts.filter, 1);
  }

  private onMessage(m: LinkMessage): void {
    // after stop() the daemon is closing its database: a late command is not run
    if (this.stopped || !m.topic.startsWith(this.base)) return;
    const verb = m.topic.slice(this.base.length);
    if (m.packet.retain) {
      // replayed from the broker's retained store at subscription: it would run again at every
      // connection (an `offline` for ever). Published live it ran once, as any command.
      this.log.warn({ verb: verb.slice(0, 64) }, 'retained remote command ignored (clear it: mosquitto_pub -r -n -t TOPIC)');
      this.logEvent({ verb: verb.slice(0, 64), ok: false, error: 'retained command ignored', replied: false });
      return;
    }
    const props = m.packet.properties;
    const reply = props?.responseTopic ? { topic: props.responseTopic, correlationData: props.correlationData } : undefined;
    void this.handle(verb, m.payload, reply).catch((err) => this.log.error({ err, verb: verb.slice(0, 64) }, 'remote command failed unexpectedly'));
  }

  private async handle(verb: string, payload: Buffer, reply: { topic: string; correlationData?: Buffer } | undefined): Promise<void> {
    const shownVerb = verb.slice(0, 64);
    if (!this.limiter.take()) {
      this.noteRefused();
      if (reply && this.refusalReplies.take()) await this.answer(reply, { ok: false, error: `rate limited: at most ${this.opts.burst} commands at once and ${this.opts.perMinute} a minute (control.mqtt)` }, shownVerb);
      return;
    }
    this.handled++;
    const req = this.parse(verb, payload);
    let res: ControlResponse;
    if ('error' in req) {
      res = { ok: false, error: req.error };
    } else {
      try {
        const handler = this.handlers[req.cmd] as (args: unknown) => unknown;
        res = { ok: true, result: await handler(req.args) };
      } catch (err) {
        res = { ok: false, error: (err as Error)?.message ?? String(err) };
      }
    }
    const ran = 'cmd' in req && req.cmd !== verb ? { ran: req.cmd } : {}; // the switch's `mode` runs online or offline
    this.logEvent({ verb: shownVerb, ...ran, ok: res.ok, ...(res.error ? { error: res.error.slice(0, 200) } : {}), replied: reply !== undefined });
    if (reply) return this.answer(reply, res, shownVerb);
    // Home Assistant's button and switch, or MQTT 3.1.1: nobody to answer
    if (res.ok) this.log.info({ verb: shownVerb }, 'remote command run (no response topic: unanswered)');
    else this.log.warn({ verb: shownVerb, error: res.error }, 'remote command refused (no response topic: nobody told)');
  }

  private logEvent(details: Record<string, unknown>): void {
    try {
      this.store.logEvent('remote_command', details);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'remote command not written to sync_log');
    }
  }

  /** The arguments: a JSON object, nothing, or Home Assistant's plain words. */
  private parse(verb: string, payload: Buffer): ReturnType<typeof parseCommand> {
    if (payload.length > MAX_PAYLOAD_BYTES) return { error: `payload too large: at most ${MAX_PAYLOAD_BYTES} bytes` };
    // a zero-length message is how a retained message is cleared: clearing a retained command must not run it
    if (payload.length === 0) return { error: 'empty payload (it clears a retained message): send {} for a command without arguments' };
    const text = payload.toString('utf8').trim();
    if (verb === 'mode') {
      // the switch: `online` / `offline` (or ON / OFF), one verb for both states
      const word = text.toLowerCase();
      if (word === 'online' || word === 'on') return parseCommand('online', undefined);
      if (word === 'offline' || word === 'off') return parseCommand('offline', undefined);
      return { error: 'mode expects the payload online or offline' };
    }
    let args: unknown;
    if (text === '' || text === 'PRESS') args = undefined; // whitespace, or PRESS: Home Assistant's button
    else {
      try {
        args = JSON.parse(text);
      } catch {
        return { error: 'malformed payload: expected a JSON object of arguments, or nothing' };
      }
      if (args === null || typeof args !== 'object' || Array.isArray(args)) return { error: 'malformed payload: expected a JSON object of arguments, or nothing' };
    }
    const parsed = parseCommand(verb, args);
    // a requester waits a few seconds: a sync round under a backlog answers within its own time
    if (!('error' in parsed) && parsed.cmd === 'sync') {
      const a = parsed.args as { timeoutMs?: number };
      return { cmd: 'sync', args: { ...a, timeoutMs: a.timeoutMs ?? this.opts.syncTimeoutMs } };
    }
    return parsed;
  }

  private async answer(reply: { topic: string; correlationData?: Buffer }, res: ControlResponse, verb: string): Promise<void> {
    let text: string;
    try {
      text = JSON.stringify({ ok: res.ok, verb, ...(res.ok ? { result: res.result } : { error: res.error }) });
    } catch (err) {
      text = JSON.stringify({ ok: false, verb, error: `cannot encode the answer: ${(err as Error).message}` });
    }
    const properties: Record<string, unknown> = { contentType: 'application/json' };
    if (reply.correlationData) properties.correlationData = reply.correlationData;
    try {
      // QoS 0, the live lane: an answer never waits behind a full batch window; a requester
      // that misses it times out as it would for a lost request
      await this.link.publish(reply.topic, text, { qos: 0, properties }, this.opts.timeoutMs);
    } catch (err) {
      this.log.warn({ verb, err: (err as Error).message }, 'remote command answer not sent');
    }
  }

  private noteRefused(): void {
    if (this.refused++ === 0) this.log.warn({ burst: this.opts.burst, perMinute: this.opts.perMinute }, 'remote commands rate limited; refusing until the rate falls');
    this.floodTimer ??= setTimeout(() => this.reportFlood(), FLOOD_REPORT_MS).unref();
  }

  private reportFlood(): void {
    this.floodTimer = undefined;
    const n = this.refused;
    this.refused = 0;
    if (n === 0) return;
    try {
      this.store.logEvent('remote_commands_refused', { count: n, reason: 'rate limited' });
    } catch {
      /* the log line below says the same */
    }
    this.log.warn({ refused: n }, 'remote commands refused by the rate limit');
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.floodTimer);
    this.reportFlood();
  }
}
