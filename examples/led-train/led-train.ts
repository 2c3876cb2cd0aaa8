/**
 * The same train through the library instead of the CLI: a prepared actuator
 * (GPIO line opened in advance), the scheduler, and scheduleAction(), which
 * puts every on and off edge on its own phase-locked instant.
 *
 *   node dist/examples/led-train/led-train.js [LINE] [DRIVER]    (DRIVER: auto, gpiod, sysfs, sim)
 */
import { realClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { formatUtcNs, NS_PER_SECOND } from '../../src/time/units.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { parseAction, scheduleAction } from '../../src/schedule/actions.js';
import { ActuatorUnavailable } from '../../src/schedule/actuator.js';
import { createActuator, type DriverName } from '../../hardware/index.js';

const line = process.argv[2] ?? '17';
const driver = (process.argv[3] ?? 'auto') as DriverName;
const action = parseAction({ kind: 'blink', line, onNs: 100_000_000, periodNs: 1_000_000_000, count: 10 });

// System-clock mode: trust this machine's clock (chrony keeps it); `lockstep node` uses NTP instead.
const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
const scheduler = new Scheduler({ timescale });

let actuator;
try {
  actuator = await createActuator(action, { driver, notice: (m) => console.error(m) });
} catch (error) {
  if (error instanceof ActuatorUnavailable) {
    console.error(error.message);
    process.exit(2);
  }
  throw error;
}
// Next whole second + 2 s.
const startNs = (timescale.nowNs() / NS_PER_SECOND + 3n) * NS_PER_SECOND;
console.error(`blinking ${line} with ${actuator.name} from ${formatUtcNs(startNs)}`);
const run = scheduleAction(scheduler, action, startNs, actuator, {
  ifPast: 'reject',
  onFire: (r) => console.log(`#${r.index} ${r.level ? 'on ' : 'off'} late ${(r.latenessNs / 1000).toFixed(1)} µs`),
});
process.once('SIGINT', () => run.cancel());
await run.done;
scheduler.stop();
await actuator.release(); // LED off
