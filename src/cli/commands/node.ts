// PLACEHOLDER: replaced by the issue that builds `lockstep node`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep node (not built yet)',
  async run() {
    throw new Error('lockstep node is not built yet');
  },
};
