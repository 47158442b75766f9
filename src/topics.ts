/** The topics of one device (docs/mqtt-api.md): readings, its retained status, and announced drops. */
export function deviceTopics(prefix: string, deviceId: string): { readings: string; status: string; dropped: string } {
  const base = `${prefix}/${deviceId}`;
  return { readings: `${base}/readings`, status: `${base}/status`, dropped: `${base}/dropped` };
}

/** The same topics of every device under a prefix, as subscription filters. */
export function fleetFilters(prefix: string): { readings: string; status: string; dropped: string } {
  return deviceTopics(prefix, '+');
}
