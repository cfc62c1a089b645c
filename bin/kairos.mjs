#!/usr/bin/env node
// The `kairos` command. Kairos is written in TypeScript and runs from source through tsx's
// loader, so a clone works after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../node/cli/main.ts');
