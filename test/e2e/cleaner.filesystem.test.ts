import { filesystemProfile } from '../support/server.js';
import { cleanerSuite } from './cleaner.suite.js';

cleanerSuite(filesystemProfile);
