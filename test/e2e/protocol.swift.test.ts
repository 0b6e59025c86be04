import { swiftProfile } from '../support/server.js';
import { protocolSuite } from './protocol.suite.js';

protocolSuite(swiftProfile);
