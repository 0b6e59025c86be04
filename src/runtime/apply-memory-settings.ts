// Imported first by the CLI (src/cli/main.ts): ES modules run in import
// order, so the settings are in place before the HTTP framework, the AWS SDK
// and the drivers are loaded, and the young generation has not grown yet.
import { applyMemorySettings } from './node-flags.js';

applyMemorySettings();
