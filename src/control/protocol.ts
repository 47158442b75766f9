import { z } from 'zod';

// One request per connection, one JSON line each way. Every request is checked against these
// schemas before anything reads it: a client may send any JSON value (or none).
const noArgs = z.strictObject({}).default({});
export const REQUESTS = {
  ping: noArgs,
  online: noArgs,
  offline: noArgs,
  status: noArgs,
  /** new rows were written beside the daemon (`record`): look for pending rows now */
  nudge: noArgs,
  sync: z.strictObject({ timeoutMs: z.number().int().min(100).max(600_000).optional() }).default({}),
  requeue: z.strictObject({ ids: z.array(z.string().min(1).max(64)).max(100_000).optional() }).default({}),
  // the values themselves are judged by manualReadingProblems (the same rules as the CLI's record)
  record: z.strictObject({ amount: z.unknown(), sensor: z.unknown().optional(), unit: z.unknown().optional(), description: z.unknown().optional() }),
} as const;

export type ControlCommand = keyof typeof REQUESTS;
export type ControlArgs<C extends ControlCommand> = z.output<(typeof REQUESTS)[C]>;

export interface ControlRequest {
  cmd: ControlCommand;
  args?: Record<string, unknown>;
}

export interface ControlResponse {
  ok: boolean;
  result?: unknown;
  error?: string;
}

/** A request line turned into a known command and its checked arguments, or the reason it is refused. */
export function parseRequest(line: string): { cmd: ControlCommand; args: unknown } | { error: string } {
  let req: unknown;
  try {
    req = JSON.parse(line);
  } catch {
    return { error: 'malformed request: expected one JSON object per line' };
  }
  if (req === null || typeof req !== 'object' || Array.isArray(req)) return { error: 'malformed request: expected a JSON object {"cmd": ..., "args": {...}}' };
  const { cmd, args, ...rest } = req as Record<string, unknown>;
  if (Object.keys(rest).length > 0) return { error: `malformed request: unknown field ${JSON.stringify(Object.keys(rest)[0]).slice(0, 80)}` };
  return parseCommand(cmd, args);
}

/** A command name and its arguments (from the socket's request line, or an MQTT command topic and payload), checked. */
export function parseCommand(cmd: unknown, args: unknown): { cmd: ControlCommand; args: unknown } | { error: string } {
  // own names only: "toString" or "__proto__" must not find something inherited
  if (typeof cmd !== 'string' || !Object.hasOwn(REQUESTS, cmd)) {
    return { error: `unknown command ${typeof cmd === 'string' ? JSON.stringify(cmd.slice(0, 40)) : typeof cmd}` };
  }
  const parsed = REQUESTS[cmd as ControlCommand].safeParse(args === undefined ? {} : args);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return { error: `bad arguments for ${cmd}: ${[...i.path].map(String).join('.') || 'args'}: ${i.message}` };
  }
  return { cmd: cmd as ControlCommand, args: parsed.data };
}

/** Where the daemon of this config listens: control.socketPath, or beside its database. */
export function socketPathOf(config: { control: { socketPath?: string }; database: { path: string } }): string {
  return config.control.socketPath ?? `${config.database.path}.sock`;
}

// sockaddr_un.sun_path holds 108 bytes including the terminating NUL
export const MAX_SOCKET_PATH = 107;
