// PLACEHOLDER: replaced by the issue that builds `lockstep cron`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep cron (not built yet)',
  async run() {
    throw new Error('lockstep cron is not built yet');
  },
};
