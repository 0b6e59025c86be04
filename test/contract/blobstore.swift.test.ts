import { s3Target } from '../support/s3.js';
import { s3ContractHarness } from '../support/s3-store.js';
import { blobStoreContract } from './blobstore.contract.js';

blobStoreContract('s3 (OpenStack Swift s3api)', () => s3ContractHarness(s3Target('swift')));
