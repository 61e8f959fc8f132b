// Plain-text output for people: tables, sizes, a progress bar on stderr when it is a terminal.

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Columns padded to the widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** A one-line progress bar redrawn in place; a no-op unless stderr is a TTY. */
export function progressBar(label: string): { update(bytes: number, total: number): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let drawn = false;
  return {
    update(bytes, total) {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && bytes < total) return;
      last = now;
      const width = 30;
      const frac = total > 0 ? Math.min(1, bytes / total) : 0;
      const filled = Math.round(frac * width);
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(bytes)}/${formatBytes(total)}`);
      drawn = true;
    },
    done() {
      if (tty && drawn) process.stderr.write('\n');
    },
  };
}

/** A note for people on stderr (never mixed into stdout, which scripts parse). */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}
