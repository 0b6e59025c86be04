import { s3Profile } from '../support/server.js';
import { cleanerSuite } from './cleaner.suite.js';

cleanerSuite(s3Profile);
