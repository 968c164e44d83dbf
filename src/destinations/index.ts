/** Picks the adapter for a destination (exhaustive over destination types). */
import type { Destination } from '../config/router-config';
import { deliverHttp } from './http';
import { deliverQueue } from './queue';
import { type SlackHandOff, deliverSlack } from './slack/adapter';
import type { Delivery, DeliveryOutcome } from './types';

export { SlackHandOff } from './slack/adapter';

export async function deliver(dest: Destination, delivery: Delivery, env: Env, slack?: SlackHandOff): Promise<DeliveryOutcome> {
  switch (dest.type) {
    case 'http':
      return deliverHttp(dest, delivery);
    case 'queue':
      return deliverQueue(dest, delivery, env);
    case 'slack':
      return deliverSlack(dest, delivery, env, slack);
    default: {
      const never: never = dest;
      // Its type only: a destination holds its URL, signing secret and headers.
      throw new Error(`unknown destination type ${String((never as { type?: unknown }).type)}`);
    }
  }
}
