#!/usr/bin/env node
/**
 * The `lockstep` command: dispatches to one module per subcommand, loaded
 * lazily so `--help` and the fast commands do not pay for the rest.
 */
import { UsageError, EXIT_FAILURE, EXIT_USAGE } from './errors.js';
import type { Command } from './command.js';
import { compileEagerly, readyProcess } from '../schedule/warm-up.js';

/** `fires`: the command acts at instants, so it is made ready for its first one as it loads (src/schedule/warm-up.ts). */
const COMMANDS: Record<string, { summary: string; fires?: true; load: () => Promise<{ command: Command }> }> = {
  query: { summary: 'measure the offset to NTP servers once, like ntpdig', load: () => import('./commands/query.js') },
  sync: { summary: 'run the disciplined NTP client and show its status', load: () => import('./commands/sync.js') },
  'serve-time': { summary: 'answer NTP clients with this node\'s time', load: () => import('./commands/serve-time.js') },
  wait: { summary: 'return at an instant: a drop-in for shell sleep loops', fires: true, load: () => import('./commands/wait.js') },
  at: { summary: 'start a command at an instant', fires: true, load: () => import('./commands/at.js') },
  cron: { summary: 'run a command on a cron schedule with seconds, to the microsecond', fires: true, load: () => import('./commands/cron.js') },
  crontab: { summary: 'run a whole crontab in one process, each start to the microsecond', fires: true, load: () => import('./commands/crontab.js') },
  fire: { summary: 'fire a hardware action (blink, capture, command) at an instant', fires: true, load: () => import('./commands/fire.js') },
  node: { summary: 'run a mesh node: sync, take triggers over MQTT, fire, report', fires: true, load: () => import('./commands/node.js') },
  hub: { summary: 'run the mesh hub: serve time, watch nodes', load: () => import('./commands/hub.js') },
  trigger: { summary: 'ask the hub\'s nodes to fire together, once all are synchronized', load: () => import('./commands/trigger.js') },
  demo: { summary: 'a hub and 10 simulated nodes blinking in step on this machine', load: () => import('./commands/demo.js') },
  swarm: { summary: 'many simulated nodes in one process, for measuring the hub and broker at scale', load: () => import('./commands/swarm.js') },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'usage: lockstep COMMAND [options]',
    '',
    'Make many computers act at the same instant.',
    '',
    'commands:',
    ...lines,
    '',
    "'lockstep COMMAND --help' describes a command.",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic && COMMANDS[topic]) return main([topic, '--help']);
    process.stdout.write(mainHelp() + '\n');
    return name === undefined ? EXIT_USAGE : 0;
  }
  if (name === '--version') {
    process.stdout.write('lockstep 0.1.0\n');
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`lockstep: unknown command '${name}'\n\n${mainHelp()}\n`);
    return EXIT_USAGE;
  }
  const split = rest.indexOf('--');
  const helpAt = Math.max(rest.indexOf('--help'), rest.indexOf('-h'));
  const helpOnly = helpAt !== -1 && (split === -1 || helpAt < split);
  // A command that will fire: its code compiled as it loads, none at an instant (src/schedule/warm-up.ts).
  const ready = entry.fires === true && !helpOnly;
  if (ready) readyProcess();
  const { command } = ready ? await compileEagerly(entry.load) : await entry.load();
  if (helpOnly) {
    process.stdout.write(command.help.trimEnd() + '\n');
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`lockstep ${name}: ${error.message}\n(see 'lockstep ${name} --help')\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`lockstep ${name}: ${(error as Error).message ?? error}\n`);
    return EXIT_FAILURE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`lockstep: ${(error as Error)?.stack ?? error}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
