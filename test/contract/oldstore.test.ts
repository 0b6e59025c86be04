import { mkdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OldFiletrackerServer } from '../../src/migration/old-http.js';
import { V1Directory } from '../../src/migration/v1-directory.js';
import { FakeFiletracker } from '../support/fake-filetracker.js';
import { makeTempDir } from '../support/tmp.js';
import { oldStoreContract } from './oldstore.contract.js';

for (const v1 of [false, true]) {
  oldStoreContract(`${v1 ? 'V1' : 'V2'} Filetracker server (the fake)`, async () => {
    const fake = await new FakeFiletracker({ v1 }).start();
    return {
      store: new OldFiletrackerServer({ url: fake.url, v1, timeoutMs: 5000 }),
      seed: async (path, content, version) => fake.add(path, content, version),
      breakIt: async () => {
        fake.down = true;
      },
      heal: async () => {
        fake.down = false;
      },
      lists: !v1,
      close: () => fake.stop(),
    };
  });
}

oldStoreContract('V1 storage folder', async () => {
  const dir = await makeTempDir();
  const files = join(dir.path, 'files');
  await mkdir(files);
  const store = new V1Directory(dir.path);
  return {
    store,
    seed: async (path, content, version) => {
      const file = join(files, path);
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, content);
      await utimes(file, new Date(version * 1000), new Date(version * 1000));
    },
    // Unreadable even for root: files/ turned into a symbolic link to itself (every lookup is ELOOP).
    breakIt: async () => {
      await rename(files, `${files}.away`);
      await symlink(files, files);
    },
    heal: async () => {
      await rm(files);
      await rename(`${files}.away`, files);
    },
    lists: true,
    close: () => dir.remove(),
  };
});
