// PLACEHOLDER: replaced by the issue that builds `lockstep query`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep query (not built yet)',
  async run() {
    throw new Error('lockstep query is not built yet');
  },
};
