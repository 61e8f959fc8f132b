// The production closure of package.json's dependencies, resolved as Node does (nested
// node_modules first): one path per line, relative to the project root. Used by
// scripts/build-release.sh (the agent) and scripts/build-image.sh (the controller).
//
// usage: node scripts/release/closure.cjs ROOT SKIP_JSON INSTALL_ONLY_JSON [BUNDLED_JSON]
//   SKIP_JSON          top-level dependencies the program does not use (e.g. the other program's)
//   INSTALL_ONLY_JSON  packages used only when npm installs (skipped at any depth); type
//                      declarations (@types/*) are skipped too: nothing loads them at run time
//   BUNDLED_JSON       {package: [the only dependencies followed from it]}: a package whose dist
//                      bundle carries the rest of its dependencies itself
const fs = require('node:fs'), path = require('node:path');
const [root, skipJson, installOnlyJson, bundledJson = '{}'] = process.argv.slice(2);
const skip = new Set(JSON.parse(skipJson));
const installOnly = new Set(JSON.parse(installOnlyJson));
const bundled = JSON.parse(bundledJson);
const pkgOf = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
const seen = new Set();
const resolve = (from, name) => {
  for (let d = from; ; d = path.dirname(d)) {
    const c = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(c, 'package.json'))) return c;
    if (d === root || d === path.dirname(d)) return undefined;
  }
};
const visit = (dir) => {
  if (seen.has(dir)) return;
  seen.add(dir);
  const p = pkgOf(dir);
  const only = dir === root ? undefined : bundled[p.name];
  for (const [deps, opt] of [[p.dependencies, false], [p.optionalDependencies, true]]) {
    for (const name of Object.keys(deps ?? {})) {
      if ((dir === root && skip.has(name)) || installOnly.has(name) || name.startsWith('@types/')) continue;
      if (only && !only.includes(name)) continue;
      const at = resolve(dir, name);
      if (at) visit(at);
      else if (!opt) { console.error(`closure: ${name} (needed by ${p.name}) is not installed`); process.exit(1); }
    }
  }
};
visit(root);
for (const d of seen) if (d !== root) console.log(path.relative(root, d));
