import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { track, waitFor } from './process.js';

export interface NotifyMessage {
  /** arrival, ms since the epoch (same clock as pino's `time`) */
  t: number;
  fields: Record<string, string>;
}

// Node cannot receive unix datagrams: a few lines of python3 stand in for systemd's notify socket.
// Passed fds (systemd-notify's BARRIER=1) are closed at once, as systemd does, so the sender returns.
const LISTENER = `
import array, json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"listening": True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    for level, kind, d in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i"); fds.frombytes(d[: len(d) - len(d) % 4])
            for fd in fds: os.close(fd)
    print(json.dumps({"t": time.time() * 1000, "msg": data.decode("utf-8", "replace")}), flush=True)
`;

/** A fake NOTIFY_SOCKET that records every sd_notify message except barriers. */
export class FakeNotifySocket {
  readonly path: string;
  private proc?: ChildProcess;
  private out = '';

  constructor(dir: string, name = 'notify.sock') {
    this.path = join(dir, name);
  }

  async start(): Promise<this> {
    this.proc = track(spawn('python3', ['-c', LISTENER, this.path], { stdio: ['ignore', 'pipe', 'inherit'] }));
    this.proc.stdout!.on('data', (d) => (this.out += d));
    await waitFor(() => this.out.includes('"listening"'), 10_000, 'the fake notify socket');
    return this;
  }

  messages(): NotifyMessage[] {
    return this.out
      .split('\n')
      .filter((l) => l.startsWith('{"t"'))
      .map((l) => JSON.parse(l) as { t: number; msg: string })
      .map(({ t, msg }) => ({ t, fields: Object.fromEntries(msg.split('\n').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) }))
      .filter((m) => m.fields.BARRIER === undefined);
  }

  stop(): void {
    this.proc?.kill();
  }
}
