// Part of `npm run build`: writes dist/build-info.json with the time of the build. The daemon
// flags readings taken while the wall clock shows an earlier time (a Pi before NTP has set it).
import { writeFileSync } from 'node:fs';

writeFileSync(new URL('../dist/build-info.json', import.meta.url), JSON.stringify({ builtAt: new Date().toISOString() }) + '\n');
