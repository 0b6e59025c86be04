import { s3Profile } from '../support/server.js';
import { badInputSuite } from './bad-input.suite.js';

badInputSuite(s3Profile);
