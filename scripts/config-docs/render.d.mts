import type { z } from 'zod';

export interface ConfigProse {
  /** the page's introduction (scripts/config-docs/intro.md) */
  intro: string;
  /** the prose before the sensor types (scripts/config-docs/sensors.md) */
  sensors: string;
}

export function readProse(): ConfigProse;
export function configJsonSchema(configSchema: z.ZodType): Record<string, unknown>;
/** docs/configuration.md for this schema; throws when a key has no description. */
export function renderConfigDocs(configSchema: z.ZodType, prose?: ConfigProse): string;
