import { s3Profile } from '../support/server.js';
import { earlyAnswersSuite } from './early-answers.suite.js';

earlyAnswersSuite(s3Profile);
