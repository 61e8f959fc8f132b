// Moved to shared/ (the controller formats its logs the same way); kept here for the agent's imports.
export * from '../shared/log-pretty.js';
