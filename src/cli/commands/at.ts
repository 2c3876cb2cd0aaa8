// PLACEHOLDER: replaced by the issue that builds `lockstep at`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep at (not built yet)',
  async run() {
    throw new Error('lockstep at is not built yet');
  },
};
