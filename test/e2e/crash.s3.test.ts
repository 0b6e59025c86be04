import { crashSuite } from './crash.suite.js';

crashSuite('s3 (radosgw) + postgres');
