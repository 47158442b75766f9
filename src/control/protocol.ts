/** One request per connection, one JSON line each way. */
export interface ControlRequest {
  cmd: 'ping' | 'online' | 'offline' | 'sync' | 'requeue' | 'status';
  args?: Record<string, unknown>;
}

export interface ControlResponse {
  ok: boolean;
  result?: unknown;
  error?: string;
}

/** Where the control socket of a database lives unless configured. */
export function defaultSocketPath(databasePath: string): string {
  return `${databasePath}.sock`;
}

// sockaddr_un.sun_path holds 108 bytes including the terminating NUL
export const MAX_SOCKET_PATH = 107;
