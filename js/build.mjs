// Bundle js/src into the Python package's static folder: the explanation widget
// (src/index.js -> widget.{js,css}) and the audit gallery (src/gallery/index.js ->
// gallery.{js,css}), one self-contained ES module each.
// Usage: node build.mjs [--outdir DIR]   (the default is the package's static folder)
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const flag = process.argv.indexOf("--outdir");
const outdir = flag >= 0 ? path.resolve(process.argv[flag + 1]) : path.join(here, "..", "nbexplain", "widget", "static");

const bundles = [
  { entry: path.join("src", "index.js"), css: path.join("src", "style.css"), name: "widget" },
  { entry: path.join("src", "gallery", "index.js"), css: path.join("src", "gallery", "style.css"), name: "gallery" },
];

await mkdir(outdir, { recursive: true });
for (const { entry, css, name } of bundles) {
  await build({
    entryPoints: [path.join(here, entry)],
    outfile: path.join(outdir, `${name}.js`),
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
  await copyFile(path.join(here, css), path.join(outdir, `${name}.css`));
  console.log(`built ${path.relative(process.cwd(), outdir) || "."}/${name}.js and ${name}.css`);
}
