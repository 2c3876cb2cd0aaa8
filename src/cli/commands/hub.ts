// PLACEHOLDER: replaced by the issue that builds `lockstep hub`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep hub (not built yet)',
  async run() {
    throw new Error('lockstep hub is not built yet');
  },
};
