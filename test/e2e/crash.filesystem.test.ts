import { crashSuite } from './crash.suite.js';

crashSuite('filesystem + sqlite');
