import { s3ContractHarness } from '../support/s3-store.js';
import { blobStoreContract } from './blobstore.contract.js';

blobStoreContract('s3 (Ceph radosgw)', () => s3ContractHarness());
