import { connect, createServer, type Socket } from 'node:net';

export type FaultMode = 'pass' | 'blackhole' | 'error' | 'cut';

export interface FaultProxy {
  url: string;
  setMode(mode: FaultMode, cutAfter?: number): void;
  /** Every `x-amz-content-sha256` value sent through so far: how requests signed their bodies. */
  payloadHashes(): string[];
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of a real server that can turn into a fault:
 * 'blackhole' accepts connections and never answers (a hung S3), 'error'
 * answers every request with HTTP 500 (a failing S3), 'cut' passes requests
 * on but closes each connection once `cutAfter` bytes of answers have gone
 * through it (an S3 that fails in the middle of a body). Switching modes
 * drops open connections, so pooled keep-alive sockets see the change at once.
 */
export async function faultProxy(target: string): Promise<FaultProxy> {
  const { hostname, port } = new URL(target);
  let mode: FaultMode = 'pass';
  let cutAfter = Number.POSITIVE_INFINITY;
  const payloadHashes: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (mode === 'blackhole') {
      client.resume();
      return;
    }
    if (mode === 'error') {
      client.on('data', (data: Buffer) => {
        if (data.includes('\r\n\r\n')) {
          client.end(
            'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
          );
        }
      });
      return;
    }
    const upstream = connect(Number(port), hostname);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('data', (data: Buffer) => {
      // A header line within one chunk is enough here: heads are small and come
      // first. The SDK writes header names in lower case.
      if (!data.includes('x-amz-content-sha256')) return;
      for (const m of data
        .toString('latin1')
        .matchAll(/\r\nx-amz-content-sha256: *([^\r]*)\r\n/g)) {
        payloadHashes.push(m[1] ?? '');
      }
    });
    client.pipe(upstream);
    if (mode !== 'cut') {
      upstream.pipe(client);
      return;
    }
    let room = cutAfter;
    upstream.on('data', (data: Buffer) => {
      if (room <= 0) return;
      const part = data.subarray(0, room);
      room -= part.length;
      if (room > 0) client.write(part);
      else {
        client.write(part, () => client.destroy());
        upstream.destroy();
      }
    });
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('proxy has no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    setMode(next, after = Number.POSITIVE_INFINITY) {
      mode = next;
      cutAfter = after;
      for (const s of sockets) s.destroy();
    },
    payloadHashes: () => [...payloadHashes],
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
