/**
 * A JSON-string `ROUTER` with a key written twice in one object: `JSON.parse`
 * keeps the last silently (two `rules` lists: the first vanishes), where TOML
 * refuses the file. This finds the first such key, by path.
 */

/**
 * The path of the first key repeated within one object (`rules`,
 * `destinations[0].url`), or null. `text` must be valid JSON (it is scanned
 * after `JSON.parse` accepted it); the scan is linear and allocates only the
 * keys of the object being read.
 */
export function firstDuplicateKey(text: string): string | null {
  let i = 0;
  const blank = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const string = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): string | null => {
    blank();
    const c = text[i];
    if (c === '{') {
      i++;
      blank();
      if (text[i] === '}') {
        i++;
        return null;
      }
      const seen = new Set<string>();
      for (;;) {
        blank();
        const key = string();
        const at = path === '' ? key : `${path}.${key}`;
        if (seen.has(key)) return at;
        seen.add(key);
        blank();
        i++; // ':'
        const inner = value(at);
        if (inner !== null) return inner;
        blank();
        if (text[i++] === ',') continue;
        return null; // '}'
      }
    }
    if (c === '[') {
      i++;
      blank();
      if (text[i] === ']') {
        i++;
        return null;
      }
      for (let k = 0; ; k++) {
        const inner = value(`${path}[${k}]`);
        if (inner !== null) return inner;
        blank();
        if (text[i++] === ',') continue;
        return null; // ']'
      }
    }
    if (c === '"') {
      string();
      return null;
    }
    // A number, true, false or null.
    while (i < text.length && !',]} \t\n\r'.includes(text[i] as string)) i++;
    return null;
  };
  return value('');
}
