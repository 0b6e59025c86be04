import { filesystemProfile } from '../support/server.js';
import { protocolSuite } from './protocol.suite.js';

protocolSuite(filesystemProfile);
