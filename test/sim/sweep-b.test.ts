// The CI sweep, second half.
import { describeSweep } from './sim-support.ts';

describeSweep(101, 200);
