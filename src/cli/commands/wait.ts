// PLACEHOLDER: replaced by the issue that builds `lockstep wait`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep wait (not built yet)',
  async run() {
    throw new Error('lockstep wait is not built yet');
  },
};
