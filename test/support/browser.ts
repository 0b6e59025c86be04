import { type Browser, chromium } from 'playwright-core';

/**
 * Debian's chromium (`apt-get install chromium`, as .ci/run does), headless,
 * with nothing that reaches for the network on its own: this machine's closed
 * network refuses those connections, and tests must not depend on them.
 */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
