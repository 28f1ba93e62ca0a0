#!/usr/bin/env node
// A tiny static server for the page: 127.0.0.1 only, application/wasm for .wasm.
//   node tools/serve.mjs [PORT]      (default 8064; 0 picks a free port)
// It first copies the bundled guest from ../guest/ into dist/guest/ (gitignored).
import { createServer } from 'node:http';
import { createReadStream, existsSync, mkdirSync, copyFileSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.wasm': 'application/wasm', '.json': 'application/json', '.map': 'application/json',
  '.ts': 'text/plain; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml',
};

/** Copy guest/{tiny.bzImage,initramfs.cpio.gz,disk.ext2.gz} into dist/guest/ when the repository has them. */
export function copyGuest() {
  const src = join(root, '..', 'guest');
  const dst = join(root, 'dist', 'guest');
  mkdirSync(dst, { recursive: true });
  for (const f of ['tiny.bzImage', 'initramfs.cpio.gz', 'disk.ext2.gz']) {
    const from = join(src, f);
    const to = join(dst, f);
    if (existsSync(from) && (!existsSync(to) || statSync(to).mtimeMs < statSync(from).mtimeMs)) copyFileSync(from, to);
  }
}

/** Start serving www/ on 127.0.0.1:port; resolves to the http.Server (server.address().port). */
export function serve(port = 8064) {
  const server = createServer((req, res) => {
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(root, path));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': statSync(file).size,
      'cache-control': 'no-cache',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok(server));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  copyGuest();
  const port = Number(process.argv[2] ?? process.env.PORT ?? 8064);
  const server = await serve(port);
  console.log(`tci64: serving ${root} on http://127.0.0.1:${server.address().port}/`);
}
