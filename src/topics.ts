/** The topics of one device (docs/mqtt-api.md): readings, its retained status and live values, announced drops, commands. */
export function deviceTopics(prefix: string, deviceId: string): { readings: string; status: string; dropped: string; state: string; commands: string } {
  const base = `${prefix}/${deviceId}`;
  return { readings: `${base}/readings`, status: `${base}/status`, dropped: `${base}/dropped`, state: `${base}/state`, commands: `${base}/cmd/+` };
}

/** The command topic of one verb: `{prefix}/{device}/cmd/{verb}` (the last level of `commands`). */
export function commandTopic(prefix: string, deviceId: string, verb: string): string {
  return `${prefix}/${deviceId}/cmd/${verb}`;
}

/** The same topics of every device under a prefix, as subscription filters. */
export function fleetFilters(prefix: string): ReturnType<typeof deviceTopics> {
  return deviceTopics(prefix, '+');
}
