// PLACEHOLDER: replaced by the issue that builds `lockstep trigger`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep trigger (not built yet)',
  async run() {
    throw new Error('lockstep trigger is not built yet');
  },
};
