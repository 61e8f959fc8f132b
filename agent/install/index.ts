// The install subsystem: detect -> unpack into staging -> promote into versions/<version>@<sha256> -> swap current; gc; recovery.
export { fsyncPath, fsyncTree, writeFileAtomic } from '../durable.js';
export { detectArchive, type ArchiveKind } from './detect.js';
export { unpackArchive, type UnpackLimits } from './unpack.js';
export { clearStaging, promoteTree, readCurrent, removeCurrent, removeTreeDir, swapCurrent } from './layout.js';
export { describeTree, parseTreeName, sameTree, treeName, type TreeRef } from './tree-ref.js';
export { migrateLegacyTrees, type LayoutMigrationReport } from './migrate-layout.js';
export { COMPLETE_MARKER, isVersionComplete, readMarker, type CompleteMarker } from './marker.js';
export { recoverInstallState, type RecoveryReport } from './recover.js';
export { dirSize, planGc, type GcInput, type GcPlan } from './gc.js';
export { rmTree } from './rm-tree.js';
