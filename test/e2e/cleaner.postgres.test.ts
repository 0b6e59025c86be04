import { postgresProfile } from '../support/server.js';
import { cleanerSuite } from './cleaner.suite.js';

cleanerSuite(postgresProfile);
