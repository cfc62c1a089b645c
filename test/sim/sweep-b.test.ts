// The CI sweep, second half.
import { describeSweep } from './sim-support.ts';

describeSweep(301, 600);
