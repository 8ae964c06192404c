// Bundle js/src into the Python package: nbexplain/widget/static/widget.{js,css}.
// Usage: node build.mjs [--outdir DIR]   (the default is the package's static folder)
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const flag = process.argv.indexOf("--outdir");
const outdir = flag >= 0 ? path.resolve(process.argv[flag + 1]) : path.join(here, "..", "nbexplain", "widget", "static");

await mkdir(outdir, { recursive: true });
await build({
  entryPoints: [path.join(here, "src", "index.js")],
  outfile: path.join(outdir, "widget.js"),
  absWorkingDir: here, // the same output (and file comments) from any working directory
  bundle: true,
  format: "esm",
  target: "es2022",
  // Readable output: it is committed, reviewed in diffs and debugged in browsers.
  minify: false,
  legalComments: "none",
  logLevel: "warning",
  banner: { js: "// Built from js/src by js/build.mjs; do not edit by hand." },
});
await copyFile(path.join(here, "src", "style.css"), path.join(outdir, "widget.css"));
console.log(`built ${path.relative(process.cwd(), outdir) || "."}/widget.js and widget.css`);
