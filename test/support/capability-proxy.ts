import { createServer, request } from 'node:http';

export interface CapabilityProxy {
  url: string;
  /**
   * Requests seen: conditional PutObjects, PutObjects by key, DeleteObjects, and
   * objects created by key (PutObject or CompleteMultipartUpload answered 2xx).
   */
  seen: {
    conditionalPuts: number;
    putsOf: Map<string, number>;
    batchDeletes: number;
    createsOf: Map<string, number>;
  };
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of a real S3 server that takes optional features
 * away, the way other S3 servers lack them: a PutObject with If-None-Match
 * gets 501 NotImplemented (OpenStack Swift's answer), a DeleteObjects
 * without Content-MD5 gets 400, and (for a server the store cannot use at
 * all) starting a multipart upload gets 501. Everything else passes through untouched,
 * Host header included, so signatures still verify.
 */
export async function capabilityProxy(
  target: string,
  options: {
    refuseConditionalPut?: boolean;
    requireContentMd5?: boolean;
    refuseMultipart?: boolean;
    /** Holds HeadObject answers back this long: a check made outside a lock then races visibly. */
    delayHeadMs?: number;
  },
): Promise<CapabilityProxy> {
  const upstream = new URL(target);
  const seen = {
    conditionalPuts: 0,
    putsOf: new Map<string, number>(),
    batchDeletes: 0,
    createsOf: new Map<string, number>(),
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const isPutObject = req.method === 'PUT' && !url.searchParams.has('uploadId');
    if (isPutObject) seen.putsOf.set(url.pathname, (seen.putsOf.get(url.pathname) ?? 0) + 1);
    const refuse = (status: number, code: string, message: string) => {
      req.resume();
      const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
      res.writeHead(status, { 'content-type': 'application/xml', 'content-length': body.length });
      res.end(body);
    };
    if (isPutObject && req.headers['if-none-match'] !== undefined) {
      seen.conditionalPuts++;
      if (options.refuseConditionalPut) {
        return refuse(501, 'NotImplemented', 'Conditional object PUTs are not supported.');
      }
    }
    if (options.refuseMultipart && req.method === 'POST' && url.searchParams.has('uploads')) {
      return refuse(
        501,
        'NotImplemented',
        'A header you provided implies functionality that is not implemented.',
      );
    }
    if (req.method === 'POST' && url.searchParams.has('delete')) {
      seen.batchDeletes++;
      if (options.requireContentMd5 && req.headers['content-md5'] === undefined) {
        return refuse(
          400,
          'InvalidRequest',
          'Missing required header for this request: Content-MD5',
        );
      }
    }
    const forward = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        const status = answer.statusCode ?? 502;
        const completes = req.method === 'POST' && url.searchParams.has('uploadId');
        if ((isPutObject || completes) && status >= 200 && status < 300) {
          seen.createsOf.set(url.pathname, (seen.createsOf.get(url.pathname) ?? 0) + 1);
        }
        const reply = () => {
          res.writeHead(status, answer.headers);
          answer.pipe(res);
        };
        if (req.method === 'HEAD' && options.delayHeadMs) setTimeout(reply, options.delayHeadMs);
        else reply();
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('proxy has no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
