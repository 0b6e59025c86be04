import { describe, expect, it } from 'vitest';
import { realName } from '../../src/migration/source.js';
import { misEncode } from '../support/fake-filetracker.js';

describe('realName: names the original server lists mis-encoded', () => {
  it('maps a mis-encoded name back to its UTF-8 self', () => {
    expect(realName('Ã¼ber')).toBe('über');
    for (const name of ['zadania/ąę/żółw.in', '日本語/テスト', 'emoji/😀', 'mixed über/日本']) {
      expect(realName(misEncode(name))).toBe(name);
    }
  });

  it('leaves ASCII names, names beyond Latin-1 and Latin-1 text that is not UTF-8 in disguise alone', () => {
    for (const name of ['a/b/c.txt', 'spaces and %25 signs', '日本', 'café', 'Ã', 'naïve ÿ']) {
      expect(realName(name)).toBe(name);
    }
  });
});
