// The wire contract: the only module both the agent and the controller import.
export * from './names.js';
export * from './schema.js';
export * from './envelope.js';
export * from './topics.js';
export * from './versions.js';
