import { swiftProfile } from '../support/server.js';
import { badInputSuite } from './bad-input.suite.js';

badInputSuite(swiftProfile);
