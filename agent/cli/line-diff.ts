// A line diff for `modeld diff` (specs are a few dozen lines): the longest common subsequence,
// printed whole with ' ', '-' and '+' in front of each line, as `diff -u` marks them.

export function lineDiff(before: string[], after: string[]): Array<{ op: ' ' | '-' | '+'; line: string }> {
  const n = before.length;
  const m = after.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = before[i] === after[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const out: Array<{ op: ' ' | '-' | '+'; line: string }> = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && before[i] === after[j]) {
      out.push({ op: ' ', line: before[i++] });
      j++;
    } else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) out.push({ op: '-', line: before[i++] });
    else out.push({ op: '+', line: after[j++] });
  }
  return out;
}
