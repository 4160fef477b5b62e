// Builds the page into dist/: app.js (src/main.js and the libraries, one
// minified bundle), app.css, index.html, and licenses.txt (the licence text
// of every bundled package). The output depends only on the sources and the
// pinned packages (package-lock.json), so the committed dist can be checked
// against a fresh build (web/dist_test.go).
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync, copyFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] || join(here, "dist");
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, "src/main.js")],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  legalComments: "none",
  banner: { js: "/* nanoseg web page. Bundled libraries and their licences: licenses.txt */" },
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
copyFileSync(join(here, "src/app.css"), join(out, "app.css"));
copyFileSync(join(here, "src/index.html"), join(out, "index.html"));

// Every package the bundle contains: the runtime dependencies and theirs.
const seen = new Map();
function walk(name) {
  if (seen.has(name)) return;
  const dir = join(here, "node_modules", name);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  seen.set(name, { dir, pkg });
  for (const dep of Object.keys(pkg.dependencies || {})) walk(dep);
}
const root = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
for (const dep of Object.keys(root.dependencies || {})) walk(dep);
let text = "The nanoseg web page (app.js) bundles these packages, under these licences.\n";
for (const name of [...seen.keys()].sort()) {
  const { dir, pkg } = seen.get(name);
  const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  if (!file || !existsSync(join(dir, file))) throw new Error(`${name}: no licence file`);
  text += `\n${"=".repeat(72)}\n${name} ${pkg.version} (${pkg.license})\n${"=".repeat(72)}\n\n${readFileSync(join(dir, file), "utf8").trim()}\n`;
}
writeFileSync(join(out, "licenses.txt"), text);
