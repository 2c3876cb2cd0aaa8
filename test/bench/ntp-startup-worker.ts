/**
 * A worker process of the NTP start-up benchmark (ntp-startup.ts): runs a
 * few of our clients side by side and prints their results as JSON.
 *
 *   node ntp-startup-worker.js '<json jobs>'
 */
import { oursRun, type OursJob } from './ntp-startup.js';

const jobs = JSON.parse(process.argv[2]!) as OursJob[];
const results = await Promise.all(jobs.map((j) => oursRun(j)));
process.stdout.write(JSON.stringify(results));
process.exit(0);
