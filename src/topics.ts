/**
 * The topics of one device (docs/mqtt-api.md): readings, its retained status and live values, announced drops, commands,
 * and the collector's retained answer of what it stored (`stored`, issue 16).
 */
export function deviceTopics(prefix: string, deviceId: string): { readings: string; status: string; dropped: string; state: string; commands: string; stored: string } {
  const base = `${prefix}/${deviceId}`;
  return { readings: `${base}/readings`, status: `${base}/status`, dropped: `${base}/dropped`, state: `${base}/state`, commands: `${base}/cmd/+`, stored: `${base}/stored` };
}

/** The command topic of one verb: `{prefix}/{device}/cmd/{verb}` (the last level of `commands`). */
export function commandTopic(prefix: string, deviceId: string, verb: string): string {
  return `${prefix}/${deviceId}/cmd/${verb}`;
}

/** The same topics of every device under a prefix, as subscription filters. */
export function fleetFilters(prefix: string): ReturnType<typeof deviceTopics> {
  return deviceTopics(prefix, '+');
}
