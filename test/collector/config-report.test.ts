import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/load.js';
import { loadCollectorConfig, parseCollectorConfig, resolveCollectorSecrets } from '../../src/collector/config.js';
import { fleetJson, fleetText, gapsText, printable } from '../../src/collector/fleet-report.js';
import type { FleetSnapshot } from '../../src/collector/pg/fleet.js';
import { runCli } from '../helpers/process.js';
import { makeTmp } from '../helpers/tmp.js';

const problems = (input: unknown) => {
  try {
    parseCollectorConfig(input);
    return [];
  } catch (err) {
    return (err as ConfigError).problems.map((p) => p.path);
  }
};

describe('collector config', () => {
  it('defaults: a persistent session named after the host, the public schema, MQTT 5', () => {
    const c = parseCollectorConfig({ postgres: {} });
    expect(c.mqtt).toMatchObject({ topicPrefix: 'edge-sensor', protocolVersion: 5, sessionExpirySec: 604_800, receiveMaximum: 200, clientId: expect.stringMatching(/^edge-sensor-collector-/) });
    expect(c.postgres).toMatchObject({ schema: 'public', statementTimeoutMs: 30_000 });
    expect(c.mqtt.shareGroup).toBeUndefined();
  });

  it('lists every problem with its path, the MQTT rules shared with the daemon included', () => {
    expect(problems({ postgres: { passwordFile: '/x', passwordEnv: 'Y' }, mqtt: { url: 'mqtts://h', tls: { certFile: '/c' }, topicAlias: true }, limits: { maxMessageBytes: 'lots' } })).toEqual(
      expect.arrayContaining(['postgres.passwordEnv', 'mqtt.tls.keyFile', 'mqtt.topicAlias', 'limits.maxMessageBytes']),
    );
    expect(problems({ mqtt: { url: 'mqtt://user:pw@host' } })).toEqual(['mqtt.url']);
    expect(problems({ postgres: { url: 'postgres://u@h/db?password=x' } })).toEqual(['postgres.url']);
    expect(problems({ postgres: { url: 'mysql://u@h/db' } })).toEqual(['postgres.url']);
  });

  it('reads the database password from a file or the environment, never from the config', () => {
    const tmp = makeTmp();
    try {
      const pw = join(tmp.dir, 'pg-pw');
      writeFileSync(pw, 'hunter2\n', { mode: 0o600 });
      const file = join(tmp.dir, 'c.yaml');
      writeFileSync(file, `postgres: { passwordFile: ${pw} }\n`, { mode: 0o600 });
      expect(resolveCollectorSecrets(loadCollectorConfig(file), file).pgPassword).toBe('hunter2');
      const env = parseCollectorConfig({ postgres: { passwordEnv: 'PGPW_TEST' } });
      expect(resolveCollectorSecrets(env, file, { PGPW_TEST: 's3cret' }).pgPassword).toBe('s3cret');
      expect(() => resolveCollectorSecrets(env, file, {})).toThrow(/postgres.passwordEnv: expected the environment variable PGPW_TEST/);
    } finally {
      tmp.cleanup();
    }
  });

  it('check-config tells a collector config by its postgres key; collect --check validates without running', async () => {
    const tmp = makeTmp();
    try {
      const file = join(tmp.dir, 'c.yaml');
      writeFileSync(file, 'postgres: { schema: fleet }\nmqtt: { shareGroup: g }\n');
      const r = await runCli(['check-config', '--config', file]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/ok \(collector .*schema fleet\)/);
      expect((await runCli(['collect', '--check', '--config', file])).code).toBe(0);
      writeFileSync(file, 'postgres: { schema: fleet }\nsensors: []\n');
      const bad = await runCli(['check-config', '--config', file]);
      expect(bad.code).toBe(78);
      expect(bad.stderr).toMatch(/sensors: unknown key/);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('fleet report', () => {
  const now = new Date('2026-11-26T12:00:00Z');
  const snap: FleetSnapshot = {
    now,
    devices: [
      { device: 'pi\u001b[31m-red\u009b2J\u202e', online: true, lastSeen: new Date(now.getTime() - 5000), lastStatus: null, pending: 12, readingsStored: 1500, highestSeq: 1600, newestTs: new Date(now.getTime() - 65_000), duplicatesAbsorbed: 3, droppedAnnounced: 50, rejectedMessages: 1, openGaps: 2, openReadings: 50, through: 1000, unconfirmed: 120 },
      { device: 'pi-quiet', online: null, lastSeen: null, lastStatus: null, pending: null, readingsStored: 0, highestSeq: 0, newestTs: null, duplicatesAbsorbed: 0, droppedAnnounced: 0, rejectedMessages: 0, openGaps: 0, openReadings: 0, through: 0, unconfirmed: null },
    ],
    rejected: [{ reason: 'invalid-json', count: 4 }],
  };

  it('makes device-supplied strings printable: no escape sequence reaches the terminal', () => {
    expect(printable('a\u001b[2Jb\u0007\u009b\u202e\u200b\n')).toBe('a\\u001b[2Jb\\u0007\\u009b\\u202e\\u200b\\u000a');
    const text = fleetText(snap);
    const json = fleetJson(snap);
    for (const out of [text, json]) expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(JSON.parse(json).devices[0].device).toBe(snap.devices[0].device);
    expect(gapsText({ device: '\u001b]0;x\u0007', known: false, gaps: [], truncated: false })).not.toMatch(/\u001b/);
  });

  it('one line per device: state, last seen, stored, lag, pending, open gaps, dropped, duplicates, confirmed end to end, only at the broker', () => {
    const lines = fleetText(snap).split('\n');
    expect(lines[0]).toMatch(/^DEVICE\s+STATE\s+LAST SEEN\s+STORED\s+LAG\s+PENDING\s+OPEN GAPS\s+DROPPED\s+DUPLICATES\s+CONFIRMED\s+AT BROKER$/);
    expect(lines[1]).toMatch(/online\s+5\.0 s ago\s+1,500\s+65\.0 s\s+12\s+2 \(50 readings\)\s+50\s+3\s+≤ 1,000\s+120$/);
    expect(lines[2]).toMatch(/^pi-quiet\s+unknown\s+-\s+0\s+-\s+-\s+0\s+0\s+0\s+≤ 0\s+-$/);
    expect(fleetText(snap)).toMatch(/4 rejected messages \(invalid-json 4\)/);
    const j = JSON.parse(fleetJson(snap));
    expect(j.devices[0]).toMatchObject({ lagMs: 65_000, lastSeenAgoMs: 5000, openGaps: { ranges: 2, readings: 50 }, through: 1000, atBrokerOnly: 120 });
    expect(j.rejectedMessages).toEqual({ 'invalid-json': 4 });
  });
});
