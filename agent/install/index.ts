// The install subsystem: detect -> unpack into staging -> promote into versions/<v> -> swap current; gc; recovery.
export { fsyncPath, fsyncTree, writeFileAtomic } from '../durable.js';
export { detectArchive, type ArchiveKind } from './detect.js';
export { unpackArchive, type UnpackLimits } from './unpack.js';
export { clearStaging, promoteVersion, readCurrent, removeCurrent, removeVersionDir, swapCurrent } from './layout.js';
export { COMPLETE_MARKER, isVersionComplete, readMarker, type CompleteMarker } from './marker.js';
export { recoverInstallState, type RecoveryReport } from './recover.js';
export { dirSize, planGc, type GcInput, type GcPlan } from './gc.js';
export { rmTree } from './rm-tree.js';
