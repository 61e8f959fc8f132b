import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { renderTemplate, withTable } from './config-doc.js';

// Writes systemd/config.example.yaml and the configuration table in docs/operations.md from
// agent/config/schema.ts:  npx tsx scripts/gen-config-doc.ts
const root = resolve(import.meta.dirname, '..');
writeFileSync(join(root, 'systemd/config.example.yaml'), renderTemplate());
const doc = join(root, 'docs/operations.md');
writeFileSync(doc, withTable(readFileSync(doc, 'utf8')));
console.log('wrote systemd/config.example.yaml and the table in docs/operations.md');
