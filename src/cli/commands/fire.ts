// PLACEHOLDER: replaced by the issue that builds `lockstep fire`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep fire (not built yet)',
  async run() {
    throw new Error('lockstep fire is not built yet');
  },
};
