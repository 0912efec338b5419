// A small, safe Markdown renderer: headings, lists, block quotes, fenced code, paragraphs, and
// inline code, bold, italics and links. It builds DOM nodes directly (text always as text nodes),
// so no input can produce markup; links are kept only for http: and https: URLs.

import { h } from './dom.js';

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+.-]*)/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const ORDERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;

/** Renders Markdown text into a fragment of block elements. */
export function markdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i++;
    } else if ((m = FENCE.exec(line))) {
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(m[1]); i++) body.push(lines[i]);
      i++;
      const code = h('code', {}, body.join('\n'));
      if (m[2]) code.dataset.lang = m[2];
      out.append(h('pre', {}, code));
    } else if ((m = HEADING.exec(line))) {
      out.append(inline(h(`h${Math.min(6, m[1].length + 2)}`, {}), m[2]));
      i++;
    } else if (RULE.test(line)) {
      out.append(h('hr'));
      i++;
    } else if (QUOTE.test(line)) {
      const body = [];
      for (; i < lines.length && (m = QUOTE.exec(lines[i])); i++) body.push(m[1]);
      out.append(h('blockquote', {}, markdown(body.join('\n'))));
    } else if (BULLET.test(line) || ORDERED.test(line)) {
      i = list(lines, i, out);
    } else {
      const body = [];
      for (; i < lines.length && lines[i].trim() && !startsBlock(lines[i]); i++) body.push(lines[i]);
      out.append(inline(h('p'), body.join('\n')));
    }
  }
  return out;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || BULLET.test(line) || ORDERED.test(line)
    || QUOTE.test(line) || RULE.test(line);
}

/** One list (bulleted or numbered) from line `i`; indented lines continue their item. */
function list(lines, i, out) {
  const ordered = ORDERED.test(lines[i]);
  const item = ordered ? ORDERED : BULLET;
  const el = h(ordered ? 'ol' : 'ul');
  const first = Number(ordered && ORDERED.exec(lines[i])[1]);
  if (ordered && first !== 1) el.setAttribute('start', String(first));
  const items = [];
  for (; i < lines.length; i++) {
    const m = item.exec(lines[i]);
    if (m) items.push([ordered ? m[2] : m[1]]);
    else if (/^\s+\S/.test(lines[i])) items[items.length - 1].push(lines[i].trim());
    else break;
  }
  for (const parts of items) el.append(inline(h('li'), parts.join('\n')));
  out.append(el);
  return i;
}

const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|(?<!\w)__(?=\S)([\s\S]*?\S)__(?!\w)|\*(?=\S)([\s\S]*?\S)\*|(?<!\w)_(?=\S)([\s\S]*?\S)_(?!\w)|\[([^\]\n]+)\]\(\s*<?([^\s)>]+)>?\s*\)/g;

/** Appends inline Markdown `text` to `el` and returns `el`. */
function inline(el, text) {
  // A regex of its own per call: the function recurses, and a global regex keeps its position.
  const re = new RegExp(INLINE.source, 'g');
  const src = String(text);
  let last = 0;
  let m;
  while ((m = re.exec(src))) {
    if (m.index > last) el.append(src.slice(last, m.index));
    if (m[1]) el.append(h('code', {}, m[2].replace(/^ (.*) $/, '$1')));
    else if (m[3] || m[4]) el.append(inline(h('strong'), m[3] || m[4]));
    else if (m[5] || m[6]) el.append(inline(h('em'), m[5] || m[6]));
    else el.append(link(m[7], m[8]));
    last = re.lastIndex;
  }
  if (last < src.length) el.append(src.slice(last));
  return el;
}

/** A link for http(s) URLs; anything else (javascript:, data:, relative) stays plain text. */
function link(label, href) {
  let url = null;
  try {
    url = new URL(href);
  } catch {
    url = null;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    return document.createTextNode(`${label} (${href})`);
  }
  const a = h('a', { href: url.href, rel: 'noopener noreferrer nofollow', target: '_blank' });
  return inline(a, label);
}
