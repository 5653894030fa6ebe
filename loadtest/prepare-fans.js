// prepare-fans: signs up FANS fans and writes their accounts ({ userId, access })
// to FANS_OUT as JSON, for a scenario to load once into a SharedArray. A
// scenario that took thousands of accounts from setup() would hand every VU its
// own parsed copy (k6 copies setup data per VU): 30,000 access tokens are ~8 MB,
// and parsing that per VU took more CPU than the stack under test.
//   FANS (30000), FANS_PREFIX (fan), FANS_OUT (fans.json)
import { signUpMany } from './lib/common.js';

export const options = { vus: 1, iterations: 1, setupTimeout: '10m' };

export function setup() {
  return { fans: signUpMany(Number(__ENV.FANS || 30000), __ENV.FANS_PREFIX || 'fan') };
}

export default function () {}

export function handleSummary(data) {
  return { [__ENV.FANS_OUT || 'fans.json']: JSON.stringify(data.setup_data.fans) };
}
