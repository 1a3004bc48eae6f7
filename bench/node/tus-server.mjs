// The @tus/server + @tus/file-store side of geodrop's benchmarks.
//
//   node tus-server.mjs HOST PORT DIRECTORY [--no-fsync]
//
// @tus/file-store 2.1.1 writes with fs.createWriteStream and never fsyncs (checked in
// its dist/index.js). geodrop and the raw ceiling make the data durable before they
// answer the last PATCH, so for a like-for-like comparison this server fsyncs the
// finished file in an onUploadFinish hook (it runs before the response is sent, for a
// final PATCH and for a creation-with-upload that completes the upload alike).
import fs from 'node:fs/promises';
import path from 'node:path';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [host, port, directory, ...flags] = process.argv.slice(2);
if (!host || !port || !directory) {
  console.error('usage: node tus-server.mjs HOST PORT DIRECTORY [--no-fsync]');
  process.exit(2);
}
const fsyncOnFinish = !flags.includes('--no-fsync');

const server = new Server({
  path: '/files',
  datastore: new FileStore({ directory }),
  async onUploadFinish(_req, upload) {
    if (fsyncOnFinish) {
      const handle = await fs.open(path.join(directory, upload.id), 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    return {};
  },
});

// @tus/server 2.4.5 on Node 20 can throw "ReadableStream is already closed" from
// undici when a client closes a keep-alive connection as a GET body ends (seen once
// in ~20 bench runs, between rounds). That request is over; do not let it take the
// anchor down mid-comparison. Any other uncaught error still ends the process.
process.on('uncaughtException', (error) => {
  if (error && error.code === 'ERR_INVALID_STATE') {
    console.error(`ignored after a closed connection: ${error.message}`);
    return;
  }
  console.error(error);
  process.exit(1);
});

const listener = server.listen({ host, port: Number(port) }, () => {
  console.log(`@tus/server listening on ${host}:${port}, fsync on finish: ${fsyncOnFinish}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    listener.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref(); // idle keep-alive connections
  });
}
