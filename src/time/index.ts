export * from './units.js';
export * from './clock.js';
export * from './timescale.js';
