// The completion marker: written last inside a version before it is renamed into versions/.
// A version directory without it is debris from a crash and is never pointed at.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Reserved at the archive root: unpack refuses an archive that carries this name. */
export const COMPLETE_MARKER = '.modeld-complete';

export interface CompleteMarker {
  sha256?: string;
  completedAt: number;
  /** treeDigest() of the version at promotion (absent for versions promoted before it existed). */
  tree?: string;
}

/** The marker of a version directory, or undefined when the directory is missing or incomplete. */
export async function readMarker(versionDir: string): Promise<CompleteMarker | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(versionDir, COMPLETE_MARKER), 'utf8')) as CompleteMarker;
    return typeof parsed?.completedAt === 'number' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export const isVersionComplete = async (versionDir: string): Promise<boolean> => (await readMarker(versionDir)) !== undefined;
