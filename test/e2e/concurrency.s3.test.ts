import { s3Profile } from '../support/server.js';
import { concurrencySuite } from './concurrency.suite.js';

concurrencySuite(s3Profile);
