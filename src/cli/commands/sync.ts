// PLACEHOLDER: replaced by the issue that builds `lockstep sync`.
import type { Command } from '../command.js';

export const command: Command = {
  help: 'usage: lockstep sync (not built yet)',
  async run() {
    throw new Error('lockstep sync is not built yet');
  },
};
