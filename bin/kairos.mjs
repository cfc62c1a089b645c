#!/usr/bin/env node
// The `kairos` command. It runs the compiled JavaScript in dist/, which `npm ci` (the prepare
// script) and `npm run build` produce from the TypeScript sources.
import { existsSync } from 'node:fs';

const MAIN = new URL('../dist/node/cli/main.js', import.meta.url);
if (!existsSync(MAIN)) {
  process.stderr.write('kairos: dist/ is missing; run `npm run build` in the Kairos checkout first\n');
  process.exit(1);
}
await import(MAIN.href);
