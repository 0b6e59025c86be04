import { filesystemProfile } from '../support/server.js';
import { concurrencySuite } from './concurrency.suite.js';

concurrencySuite(filesystemProfile);
