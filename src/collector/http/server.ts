import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../util/logger.js';
import type { CollectorConfig } from '../config.js';
import { StoreUnavailableError } from '../pg/errors.js';
import { ApiError, FleetApi, type FleetQueries } from './api.js';
import { loadAssets, type Asset } from './assets.js';

export interface FleetPageOptions {
  listen: string;
  auth: CollectorConfig['http']['auth'];
  /** the password (basic) or token (bearer) that auth names, read at start */
  secret?: string;
  requestTimeoutMs: number;
  trouble: CollectorConfig['http']['trouble'];
}

// no inline script or style anywhere: markup a device smuggles into the page cannot run
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cross-Origin-Opener-Policy': 'same-origin',
};

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/i;
const sha = (s: string | Buffer) => createHash('sha256').update(s).digest();

/**
 * The fleet page and its JSON API on node:http: read-only (GET and HEAD), optional basic or bearer
 * auth, fixed files from memory, JSON from the store's read side. A handful of routes did not earn a framework.
 */
export class FleetPageServer {
  private server?: Server;
  private readonly api: FleetApi;
  private assets?: ReturnType<typeof loadAssets>;
  private readonly expected?: Buffer;
  private readonly host: string;
  private readonly port: number;

  constructor(
    private readonly opts: FleetPageOptions,
    queries: FleetQueries,
    private readonly log: Logger,
  ) {
    this.api = new FleetApi(queries, opts.trouble);
    const i = opts.listen.lastIndexOf(':');
    this.host = opts.listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
    this.port = Number(opts.listen.slice(i + 1));
    const a = opts.auth;
    if (a && opts.secret !== undefined) this.expected = sha(a.type === 'basic' ? `Basic ${Buffer.from(`${a.user}:${opts.secret}`).toString('base64')}` : `Bearer ${opts.secret}`);
  }

  /** Listens; resolves with the address (port 0 picks a free one). Throws when the address cannot be had. */
  async start(): Promise<AddressInfo> {
    if (this.opts.auth && this.expected === undefined) throw new Error('http.auth is configured but its secret was not read');
    this.assets = loadAssets();
    const server = createServer({ requestTimeout: this.opts.requestTimeoutMs, headersTimeout: Math.min(this.opts.requestTimeoutMs, 10_000), keepAliveTimeout: 5000 }, (req, res) => {
      this.handle(req, res).catch((err) => {
        this.log.error({ err, url: req.url }, 'request failed');
        if (!res.headersSent) this.send(res, req, 500, { error: 'internal error' });
        else res.destroy();
      });
    });
    server.maxHeadersCount = 50;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'http server error'));
    this.server = server;
    const addr = server.address() as AddressInfo;
    this.log.info({ address: addr.address, port: addr.port, auth: this.opts.auth?.type ?? 'none' }, 'fleet page listening');
    if (!this.loopback()) {
      this.log.warn(
        { address: addr.address, port: addr.port },
        this.opts.auth ? 'fleet page reachable beyond this machine over plain HTTP: the credentials travel readable; put a TLS proxy in front' : 'fleet page reachable beyond this machine without http.auth: anyone who can connect reads the fleet',
      );
    }
    return addr;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeIdleConnections();
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      // a client that keeps its connection busy does not hold the collector's stop
      setTimeout(() => s.closeAllConnections(), 2000).unref();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.send(res, req, 405, { error: 'read-only: GET and HEAD only' });
    }
    // on loopback, a page elsewhere whose name was made to resolve to 127.0.0.1 (DNS rebinding) is refused
    const hostName = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (this.loopback() && !LOOPBACK.test(hostName)) return this.send(res, req, 421, { error: 'unexpected Host header' });
    if (this.expected && !this.authorized(req)) {
      res.setHeader('WWW-Authenticate', this.opts.auth!.type === 'basic' ? 'Basic realm="edge-sensor fleet", charset="UTF-8"' : 'Bearer realm="edge-sensor fleet"');
      return this.send(res, req, 401, { error: 'authentication required' });
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const file = this.assets!.files.get(path);
    if (file) return this.sendAsset(res, req, file);
    if (path === '/' || /^\/devices\/[^/]+$/.test(path)) return this.sendAsset(res, req, this.assets!.page);
    const m = /^\/api\/devices(?:\/([^/]+)(?:\/(series|backlog))?)?$/.exec(path);
    if (!m) return this.send(res, req, 404, { error: 'not found' });
    try {
      let id: string | undefined;
      if (m[1] !== undefined) {
        try {
          id = decodeURIComponent(m[1]);
        } catch {
          throw new ApiError(400, 'bad percent-encoding in the device id');
        }
      }
      const body = id === undefined ? await this.api.devices() : m[2] === 'series' ? await this.api.series(id, url.searchParams) : m[2] === 'backlog' ? await this.api.backlog(id, url.searchParams) : await this.api.device(id);
      this.send(res, req, 200, body);
    } catch (err) {
      if (err instanceof ApiError) return this.send(res, req, err.status, { error: err.message });
      if (err instanceof StoreUnavailableError) {
        this.log.warn({ err: err.message, path }, 'fleet page: database unavailable');
        return this.send(res, req, 503, { error: 'database unavailable' });
      }
      throw err;
    }
  }

  private loopback(): boolean {
    return LOOPBACK.test(this.host.includes(':') ? `[${this.host}]` : this.host);
  }

  private authorized(req: IncomingMessage): boolean {
    const got = req.headers.authorization;
    // hashed first: equal lengths for timingSafeEqual, and no early exit on the first wrong byte
    return typeof got === 'string' && timingSafeEqual(sha(got.trim()), this.expected!);
  }

  private send(res: ServerResponse, req: IncomingMessage, status: number, body: unknown): void {
    const data = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': data.length, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : data);
  }

  private sendAsset(res: ServerResponse, req: IncomingMessage, a: Asset): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': a.type, 'Content-Length': a.body.length, 'Cache-Control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : a.body);
  }
}
