// PLACEHOLDER: replaced by the issue that builds `lockstep demo`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep demo (not built yet)',
  async run() {
    throw new Error('lockstep demo is not built yet');
  },
};
