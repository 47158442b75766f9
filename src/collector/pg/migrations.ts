/**
 * The collector's tables, a public contract (docs/collector.md). Forward migrations, indexed by the
 * version they start from; never edit a shipped one: add a new one. `s` is the quoted schema name.
 */
export const MIGRATIONS: Array<(s: string) => string> = [
  // 0 -> 1
  (s) => `
    CREATE TABLE ${s}.readings (
      device         text NOT NULL,
      seq            bigint NOT NULL,
      id             uuid NOT NULL,
      ts             timestamptz NOT NULL,
      sensor         text NOT NULL,
      value          double precision,
      unit           text,
      description    text,
      clock_unsynced boolean NOT NULL DEFAULT false,
      batch          uuid NOT NULL,
      received_at    timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (device, seq)
    );
    -- a device's readings over time (charts, exports, the fleet's lag)
    CREATE INDEX readings_device_ts ON ${s}.readings (device, ts);

    CREATE TABLE ${s}.devices (
      device              text PRIMARY KEY,
      first_seen          timestamptz NOT NULL DEFAULT now(),
      last_seen           timestamptz,
      -- the last status message as the device sent it, its state and its own time
      last_status         jsonb,
      online              boolean,
      status_ts           timestamptz,
      -- readings waiting on the device, from the last status that said (a goodbye does not)
      pending             bigint,
      highest_seq         bigint NOT NULL DEFAULT 0,
      -- highest seq stored or announced dropped: every seq up to it is stored or inside a gap
      accounted_seq       bigint NOT NULL DEFAULT 0,
      newest_ts           timestamptz,
      readings_stored     bigint NOT NULL DEFAULT 0,
      duplicates_absorbed bigint NOT NULL DEFAULT 0,
      dropped_announced   bigint NOT NULL DEFAULT 0,
      rejected_messages   bigint NOT NULL DEFAULT 0
    );

    CREATE TABLE ${s}.gaps (
      id        bigserial PRIMARY KEY,
      device    text NOT NULL,
      from_seq  bigint NOT NULL,
      to_seq    bigint NOT NULL,
      state     text NOT NULL CHECK (state IN ('open', 'dropped', 'filled')),
      reason    text,
      opened_at timestamptz NOT NULL,
      closed_at timestamptz,
      CHECK (from_seq <= to_seq)
    );
    CREATE INDEX gaps_unfilled ON ${s}.gaps (device, from_seq) WHERE state <> 'filled';
    CREATE INDEX gaps_device ON ${s}.gaps (device, from_seq);

    CREATE TABLE ${s}.rejected_messages (
      id            bigserial PRIMARY KEY,
      received_at   timestamptz NOT NULL DEFAULT now(),
      topic         text NOT NULL,
      device        text,
      reason        text NOT NULL,
      detail        text,
      payload       bytea,
      payload_bytes integer NOT NULL
    );
    CREATE INDEX rejected_messages_received ON ${s}.rejected_messages (received_at);
  `,
  // 1 -> 2: the fleet page (issue 20)
  (s) => `
    -- one device's sensor over a window (the page's charts, its sensor list): an index-only range scan
    CREATE INDEX readings_device_sensor_ts ON ${s}.readings (device, sensor, ts) INCLUDE (value);

    -- the devices' statuses over time (the page's backlog chart); pruned by the collector
    CREATE TABLE ${s}.status_samples (
      device  text NOT NULL,
      at      timestamptz NOT NULL DEFAULT now(),
      online  boolean,
      pending bigint
    );
    CREATE INDEX status_samples_device_at ON ${s}.status_samples (device, at);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** The table that says which version of the tables a schema holds: one row per migration applied. */
export const VERSION_TABLE = 'edge_sensor_collector_schema';
