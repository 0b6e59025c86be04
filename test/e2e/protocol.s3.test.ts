import { s3Profile } from '../support/server.js';
import { protocolSuite } from './protocol.suite.js';

protocolSuite(s3Profile);
