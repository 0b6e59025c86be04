import { openTestS3 } from '../support/s3-store.js';
import { blobStoreContract } from './blobstore.contract.js';

blobStoreContract('s3 (Ceph radosgw)', async () => {
  const store = await openTestS3();
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
