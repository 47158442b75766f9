// A second writer beside the running daemon (as `edge-sensor record` is): appends n pending
// readings in transactions of 5,000, in a worker thread so that the test process (which also runs
// the fault proxy and the subscriber) is never blocked by it. Rows get their seq inside each
// write transaction, like every writer's.
import { workerData } from 'node:worker_threads';
import { Store } from '../../../dist/store/store.js';

const { path, n } = workerData;
const store = new Store(path, { synchronous: 'NORMAL', busyTimeoutMs: 10_000 });
try {
  for (let i = 0; i < n; i += 5000) {
    const k = Math.min(5000, n - i);
    store.append(Array.from({ length: k }, (_, j) => ({ sensor: 'backlog', value: i + j, unit: 'C' })));
  }
} finally {
  store.close();
}
