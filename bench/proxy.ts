import { Agent, createServer, request } from 'node:http';
import type { Socket } from 'node:net';

export interface RequestCounts {
  /** Requests by HTTP method. */
  methods: Record<string, number>;
  /** Request body bytes forwarded, by HTTP method. */
  bytes: Record<string, number>;
}

export interface CountingProxy {
  url: string;
  /** Counts since the last reset(). */
  counts(): RequestCounts;
  reset(): void;
  close(): Promise<void>;
}

/**
 * An HTTP proxy between the server and radosgw that counts every request S3
 * receives, by method. It is the benchmark's evidence that a PUT of stored
 * content uploads nothing: any PutObject, UploadPart (PUT) or
 * CreateMultipartUpload / CompleteMultipartUpload (POST) would show here,
 * whatever the server's own metrics say. Requests are forwarded untouched,
 * Host header included, so SigV4 signatures made for the proxy's address
 * still verify at radosgw.
 */
export async function countingProxy(target: string): Promise<CountingProxy> {
  const upstream = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  let counts: RequestCounts = { methods: {}, bytes: {} };
  const sockets = new Set<Socket>();

  const server = createServer((req, res) => {
    const method = req.method ?? 'UNKNOWN';
    const tally = counts;
    tally.methods[method] = (tally.methods[method] ?? 0) + 1;
    req.on('data', (chunk: Buffer) => {
      tally.bytes[method] = (tally.bytes[method] ?? 0) + chunk.length;
    });
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${err.message}`);
    });
    req.pipe(out);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('proxy has no address');

  return {
    url: `http://127.0.0.1:${address.port}`,
    counts: () => ({ methods: { ...counts.methods }, bytes: { ...counts.bytes } }),
    reset: () => {
      counts = { methods: {}, bytes: {} };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}
