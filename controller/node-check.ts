// Imported first by main.ts, so that an old Node.js gets one clear line, not a stack from a dependency.
import { exitUnlessSupportedNode } from '../shared/node-support.js';

exitUnlessSupportedNode('modeld-controller');
