// The JSONPath subset CRD printer columns use (k8s.io/client-go/util/jsonpath, as the API
// server's table convertor runs it on `{<jsonPath>}`): `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[*]`
// and a filter `[?(@.k=="v")]` (==, !=). A path that finds nothing is a null cell; one value is
// the cell; several are joined by spaces, as the printer renders a list of results.

type Step = { key: string } | { index: number } | { all: true } | { filter: { path: string[]; op: '==' | '!='; value: string } };

export function parsePath(path: string): Step[] {
  const steps: Step[] = [];
  let i = 0;
  const s = path.trim().replace(/^\{|\}$/g, '');
  while (i < s.length) {
    if (s[i] === '.') {
      const m = /^\.([^.[\]]+)/.exec(s.slice(i));
      if (!m) {
        i++;
        continue;
      }
      steps.push({ key: m[1] });
      i += m[0].length;
      continue;
    }
    if (s[i] === '[') {
      const end = s.indexOf(']', i);
      if (end < 0) throw new Error(`unclosed [ in ${path}`);
      const inner = s.slice(i + 1, end);
      let m: RegExpMatchArray | null;
      if (inner === '*') steps.push({ all: true });
      else if ((m = inner.match(/^-?\d+$/))) steps.push({ index: Number(inner) });
      else if ((m = inner.match(/^'(.*)'$|^"(.*)"$/))) steps.push({ key: m[1] ?? m[2] });
      else if ((m = inner.match(/^\?\(@((?:\.[^.=!]+)+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|([^)]*))\)$/))) {
        steps.push({ filter: { path: m[1].slice(1).split('.'), op: m[2] as '==' | '!=', value: m[3] ?? m[4] ?? m[5] } });
      } else throw new Error(`unsupported JSONPath step [${inner}] in ${path}`);
      i = end + 1;
      continue;
    }
    const m = /^([^.[\]]+)/.exec(s.slice(i));
    steps.push({ key: m![1] });
    i += m![0].length;
  }
  return steps;
}

export function findResults(obj: unknown, path: string): unknown[] {
  let cur: unknown[] = [obj];
  for (const step of parsePath(path)) {
    const next: unknown[] = [];
    for (const v of cur) {
      if (v == null) continue;
      if ('key' in step) {
        if (typeof v === 'object' && !Array.isArray(v) && step.key in (v as object)) next.push((v as Record<string, unknown>)[step.key]);
      } else if ('index' in step) {
        if (Array.isArray(v)) {
          const x = v[step.index < 0 ? v.length + step.index : step.index];
          if (x !== undefined) next.push(x);
        }
      } else if ('all' in step) {
        if (Array.isArray(v)) next.push(...v);
        else if (typeof v === 'object') next.push(...Object.values(v as object));
      } else if (Array.isArray(v)) {
        const { path: p, op, value } = step.filter;
        for (const item of v) {
          const got = p.reduce<unknown>((o, k) => (o == null ? undefined : (o as Record<string, unknown>)[k]), item);
          if (got !== undefined && (String(got) === value) === (op === '==')) next.push(item);
        }
      }
    }
    cur = next;
  }
  return cur;
}

export function cellOf(obj: unknown, path: string): unknown {
  const found = findResults(obj, path);
  if (!found.length) return null;
  if (found.length === 1) return found[0];
  return found.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))).join(' ');
}
