/**
 * The topics of one device (docs/mqtt-api.md): readings, its retained status, announced drops,
 * and the collector's retained answer of what it stored (`stored`, issue 16).
 */
export function deviceTopics(prefix: string, deviceId: string): { readings: string; status: string; dropped: string; stored: string } {
  const base = `${prefix}/${deviceId}`;
  return { readings: `${base}/readings`, status: `${base}/status`, dropped: `${base}/dropped`, stored: `${base}/stored` };
}

/** The same topics of every device under a prefix, as subscription filters. */
export function fleetFilters(prefix: string): { readings: string; status: string; dropped: string; stored: string } {
  return deviceTopics(prefix, '+');
}
