import { swiftProfile } from '../support/server.js';
import { cleanerSuite } from './cleaner.suite.js';

cleanerSuite(swiftProfile);
