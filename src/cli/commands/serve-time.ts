// PLACEHOLDER: replaced by the issue that builds `lockstep serve-time`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep serve-time (not built yet)',
  async run() {
    throw new Error('lockstep serve-time is not built yet');
  },
};
