// The dispatcher's reach to other nodes (dispatch/dispatcher.ts): offers of workers' slots and
// their return, as peer messages.

import type { Network } from '../env.ts';
import { homeOfWorker, type RemoteCredit } from '../dispatch/dispatcher.ts';
import { splitLane } from '../job/lane.ts';

export function remoteCredit(network: Network, backlogAppeared: () => void): RemoteCredit {
  return {
    backlogAppeared,
    offer(node, workerId, lane, slots) {
      const [tenant, queue] = splitLane(lane);
      network.send(node, { t: 'credit_offer', worker: workerId, tenant, queue, slots });
    },
    giveBack(workerId, lane, slots) {
      const [tenant, queue] = splitLane(lane);
      network.send(homeOfWorker(workerId), { t: 'credit_return', worker: workerId, tenant, queue, slots });
    },
  };
}
