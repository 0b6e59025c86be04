import { s3Target } from '../support/s3.js';
import { openTestS3 } from '../support/s3-store.js';
import { blobStoreContract } from './blobstore.contract.js';

blobStoreContract('s3 (OpenStack Swift s3api)', async () => {
  const store = await openTestS3({}, s3Target('swift'));
  return {
    store,
    leftovers: async () => {
      const open: string[] = [];
      for await (const u of store.openUploads()) open.push(u.key);
      return open;
    },
    leaveUpload: (key) => store.startUpload(key),
    close: () => store.close(),
  };
});
