export * from './client.js';
export * from './commands.js';
export * from './errors.js';
