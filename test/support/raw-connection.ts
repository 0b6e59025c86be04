import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * One keep-alive connection driven by hand, the way Python's http.client
 * (and so requests and the Filetracker client) uses it: a request's head and
 * whole body are sent before anything is read, and the next request goes on
 * the same connection. While sending, nothing is read: a server that closes
 * early makes the kernel drop its answer, exactly as a Python client sees it.
 */
export class RawConnection {
  private buffer = Buffer.alloc(0);
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  static open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      // Half-open allowed: like Python's http.client, it keeps sending after the server's FIN.
      const socket = connect({ port: Number(port), host: hostname, allowHalfOpen: true }, () =>
        resolve(new RawConnection(socket)),
      );
      socket.once('error', reject);
    });
  }

  /** The server has closed its side. */
  get closedByServer(): boolean {
    return this.ended;
  }

  /** Sends a request with its whole body (Content-Length set from it unless given), then reads the answer. */
  async exchange(
    method: string,
    path: string,
    options: { headers?: Record<string, string>; body?: Buffer; timeoutMs?: number } = {},
  ): Promise<RawResponse> {
    const body = options.body ?? Buffer.alloc(0);
    const headers = {
      host: 'localhost',
      'content-length': String(body.length),
      ...options.headers,
    };
    await this.send(method, path, headers, body);
    return this.read(options.timeoutMs);
  }

  /** Writes a request head and body bytes, not reading meanwhile. Fails if the server resets the connection. */
  async send(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer,
  ): Promise<void> {
    this.socket.pause();
    const head = [
      `${method} ${path} HTTP/1.1`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    await this.write(Buffer.from(`${head.join('\r\n')}\r\n\r\n`));
    // In pieces, as a client streaming a file does.
    for (let at = 0; at < body.length; at += 1 << 20) {
      await this.write(body.subarray(at, at + (1 << 20)));
    }
  }

  /** Writes bytes as they are: the rest of a body sent earlier, a pipelined request. */
  sendRaw(bytes: Buffer): Promise<void> {
    return this.write(bytes);
  }

  private write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.error) return reject(this.error);
      this.socket.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Reads one answer (bodies with Content-Length, or none), failing after `timeoutMs`. */
  async read(timeoutMs = 5000): Promise<RawResponse> {
    this.socket.resume();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = parseResponse(this.buffer);
      if (parsed) {
        this.buffer = this.buffer.subarray(parsed.length);
        return parsed.response;
      }
      if (this.error) throw this.error;
      if (this.ended) throw new Error('the server closed the connection without a whole answer');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no answer within ${timeoutMs} ms`);
      await this.activity(left);
    }
  }

  /**
   * Whether the server still reads what this client sends: a few more body
   * bytes go out, and once the server has let go of the connection its
   * kernel answers them with a reset.
   */
  async acceptsBytes(): Promise<boolean> {
    try {
      for (let i = 0; i < 3; i++) {
        await this.write(Buffer.alloc(64 * 1024));
        await new Promise((r) => setTimeout(r, 100));
      }
      return this.error === null && !this.socket.destroyed;
    } catch {
      return false;
    }
  }

  /** Resolves once the server has ended the connection (FIN); rejects after `timeoutMs`. */
  async closedWithin(timeoutMs: number): Promise<number> {
    this.socket.resume();
    const started = Date.now();
    while (!this.ended) {
      const left = started + timeoutMs - Date.now();
      if (left <= 0) throw new Error(`the server kept the connection open past ${timeoutMs} ms`);
      await this.activity(left);
    }
    return Date.now() - started;
  }

  /** Waits for data, the end or an error on the socket, or `ms`, whichever comes first. */
  private async activity(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = null;
  }

  close(): void {
    this.socket.destroy();
  }
}

function parseResponse(data: Buffer): { response: RawResponse; length: number } | null {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine = '', ...lines] = data.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  if (data.length < end + 4 + length) return null;
  return {
    response: {
      status: Number(statusLine.split(' ')[1]),
      headers,
      body: data.subarray(end + 4, end + 4 + length),
    },
    length: end + 4 + length,
  };
}

/** Server-side sockets on `port` that the client has closed but the server has not (TCP CLOSE_WAIT). */
export function closeWaitSockets(port: number): number {
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (!local || fields[3] !== '08') continue; // 08 = CLOSE_WAIT
      if (Number.parseInt(local.split(':')[1] ?? '', 16) === port) count++;
    }
  }
  return count;
}
