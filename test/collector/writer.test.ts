import { describe, expect, it } from 'vitest';
import { Writer, type ReadingsStore } from '../../src/collector/writer.js';
import { StoreUnavailableError } from '../../src/collector/pg/errors.js';
import type { ItemOutcome, StoreItem } from '../../src/collector/pg/store.js';
import { silentLogger } from '../../src/util/logger.js';
import { waitFor } from '../helpers/process.js';
import { range, readingsItem } from './helpers.js';

/** A store whose transactions end when the test says so. */
class HeldStore implements ReadingsStore {
  readonly calls: Array<{ items: readonly StoreItem[]; commit: () => void; fail: () => void }> = [];
  up = true;

  write(items: readonly StoreItem[]): Promise<ItemOutcome[]> {
    return new Promise((resolve, reject) => {
      const outcomes = items.map((i): ItemOutcome => (i.kind === 'readings' ? { kind: 'stored', device: i.device, stored: i.readings.seq.length, duplicates: 0 } : { kind: 'applied', device: i.device! }));
      this.calls.push({ items, commit: () => resolve(outcomes), fail: () => reject(new StoreUnavailableError('connection lost', undefined)) });
    });
  }

  async ping(): Promise<void> {
    if (!this.up) throw new StoreUnavailableError('down', undefined);
  }
}

function setup(maxReadings = 1000) {
  const store = new HeldStore();
  const writer = new Writer(store, { maxReadings, retry: { initialDelayMs: 5, maxDelayMs: 10 } }, silentLogger());
  const acked: number[] = [];
  const push = (i: number, n = 10) => writer.push(readingsItem('pi', range(i * n + 1, i * n + n)), () => acked.push(i));
  return { store, writer, acked, push };
}

describe('the writer', () => {
  it('acknowledges in arrival order, each message only after its transaction committed', async () => {
    const { store, acked, push } = setup(10);
    push(0);
    push(1);
    push(2);
    // two transactions in flight: the second commits first
    await waitFor(() => store.calls.length === 2, 1000, 'two transactions');
    store.calls[1].commit();
    await new Promise((r) => setTimeout(r, 20));
    expect(acked).toEqual([]);
    store.calls[0].commit();
    await waitFor(() => acked.length === 2, 1000, 'two acks');
    expect(acked).toEqual([0, 1]);
    await waitFor(() => store.calls.length === 3, 1000, 'the third transaction');
    store.calls[2].commit();
    await waitFor(() => acked.length === 3, 1000, 'the third ack');
    expect(acked).toEqual([0, 1, 2]);
  });

  it('a backlog makes large transactions, up to maxReadings', async () => {
    const { store, push } = setup(50);
    for (let i = 0; i < 12; i++) push(i);
    await waitFor(() => store.calls.length === 2, 1000, 'two transactions');
    store.calls[0].commit();
    store.calls[1].commit();
    await waitFor(() => store.calls.length === 4, 1000, 'the rest');
    // the first two went alone (nothing else had arrived: two transactions may run); the rest in fives (50 readings)
    expect(store.calls.map((c) => c.items.length)).toEqual([1, 1, 5, 5]);
  });

  it('when a transaction fails nothing after it is acknowledged, committed or not, until the database answers again', async () => {
    const { store, writer, acked, push } = setup(10);
    const events: string[] = [];
    writer.on('unavailable', () => events.push('unavailable'));
    writer.on('available', () => events.push('available'));
    push(0);
    push(1);
    await waitFor(() => store.calls.length === 2, 1000, 'two transactions');
    store.up = false;
    store.calls[1].commit();
    store.calls[0].fail();
    await waitFor(() => events.includes('unavailable'), 1000, 'unavailable');
    expect(acked).toEqual([]);
    // while down: nothing is taken (the broker delivers it again after the reconnect)
    push(2);
    expect(store.calls).toHaveLength(2);
    expect(writer.available).toBe(false);
    store.up = true;
    await waitFor(() => events.includes('available'), 1000, 'available');
    push(3);
    await waitFor(() => store.calls.length === 3, 1000, 'a new transaction');
    store.calls[2].commit();
    await waitFor(() => acked.length === 1, 1000, 'its ack');
    expect(acked).toEqual([3]);
    expect(events).toEqual(['unavailable', 'available']);
  });
});
