// The CI sweep, first half (two files, so the two cores share the work).
import { describeSweep } from './sim-support.ts';

describeSweep(1, 300);
