// exogate console: a single-page operator console in plain JavaScript (no framework, no build step,
// nothing fetched from outside the origin). Served under a strict CSP: no inline scripts or styles,
// no eval; styles are set through the CSSOM only. Server-provided text always goes in through
// textContent (never innerHTML).

'use strict';

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

/** h('a', {href: '#/x', class: 'btn', onclick: fn}, 'text', child, [more]) */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = String(value);
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'for') el.htmlFor = value;
      else if (key === 'value' && (tag === 'input' || tag === 'textarea')) {
        el.defaultValue = value; // what form.reset() goes back to
        el.value = value;
      } else if (key === 'value' && tag === 'select') el.value = value;
      else if (key === 'style') throw new Error('no style attributes under the CSP');
      else if (value === true) el.setAttribute(key, '');
      else el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

function setText(el, text) {
  const t = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

/** A labelled form field: returns {wrap, input}. */
function field(label, input, hint) {
  if (!input.id) input.id = nextId('f');
  const hintEl = hint ? h('p', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  const wrap = h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl);
  return { wrap, input };
}

function select(options, value, attrs = {}) {
  const el = h('select', attrs);
  for (const opt of options) {
    const [v, label] = Array.isArray(opt) ? opt : [opt, opt];
    el.appendChild(h('option', { value: v }, label));
  }
  if (value !== undefined && value !== null) el.value = value;
  return el;
}

// ---------------------------------------------------------------------------------------------
// Formatting

function parseTime(text) {
  if (!text) return null;
  // RFC 3339 with nanoseconds: keep milliseconds, which every engine parses.
  const t = String(text).replace(/(\.\d{3})\d+/, '$1');
  const ms = Date.parse(t);
  return Number.isFinite(ms) ? ms : null;
}

const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

function fmtDateTime(text) {
  const ms = parseTime(text);
  return ms === null ? (text || '—') : dateTimeFmt.format(ms);
}

const shortFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** For tables: without the year when it is this year's. */
function fmtShort(text) {
  const ms = parseTime(text);
  if (ms === null) return text || '—';
  return new Date(ms).getFullYear() === new Date().getFullYear() ? shortFmt.format(ms) : dateTimeFmt.format(ms);
}

function fmtClock(text) {
  const ms = parseTime(text);
  return ms === null ? (text || '—') : timeFmt.format(ms);
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return '—';
  const total = Math.max(0, Math.floor(Number(ms) / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (n) => String(n).padStart(2, '0');
  return hours ? `${hours}:${two(minutes)}:${two(seconds)}` : `${minutes}:${two(seconds)}`;
}

function fmtNumber(n) {
  if (n === null || n === undefined || n === '') return '—';
  const v = Number(n);
  return Number.isFinite(v) ? v.toLocaleString() : String(n);
}

function fmtRelative(ms) {
  const sign = ms < 0 ? '−' : '+';
  return `${sign}${(Math.abs(ms) / 1000).toFixed(3)} s`;
}

function dash(v) {
  return v === null || v === undefined || v === '' ? '—' : String(v);
}

const STATUS_TONE = {
  'in-progress': 'live', running: 'live', ringing: 'info', connecting: 'info', queued: 'info', dialing: 'info',
  completed: 'ok', draft: 'plain', paused: 'warn', 'retry-scheduled': 'warn', pending: 'plain',
  busy: 'warn', 'no-answer': 'warn', canceled: 'plain', cancelled: 'plain', interrupted: 'danger',
  failed: 'danger', exhausted: 'danger',
};

function badge(status, extra) {
  const s = status || 'unknown';
  const tone = STATUS_TONE[s] || 'plain';
  return h('span', { class: `badge badge-${tone}`, ...(extra || {}) }, s.replace(/[-_]/g, ' '));
}

/** {a: {b: 1}} → "a.b: 1" pairs, for timeline details. */
function detailPairs(detail) {
  if (detail === null || detail === undefined) return null;
  if (typeof detail !== 'object') return h('span', { class: 'detail-pairs' }, String(detail));
  const parts = [];
  const walk = (obj, prefix) => {
    for (const [k, v] of Object.entries(obj)) {
      if (v === null || v === undefined || v === '') continue;
      const key = prefix ? `${prefix}.${k}` : k;
      if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) walk(v, key);
      else if (typeof v === 'object' && !Object.keys(v).length) continue;
      else parts.push([key, Array.isArray(v) ? JSON.stringify(v) : String(v)]);
    }
  };
  walk(detail, '');
  const el = h('span', { class: 'detail-pairs' });
  parts.forEach(([k, v], i) => {
    if (i) el.appendChild(document.createTextNode('  '));
    el.appendChild(h('b', null, k));
    el.appendChild(document.createTextNode(`=${v}`));
  });
  return el;
}

// ---------------------------------------------------------------------------------------------
// The API: cookie session + CSRF header on every non-GET request

const session = { csrf: '', open: false, signedIn: false };

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body || {};
  }
}

const isAbort = (e) => e && (e.name === 'AbortError' || e.aborted === true);

async function api(method, path, body, { signal } = {}) {
  const headers = { Accept: 'application/json' };
  let payload;
  if (method !== 'GET' && method !== 'HEAD') {
    headers['X-CSRF-Token'] = session.csrf || '';
    if (body instanceof FormData) {
      payload = body; // the browser writes the multipart Content-Type with its boundary
    } else {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body === undefined ? {} : body);
    }
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store', signal });
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new ApiError(0, 'The gateway cannot be reached. Check the connection and try again.');
  }
  let data = null;
  const type = res.headers.get('content-type') || '';
  if (res.status !== 204) {
    if (type.includes('json')) {
      try { data = await res.json(); } catch { data = null; }
    } else {
      try { data = await res.text(); } catch { data = null; }
    }
  }
  if (res.status === 401 && path !== '/api/session') {
    sessionLost();
    throw new ApiError(401, 'Your session has ended. Sign in again.', data);
  }
  if (!res.ok) {
    const message = (data && typeof data === 'object' && data.error) || (typeof data === 'string' && data.trim())
      || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, String(message).slice(0, 2000), data && typeof data === 'object' ? data : {});
  }
  return data;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------
// Toasts and the modal dialog

/**
 * The Edit and Delete buttons of an agent's or a phone's row: Delete asks first, then removes it
 * through the API and reloads the list.
 */
function editDeleteButtons({ what, name, path, message, onEdit, load, errors }) {
  const edit = h('button', { class: 'btn btn-sm', type: 'button', 'aria-label': `Edit ${what} ${name}` }, 'Edit');
  const del = h('button', { class: 'btn btn-sm btn-danger', type: 'button', 'aria-label': `Delete ${what} ${name}` }, 'Delete');
  edit.addEventListener('click', onEdit);
  del.addEventListener('click', async () => {
    const ok = await ask({ title: `Delete ${what} ${name}?`, message, confirm: 'Delete', danger: true });
    if (!ok) return;
    try {
      await api('DELETE', path);
      toast(`${what[0].toUpperCase()}${what.slice(1)} ${name} deleted.`);
      await load();
    } catch (e) {
      if (e.status !== 401) errors.show(e);
    }
  });
  return [edit, del];
}

function toast(message, kind) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast${kind === 'error' ? ' toast-error' : ''}` }, message);
  box.appendChild(t);
  setTimeout(() => t.remove(), kind === 'error' ? 7000 : 3500);
}

/**
 * A modal: ask({title, message, fields: [{name, label, placeholder, type}], confirm, danger}).
 * Resolves with the fields' values, or null when cancelled.
 */
function ask({ title, message, fields = [], confirm = 'OK', danger = false }) {
  const dlg = document.getElementById('modal');
  if (dlg.open) dlg.close('cancel');
  const opener = document.activeElement;
  clear(dlg);
  const inputs = {};
  const titleEl = h('h2', { id: 'modal-title' }, title);
  const form = h('form', { method: 'dialog' },
    titleEl,
    message ? h('p', null, message) : null,
    fields.map((f) => {
      const input = h('input', {
        name: f.name, type: f.type || 'text', placeholder: f.placeholder || '', autocomplete: 'off', value: f.value || '',
      });
      inputs[f.name] = input;
      const fl = field(f.label, input, f.hint);
      fl.wrap.classList.add('modal-field');
      return fl.wrap;
    }),
    h('div', { class: 'form-actions' },
      h('button', { class: 'btn', type: 'button', value: 'cancel', onclick: () => dlg.close('cancel') }, 'Cancel'),
      h('button', { class: `btn ${danger ? 'btn-danger-solid' : 'btn-primary'}`, type: 'submit', value: 'ok' }, confirm)));
  dlg.appendChild(form);
  return new Promise((resolve) => {
    const done = () => {
      dlg.removeEventListener('close', done);
      const ok = dlg.returnValue === 'ok';
      const values = {};
      for (const [k, input] of Object.entries(inputs)) values[k] = input.value.trim();
      if (opener && typeof opener.focus === 'function' && document.contains(opener)) opener.focus();
      resolve(ok ? values : null);
    };
    dlg.returnValue = '';
    dlg.addEventListener('close', done);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      dlg.close('ok');
    });
    dlg.showModal();
    const first = fields.length ? inputs[fields[0].name] : form.querySelector('button[type="submit"]');
    first.focus();
  });
}

/** An inline error box: {el, show(err|message), hide()}; per-line errors become a list. */
function errorBox() {
  const el = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  return {
    el,
    show(err) {
      clear(el);
      const message = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong.';
      el.appendChild(h('p', { class: 'alert-title' }, message));
      const lines = err && err.body && Array.isArray(err.body.errors) ? err.body.errors : null;
      if (lines && lines.length) el.appendChild(lineList(lines));
      el.hidden = false;
    },
    hide() {
      el.hidden = true;
      clear(el);
    },
  };
}

function lineList(items, more) {
  const ul = h('ul', { class: 'line-errors' });
  for (const item of items) {
    const line = Number(item.line);
    ul.appendChild(h('li', { dataset: { line: String(item.line ?? '') } },
      line > 0 ? h('span', { class: 'line-no' }, `Line ${line}: `) : null,
      dash(item.reason)));
  }
  if (more > 0) ul.appendChild(h('li', { class: 'muted' }, `…and ${more} more`));
  return ul;
}

const rowKeys = new WeakMap();

/**
 * Rebuilds a polled table body only when its data changed (`key`), and puts the focus back on the
 * same link or button afterwards, so polling never pulls the focus away from a keyboard user.
 */
function replaceRows(tbody, key, build) {
  if (rowKeys.get(tbody) === key) return;
  rowKeys.set(tbody, key);
  const active = document.activeElement;
  let restore = null;
  if (active && active !== document.body && tbody.contains(active)) {
    restore = { href: active.getAttribute('href'), label: active.getAttribute('aria-label'), text: active.textContent };
  }
  clear(tbody);
  build();
  if (restore) {
    const same = [...tbody.querySelectorAll('a, button')].find((el) => (restore.href
      ? el.getAttribute('href') === restore.href
      : el.getAttribute('aria-label') === restore.label && el.textContent === restore.text));
    if (same) same.focus({ preventScroll: true });
  }
}

async function withBusy(button, fn) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------------------------------------
// Router

const routes = [
  [/^\/live$/, 'live', () => viewLive],
  [/^\/calls$/, 'calls', () => viewCalls],
  [/^\/calls\/([^/]+)$/, 'calls', () => viewCall],
  [/^\/agents$/, 'agents', () => viewAgents],
  [/^\/phones$/, 'phones', () => viewPhones],
  [/^\/campaigns$/, 'campaigns', () => viewCampaigns],
  [/^\/campaigns\/([^/]+)$/, 'campaigns', () => viewCampaign],
];

let current = null; // {controller, cleanups}
let firstRender = true;

function parseHash() {
  let raw = location.hash.replace(/^#/, '');
  if (!raw.startsWith('/')) raw = '/live';
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  return { path: path.replace(/\/+$/, '') || '/live', params };
}

function stopView() {
  if (!current) return;
  current.controller.abort();
  for (const fn of current.cleanups) {
    try { fn(); } catch { /* a cleanup never stops the next view */ }
  }
  current = null;
}

function render() {
  if (!session.signedIn) return;
  stopView();
  const { path, params } = parseHash();
  const main = document.getElementById('main');
  clear(main);
  let match = null;
  let section = null;
  let view = null;
  for (const [re, name, get] of routes) {
    const m = path.match(re);
    if (m) {
      match = m.slice(1).map((part) => {
        try { return decodeURIComponent(part); } catch { return part; }
      });
      section = name;
      view = get();
      break;
    }
  }
  for (const a of document.querySelectorAll('#nav a[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  closeNav();
  const controller = new AbortController();
  const ctx = {
    signal: controller.signal,
    cleanups: [],
    onCleanup(fn) { this.cleanups.push(fn); },
    get alive() { return !controller.signal.aborted; },
  };
  current = { controller, cleanups: ctx.cleanups };
  if (!view) {
    main.appendChild(pageHead('Not found'));
    main.appendChild(h('p', null, 'No such page. ', h('a', { href: '#/live' }, 'Go to live calls')));
    return;
  }
  const focus = !firstRender;
  firstRender = false;
  Promise.resolve(view(main, ctx, match, params)).catch((e) => {
    if (isAbort(e) || !ctx.alive || (e instanceof ApiError && e.status === 401)) return;
    main.appendChild(h('div', { class: 'alert alert-error', role: 'alert' }, e.message || String(e)));
  });
  if (focus) {
    // A keyboard or screen-reader user lands on the new page's heading (or the page, while it loads).
    const h1 = main.querySelector('h1');
    (h1 || main).focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

function pageHead(title, { actions, back, badgeEl, sub } = {}) {
  document.title = `${title} · exogate`;
  return h('div', { class: 'page-head' },
    h('div', null,
      back ? h('a', { class: 'back', href: back[0] }, `← ${back[1]}`) : null,
      h('div', { class: 'title' }, h('h1', { tabindex: '-1' }, title), badgeEl || null),
      sub ? h('p', { class: 'muted small' }, sub) : null),
    actions ? h('div', { class: 'actions' }, actions) : null);
}

/** Calls fn now and every `ms` after it settles, until the view goes away. */
function poll(ctx, ms, fn) {
  let timer = null;
  const tick = async () => {
    if (!ctx.alive) return;
    try {
      await fn();
    } catch (e) {
      if (!isAbort(e) && ctx.alive && ctx.onPollError) ctx.onPollError(e);
    }
    if (ctx.alive && session.signedIn) timer = setTimeout(tick, ms);
  };
  ctx.onCleanup(() => clearTimeout(timer));
  return tick();
}

function closeNav() {
  const sidebar = document.querySelector('.sidebar');
  const toggle = document.getElementById('nav-toggle');
  if (sidebar) sidebar.classList.remove('open');
  if (toggle) toggle.setAttribute('aria-expanded', 'false');
}

// ---------------------------------------------------------------------------------------------
// Session: sign in, sign out, any 401 → sign in

function showSignIn(message) {
  stopView();
  const dlg = document.getElementById('modal');
  if (dlg.open) dlg.close('cancel');
  session.signedIn = false;
  session.csrf = '';
  document.getElementById('boot').hidden = true;
  document.getElementById('shell').hidden = true;
  document.getElementById('signin').hidden = false;
  document.title = 'Sign in · exogate';
  const err = document.getElementById('signin-error');
  if (message) {
    err.textContent = message;
    err.hidden = false;
  } else {
    err.hidden = true;
    err.textContent = '';
  }
  const key = document.getElementById('signin-key');
  key.value = '';
  key.focus();
}

function showShell() {
  session.signedIn = true;
  document.getElementById('boot').hidden = true;
  document.getElementById('signin').hidden = true;
  document.getElementById('shell').hidden = false;
  document.getElementById('signout').hidden = session.open;
  document.getElementById('session-note').textContent = session.open
    ? 'No API key is set: the API is open on this machine.'
    : 'Signed in.';
  if (!location.hash.startsWith('#/')) history.replaceState(null, '', '#/live');
  firstRender = true;
  render();
}

function sessionLost() {
  if (session.signedIn) showSignIn('Your session has ended. Sign in again.');
}

async function checkSession() {
  try {
    const s = await api('GET', '/api/session');
    session.csrf = (s && s.csrf) || '';
    session.open = Boolean(s && s.open);
    showShell();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showSignIn();
    else {
      document.getElementById('boot').hidden = true;
      showSignIn(e.message || 'The gateway cannot be reached.');
    }
  }
}

async function signIn(event) {
  event.preventDefault();
  const keyInput = document.getElementById('signin-key');
  const err = document.getElementById('signin-error');
  const button = document.getElementById('signin-submit');
  const key = keyInput.value.trim();
  if (!key) {
    err.textContent = 'Enter the API key.';
    err.hidden = false;
    keyInput.focus();
    return;
  }
  await withBusy(button, async () => {
    try {
      const s = await api('POST', '/api/session', { key });
      session.csrf = (s && s.csrf) || '';
      session.open = Boolean(s && s.open);
      keyInput.value = '';
      err.hidden = true;
      showShell();
    } catch (e) {
      err.textContent = e.status === 401 ? (e.message && !/^401/.test(e.message) ? e.message : 'That key is not valid.')
        : e.message;
      err.hidden = false;
      keyInput.select();
      keyInput.focus();
    }
  });
}

async function signOut() {
  try {
    await api('DELETE', '/api/session');
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      toast(`Sign out failed: ${e.message}`, 'error');
      return;
    }
  }
  showSignIn();
}

// ---------------------------------------------------------------------------------------------
// Live calls

function levelPercent(level) {
  const v = Number(level) || 0;
  if (v <= 0) return 0;
  // Peak in dBFS, -60..0 dB over the bar's width.
  const db = 20 * Math.log10(Math.min(1, v));
  return Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
}

function meter(kind, label) {
  const fill = h('div', { class: 'meter-fill' });
  const el = h('div', {
    class: `meter meter-${kind}`, role: 'meter', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100',
    'aria-valuenow': '0',
  }, fill);
  return {
    el,
    set(level) {
      const pct = levelPercent(level);
      fill.style.width = `${pct.toFixed(1)}%`;
      const rounded = String(Math.round(pct));
      if (el.getAttribute('aria-valuenow') !== rounded) el.setAttribute('aria-valuenow', rounded);
    },
  };
}

async function viewLive(main, ctx) {
  const count = h('span', { class: 'badge badge-plain', 'aria-live': 'polite' }, '…');
  const updated = h('span', { class: 'live-meta' }, 'Updated every second');
  main.appendChild(pageHead('Live calls', { badgeEl: count, actions: [updated] }));
  const errors = errorBox();
  main.appendChild(errors.el);
  const tbody = h('tbody');
  const empty = h('tr', { class: 'empty-row' }, h('td', { class: 'empty', colspan: '7' }, 'No calls right now.'));
  tbody.appendChild(empty);
  const table = h('table', { id: 'live-calls', class: 'cards' },
    h('caption', { class: 'sr-only' }, 'Calls in progress'),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col' }, 'Caller'), h('th', { scope: 'col' }, 'To'), h('th', { scope: 'col' }, 'Agent'),
      h('th', { scope: 'col' }, 'Direction'), h('th', { scope: 'col', class: 'num' }, 'Duration'),
      h('th', { scope: 'col' }, 'Levels'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
    tbody);
  main.appendChild(h('section', { class: 'panel', 'aria-label': 'Calls in progress' }, h('div', { class: 'table-wrap' }, table)));

  const rows = new Map(); // id → {tr, set(call)}
  let polledAt = performance.now();

  const makeRow = (call) => {
    const caller = h('span', { class: 'caller-num' });
    const callerSub = h('span', { class: 'sub mono truncate' });
    const to = h('span');
    const agent = h('span');
    const direction = h('span');
    const duration = h('span', { class: 'duration' });
    const mCaller = meter('caller', 'Caller level');
    const mBot = meter('bot', 'Bot level');
    // The call log finds a call by its id, CallSid or stream_sid: the stream_sid names this one call.
    const detailLink = h('a', { href: `#/calls/${enc(call.stream_sid || call.id)}` });
    const hang = h('button', { class: 'btn btn-sm btn-danger', type: 'button' }, 'Hang up');
    const transfer = h('button', { class: 'btn btn-sm', type: 'button' }, 'Transfer');
    const tr = h('tr', { dataset: { callId: call.id } },
      h('td', { 'data-label': 'Caller' }, h('span', null, detailLink, callerSub)),
      h('td', { 'data-label': 'To' }, to),
      h('td', { 'data-label': 'Agent' }, agent),
      h('td', { 'data-label': 'Direction' }, direction),
      h('td', { 'data-label': 'Duration', class: 'num' }, duration),
      h('td', { 'data-label': 'Levels' }, h('div', { class: 'levels' }, 'Caller', mCaller.el, 'Bot', mBot.el)),
      h('td', { class: 'actions' }, transfer, hang));
    detailLink.appendChild(caller);
    const row = {
      tr,
      base: 0,
      at: 0,
      call,
      set(c) {
        row.call = c;
        setText(caller, c.from || 'Unknown caller');
        setText(callerSub, c.call_sid || c.stream_sid || '');
        if (callerSub.title !== callerSub.textContent) callerSub.title = callerSub.textContent;
        setText(to, dash(c.to));
        setText(agent, dash(c.agent));
        setText(direction, dash(c.direction));
        row.base = Number(c.duration_ms) || 0;
        row.at = polledAt;
        setText(duration, fmtDuration(row.base));
        mCaller.set(c.caller_level);
        mBot.set(c.bot_level);
        hang.setAttribute('aria-label', `Hang up the call from ${c.from || 'unknown caller'}`);
        transfer.setAttribute('aria-label', `Transfer the call from ${c.from || 'unknown caller'}`);
      },
      tick(now) {
        setText(duration, fmtDuration(row.base + (now - row.at)));
      },
    };
    hang.addEventListener('click', async () => {
      const who = row.call.from || 'this caller';
      const ok = await ask({
        title: 'Hang up this call?',
        message: `The gateway ends the call with ${who} now.`,
        confirm: 'Hang up',
        danger: true,
      });
      if (!ok) return;
      await withBusy(hang, async () => {
        try {
          await api('POST', `/api/calls/${enc(row.call.id)}/hangup`, {});
          toast(`Hanging up the call with ${who}.`);
        } catch (e) {
          if (e.status !== 401) toast(`Hang up failed: ${e.message}`, 'error');
        }
      });
    });
    transfer.addEventListener('click', async () => {
      const who = row.call.from || 'this caller';
      const values = await ask({
        title: 'Transfer this call',
        message: `The bot's part of the call with ${who} ends as a transfer; the flow's Passthru applet answers 302.`,
        fields: [{
          name: 'to', label: 'Number or flow id (optional)', placeholder: '+91…',
          hint: 'Leave empty to use the flow\'s own transfer target.',
        }],
        confirm: 'Transfer',
      });
      if (!values) return;
      await withBusy(transfer, async () => {
        try {
          await api('POST', `/api/calls/${enc(row.call.id)}/transfer`, values.to ? { to: values.to } : {});
          toast(values.to ? `Transferring the call with ${who} to ${values.to}.` : `Transferring the call with ${who}.`);
        } catch (e) {
          if (e.status !== 401) toast(`Transfer failed: ${e.message}`, 'error');
        }
      });
    });
    return row;
  };

  const ticker = setInterval(() => {
    const now = performance.now();
    for (const row of rows.values()) row.tick(now);
  }, 250);
  ctx.onCleanup(() => clearInterval(ticker));

  ctx.onPollError = (e) => {
    if (e.status !== 401) errors.show(`Live calls could not be updated: ${e.message}`);
  };
  await poll(ctx, 1000, async () => {
    const data = await api('GET', '/api/live', undefined, { signal: ctx.signal });
    if (!ctx.alive) return;
    errors.hide();
    polledAt = performance.now();
    const calls = Array.isArray(data && data.calls) ? data.calls : [];
    const seen = new Set();
    calls.sort((a, b) => String(a.started_at).localeCompare(String(b.started_at)));
    for (const c of calls) {
      if (!c || c.id === undefined || c.id === null) continue;
      const id = String(c.id);
      seen.add(id);
      let row = rows.get(id);
      if (!row) {
        row = makeRow({ ...c, id });
        rows.set(id, row);
        // New calls go last; existing rows never move (moving a node would drop the focus in it).
        tbody.insertBefore(row.tr, empty);
      }
      row.set({ ...c, id });
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    empty.hidden = rows.size > 0;
    setText(count, rows.size === 1 ? '1 call' : `${rows.size} calls`);
    setText(updated, `Updated ${timeFmt.format(Date.now())}`);
  });
}

// ---------------------------------------------------------------------------------------------
// Call log

const CALL_STATUSES = ['queued', 'connecting', 'ringing', 'in-progress', 'completed', 'failed', 'busy', 'no-answer',
  'canceled', 'interrupted'];

async function viewCalls(main, ctx, _match, params) {
  main.appendChild(pageHead('Call log'));
  const limit = Math.min(500, Math.max(1, Number(params.get('limit')) || 50));
  const offset = Math.max(0, Number(params.get('offset')) || 0);

  const f = {
    status: select([['', 'Any status'], ...CALL_STATUSES], params.get('status') || '', { name: 'status' }),
    direction: h('input', { name: 'direction', list: 'directions', value: params.get('direction') || '', placeholder: 'Any' }),
    agent: h('input', { name: 'agent', value: params.get('agent') || '', placeholder: 'Any', spellcheck: 'false' }),
    phone: h('input', { name: 'phone', value: params.get('phone') || '', placeholder: 'Any', spellcheck: 'false' }),
    since: h('input', { name: 'since', type: 'date', value: params.get('since') || '' }),
    until: h('input', { name: 'until', type: 'date', value: params.get('until') || '' }),
    limit: select(['25', '50', '100', '200'], String(limit), { name: 'limit' }),
  };
  if (![...f.limit.options].some((o) => o.value === String(limit))) {
    f.limit.appendChild(h('option', { value: String(limit) }, String(limit)));
    f.limit.value = String(limit);
  }
  const datalist = h('datalist', { id: 'directions' },
    ['incoming', 'inbound', 'outbound-api', 'outbound-dial'].map((d) => h('option', { value: d })));
  const form = h('form', { class: 'panel-body', role: 'search', 'aria-label': 'Filter calls' },
    h('div', { class: 'form-grid compact' },
      field('Status', f.status).wrap,
      field('Direction', f.direction).wrap,
      field('Agent', f.agent).wrap,
      field('Phone id', f.phone).wrap,
      field('Since', f.since).wrap,
      field('Until (before)', f.until).wrap,
      field('Per page', f.limit).wrap,
      h('div', { class: 'form-actions' },
        h('button', { class: 'btn btn-primary', type: 'submit' }, 'Apply'),
        h('a', { class: 'btn', href: '#/calls' }, 'Reset'))),
    datalist);
  const go = (nextOffset) => {
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(f)) {
      const v = el.value.trim();
      if (v && !(k === 'limit' && v === '50')) q.set(k, v);
    }
    if (nextOffset > 0) q.set('offset', String(nextOffset));
    const hash = `#/calls${q.toString() ? `?${q}` : ''}`;
    if (location.hash === hash) render();
    else location.hash = hash;
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go(0);
  });
  main.appendChild(h('section', { class: 'panel', 'aria-label': 'Filters' }, form));

  const errors = errorBox();
  main.appendChild(errors.el);
  const tbody = h('tbody', null, h('tr', null, h('td', { class: 'empty', colspan: '8' }, 'Loading…')));
  const table = h('table', { id: 'call-log', class: 'data' },
    h('thead', null, h('tr', null,
      ['Created', 'Status', 'Direction', 'From', 'To', 'Agent', 'Duration', 'Stop reason'].map((t, i) =>
        h('th', { scope: 'col', class: i === 6 ? 'num' : null }, t)))),
    tbody);
  const range = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const prev = h('button', { class: 'btn btn-sm', type: 'button', disabled: true }, '← Previous');
  const next = h('button', { class: 'btn btn-sm', type: 'button', disabled: true }, 'Next →');
  const refresh = h('button', { class: 'btn btn-sm', type: 'button' }, 'Refresh');
  main.appendChild(h('section', { class: 'panel', 'aria-label': 'Calls' },
    h('div', { class: 'table-wrap' }, table),
    h('div', { class: 'panel-foot' }, range, h('div', { class: 'actions' }, refresh, prev, next))));

  const q = new URLSearchParams();
  for (const k of ['status', 'phone', 'agent', 'direction', 'since', 'until']) {
    const v = (params.get(k) || '').trim();
    if (v) q.set(k, v);
  }
  q.set('limit', String(limit));
  q.set('offset', String(offset));

  const load = async () => {
    const data = await api('GET', `/api/calls?${q}`, undefined, { signal: ctx.signal });
    if (!ctx.alive) return;
    errors.hide();
    const calls = Array.isArray(data && data.calls) ? data.calls : [];
    const total = Number(data && data.total) || 0;
    const off = Number(data && data.offset) || offset;
    replaceRows(tbody, JSON.stringify(data), () => buildRows(calls, total));
    const first = calls.length ? off + 1 : 0;
    const last = off + calls.length;
    setText(range, `${fmtNumber(first)}–${fmtNumber(last)} of ${fmtNumber(total)}`);
    prev.disabled = off <= 0;
    next.disabled = last >= total;
  };
  const buildRows = (calls, total) => {
    if (!calls.length) {
      tbody.appendChild(h('tr', null, h('td', { class: 'empty', colspan: '8' },
        total ? 'No calls on this page.' : 'No calls match these filters.')));
    }
    for (const c of calls) {
      const href = `#/calls/${enc(c.id)}`;
      tbody.appendChild(h('tr', { dataset: { callId: c.id } },
        h('td', null, h('a', { href, 'aria-label': `Call of ${fmtDateTime(c.created_at)} from ${c.from_number || 'unknown'}` },
          fmtShort(c.created_at))),
        h('td', null, badge(c.status)),
        h('td', null, dash(c.direction)),
        h('td', null, dash(c.from_number)),
        h('td', null, dash(c.to_number)),
        h('td', null, dash(c.agent)),
        h('td', { class: 'num' }, fmtDuration(c.duration_ms ?? (c.conversation_duration != null ? c.conversation_duration * 1000 : null))),
        h('td', null, dash(c.stop_reason || c.exotel_status))));
    }
  };
  prev.addEventListener('click', () => go(Math.max(0, offset - limit)));
  next.addEventListener('click', () => go(offset + limit));
  refresh.addEventListener('click', () => withBusy(refresh, () => load().catch(showErr)));
  const showErr = (e) => {
    if (isAbort(e) || !ctx.alive || e.status === 401) return;
    errors.show(e);
    replaceRows(tbody, 'error', () => tbody.appendChild(h('tr', null,
      h('td', { class: 'empty', colspan: '8' }, 'The call log could not be loaded.'))));
  };
  if (offset > 0) {
    await load().catch(showErr);
    return;
  }
  // The first page follows new calls (every 5 s); later pages stay as they were loaded.
  ctx.onPollError = showErr;
  await poll(ctx, 5000, load);
}

// ---------------------------------------------------------------------------------------------
// Call detail: summary, recording with waveform, transcript, usage, timeline

const FINAL_CALL = new Set(['completed', 'failed', 'busy', 'no-answer', 'canceled', 'interrupted']);

async function viewCall(main, ctx, [id]) {
  const head = h('div');
  const errors = errorBox();
  const summary = h('div');
  const recording = h('div');
  const transcript = h('div');
  const timeline = h('div');
  main.append(head, errors.el, summary, recording, transcript, timeline);
  let recordingShown = false;
  let lastEvents = -1;
  let lastHead = null;
  let waits = 0;

  const load = async () => {
    const call = await api('GET', `/api/calls/${enc(id)}`, undefined, { signal: ctx.signal });
    if (!ctx.alive) return true;
    errors.hide();
    const headKey = `${call.status}|${call.from_number}`;
    if (headKey !== lastHead) {
      const hadFocus = head.contains(document.activeElement);
      clear(head).appendChild(pageHead(call.from_number ? `Call from ${call.from_number}` : 'Call', {
        back: ['#/calls', 'Call log'],
        badgeEl: badge(call.status, { id: 'call-status' }),
        sub: `Created ${fmtDateTime(call.created_at)} · id ${call.id}`,
      }));
      if (hadFocus) head.querySelector('h1').focus();
      lastHead = headKey;
    }
    clear(summary).appendChild(callSummary(call));
    const events = Array.isArray(call.events) ? call.events : [];
    if (events.length !== lastEvents) {
      clear(timeline).appendChild(callTimeline(call, events));
      lastEvents = events.length;
    }
    const lines = Array.isArray(call.transcript) ? call.transcript : [];
    clear(transcript);
    if (lines.length || (call.usage && typeof call.usage === 'object')) {
      transcript.appendChild(callConversation(call, lines));
    }
    const final = FINAL_CALL.has(call.status);
    // The API names the recording once its file is complete, a moment after the call ends.
    const ended = parseTime(call.ended_at || call.updated_at);
    const finishing = final && !call.recording && ended !== null && Date.now() - ended < 30_000 && ++waits <= 15;
    if (!recordingShown && final && !finishing) {
      recordingShown = true;
      clear(recording).appendChild(callRecording(ctx, call));
    } else if (!recordingShown) {
      const text = final ? 'The recording is being finished…' : 'The call is still going: its recording can be played once it ends.';
      clear(recording).appendChild(h('section', { class: 'panel', 'aria-labelledby': 'rec-title' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'rec-title' }, 'Recording')),
        h('div', { class: 'panel-body' }, h('p', { class: 'muted' }, text))));
    }
    return final && recordingShown;
  };

  const first = await load().catch((e) => {
    if (isAbort(e) || !ctx.alive || e.status === 401) return true;
    clear(head).appendChild(pageHead('Call', { back: ['#/calls', 'Call log'] }));
    errors.show(e.status === 404 ? `No call ${id}.` : e);
    return true;
  });
  if (first || !ctx.alive) return;
  // A call still running: refresh its row and timeline until it ends.
  let timer = null;
  const again = async () => {
    if (!ctx.alive) return;
    let done = false;
    try {
      done = await load();
    } catch (e) {
      if (isAbort(e) || e.status === 401) return;
    }
    if (!done && ctx.alive) timer = setTimeout(again, 1000);
  };
  timer = setTimeout(again, 1000);
  ctx.onCleanup(() => clearTimeout(timer));
}

function kv(pairs) {
  const dl = h('dl', { class: 'kv' });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    dl.appendChild(h('dt', null, label));
    dl.appendChild(h('dd', null, value instanceof Node ? value : String(value)));
  }
  return dl;
}

function safeLink(url, text) {
  // Only http(s) links from the call log: never javascript: or data: URLs.
  try {
    const u = new URL(String(url), location.href);
    if (u.protocol === 'https:' || u.protocol === 'http:') {
      return h('a', { href: u.href, target: '_blank', rel: 'noopener noreferrer' }, text || u.href);
    }
  } catch { /* not a URL: shown as text */ }
  return h('span', null, String(url));
}

function jsonText(v) {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object') return String(v);
  if (!Object.keys(v).length) return null;
  return Object.entries(v).map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : x}`).join(', ');
}

function callSummary(call) {
  const n = (v) => (v === null || v === undefined ? null : fmtNumber(v));
  const pair = (a, b) => (a === null && b === null ? null : `${a ?? '—'} / ${b ?? '—'}`);
  const duration = call.duration_ms != null ? fmtDuration(call.duration_ms)
    : call.conversation_duration != null ? fmtDuration(call.conversation_duration * 1000) : null;
  const recUrl = call.recording_url || call.stream_recording_url;
  const campaign = call.campaign_id
    ? h('a', { href: `#/campaigns/${enc(call.campaign_id)}` }, `${call.campaign_id}${call.contact_seq != null ? ` · contact ${call.contact_seq}` : ''}`)
    : null;
  const left = kv([
    ['From', call.from_number],
    ['To', call.to_number],
    ['Direction', call.direction],
    ['Agent', call.agent],
    ['Status', call.status ? badge(call.status) : null],
    ['Exotel status', call.exotel_status],
    ['Stop reason', call.stop_reason],
    ['Close code', call.close_code],
    ['Stream status', call.stream_status],
    ['Disconnected by', call.stream_disconnected_by],
    ['Bot decision', call.bot_decision],
    ['Transfer to', call.transfer_to],
    ['Agent failure', call.agent_failure],
    ['Agent fallback', call.agent_fallback],
    ['Agent note', call.agent_note],
    ['Error', call.error_kind || call.error_message ? `${call.error_kind || ''} ${call.error_message || ''}`.trim() : null],
    ['Campaign', campaign],
    ['Exotel recording', recUrl ? safeLink(recUrl) : null],
  ]);
  const right = kv([
    ['Created', fmtDateTime(call.created_at)],
    ['Started', call.started_at ? fmtDateTime(call.started_at) : null],
    ['Ended', call.ended_at ? fmtDateTime(call.ended_at) : null],
    ['Duration', duration],
    ['Sample rate', call.sample_rate ? `${call.sample_rate} Hz` : null],
    ['Frames in / out', pair(n(call.frames_in), n(call.frames_out))],
    ['Bytes in / out', pair(n(call.bytes_in), n(call.bytes_out))],
    ['Marks sent / played', pair(n(call.marks_sent), n(call.marks_played))],
    ['Clears', n(call.clears)],
    ['DTMF', call.dtmf],
    ['Digits', call.digits],
    ['Bad messages', call.bad_messages ? n(call.bad_messages) : null],
    ['Sequence gaps', call.seq_gaps ? n(call.seq_gaps) : null],
    ['Dropped in / out bytes', call.dropped_in_bytes || call.dropped_out_bytes ? pair(n(call.dropped_in_bytes), n(call.dropped_out_bytes)) : null],
    ['CallSid', call.call_sid ? h('span', { class: 'mono' }, call.call_sid) : null],
    ['Stream sid', call.stream_sid ? h('span', { class: 'mono' }, call.stream_sid) : null],
    ['Custom parameters', jsonText(call.custom_params)],
    ['Variables', jsonText(call.vars)],
  ]);
  return h('div', { class: 'grid-2' },
    h('section', { class: 'panel', 'aria-labelledby': 'sum-call' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'sum-call' }, 'Call')), h('div', { class: 'panel-body' }, left)),
    h('section', { class: 'panel', 'aria-labelledby': 'sum-media' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'sum-media' }, 'Media')), h('div', { class: 'panel-body' }, right)));
}

function callTimeline(call, events) {
  const origin = events.length ? parseTime(events[0].at) : parseTime(call.created_at);
  const tbody = h('tbody');
  if (!events.length) tbody.appendChild(h('tr', null, h('td', { class: 'empty', colspan: '4' }, 'No timeline entries.')));
  for (const ev of events) {
    const at = parseTime(ev.at);
    tbody.appendChild(h('tr', { dataset: { kind: ev.kind } },
      h('td', { class: 'num tabular nowrap' }, at !== null && origin !== null ? fmtRelative(at - origin) : '—'),
      h('td', { class: 'nowrap muted small', title: ev.at || '' }, fmtClock(ev.at)),
      h('td', null, h('span', { class: 'badge badge-plain' }, ev.kind)),
      h('td', { class: 'wrap' }, detailPairs(ev.detail))));
  }
  return h('section', { class: 'panel', 'aria-labelledby': 'timeline-title' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'timeline-title' }, 'Timeline'),
      h('span', { class: 'muted small' }, `${events.length} ${events.length === 1 ? 'entry' : 'entries'}`)),
    h('div', { class: 'table-wrap' }, h('table', { id: 'timeline' },
      h('thead', null, h('tr', null, h('th', { scope: 'col', class: 'num' }, 'Time'), h('th', { scope: 'col' }, 'Clock'),
        h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'Detail'))),
      tbody)));
}

function callConversation(call, lines) {
  const section = h('section', { class: 'panel', 'aria-labelledby': 'conv-title' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'conv-title' }, 'Conversation')));
  const body = h('div', { class: 'panel-body' });
  section.appendChild(body);
  if (lines.length) {
    const chat = h('div', { class: 'chat', id: 'transcript', role: 'log', 'aria-label': 'Transcript' });
    for (const line of lines) {
      const speaker = String(line.speaker || '');
      const cls = speaker === 'caller' || speaker === 'user' ? 'bubble-caller'
        : speaker === 'exogate' || speaker === 'system' ? 'bubble-system' : 'bubble-agent';
      const when = Number.isFinite(Number(line.at_ms)) && line.at_ms !== undefined ? ` · ${fmtDuration(line.at_ms)}` : '';
      chat.appendChild(h('div', { class: `bubble ${cls}` },
        cls === 'bubble-system' ? null : h('span', { class: 'who' }, `${speaker || 'agent'}${when}`),
        String(line.text ?? '')));
    }
    body.appendChild(chat);
  }
  if (call.usage && typeof call.usage === 'object' && Object.keys(call.usage).length) {
    const rows = [];
    const walk = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj)) {
        const key = prefix ? `${prefix} › ${k}` : k;
        if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, key);
        else rows.push([key.replace(/_/g, ' '), typeof v === 'number' ? fmtNumber(v) : JSON.stringify(v)]);
      }
    };
    walk(call.usage, '');
    body.appendChild(h('h3', { class: lines.length ? 'usage-title' : null }, 'Usage'));
    const list = kv(rows);
    list.id = 'usage';
    body.appendChild(list);
  }
  return section;
}

// --- recording and waveform -------------------------------------------------------------------

/** Parses a RIFF/WAVE file's header: {channels, rate, bits, format, dataOffset, dataBytes}. */
function parseWav(buf) {
  const dv = new DataView(buf);
  const tag = (o) => String.fromCharCode(dv.getUint8(o), dv.getUint8(o + 1), dv.getUint8(o + 2), dv.getUint8(o + 3));
  if (buf.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('the recording is not a WAV file');
  let off = 12;
  let fmt = null;
  while (off + 8 <= buf.byteLength) {
    const id = tag(off);
    const size = dv.getUint32(off + 4, true);
    const body = off + 8;
    if (id === 'fmt ') {
      if (body + 16 > buf.byteLength) break;
      let format = dv.getUint16(body, true);
      if (format === 0xfffe && size >= 26 && body + 26 <= buf.byteLength) format = dv.getUint16(body + 24, true);
      fmt = {
        format,
        channels: dv.getUint16(body + 2, true),
        rate: dv.getUint32(body + 4, true),
        bits: dv.getUint16(body + 14, true),
      };
    } else if (id === 'data') {
      if (!fmt) throw new Error('the WAV file has no format chunk before its data');
      // A recording still being written may carry a placeholder size: use what is there.
      const available = buf.byteLength - body;
      const dataBytes = size === 0 || size > available ? available : size;
      return { ...fmt, dataOffset: body, dataBytes };
    }
    off = body + size + (size & 1);
  }
  throw new Error('the WAV file has no data chunk');
}

/** Min/max per bucket for each channel (PCM16): {frames, buckets, env: [Float32Array(2*buckets)] per channel}. */
function envelope(buf, wav, maxBuckets) {
  if (wav.format !== 1 || wav.bits !== 16) throw new Error(`unsupported WAV encoding (format ${wav.format}, ${wav.bits} bits)`);
  const ch = Math.max(1, wav.channels);
  const frames = Math.floor(wav.dataBytes / (2 * ch));
  const samples = frames * ch;
  let pcm;
  if (wav.dataOffset % 2 === 0) pcm = new Int16Array(buf, wav.dataOffset, samples);
  else pcm = new Int16Array(buf.slice(wav.dataOffset, wav.dataOffset + samples * 2));
  const buckets = Math.max(1, Math.min(maxBuckets, frames));
  const env = [];
  for (let c = 0; c < Math.min(ch, 2); c++) env.push(new Float32Array(buckets * 2));
  let peak = 0;
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor((b * frames) / buckets);
    const end = Math.max(start + 1, Math.floor(((b + 1) * frames) / buckets));
    for (let c = 0; c < env.length; c++) {
      let lo = 32767;
      let hi = -32768;
      for (let i = start; i < end && i < frames; i++) {
        const s = pcm[i * ch + c];
        if (s < lo) lo = s;
        if (s > hi) hi = s;
      }
      if (lo > hi) { lo = 0; hi = 0; }
      env[c][2 * b] = lo / 32768;
      env[c][2 * b + 1] = hi / 32768;
      peak = Math.max(peak, -lo / 32768, hi / 32768);
    }
  }
  return { frames, buckets, env, peak, seconds: frames / (wav.rate || 8000) };
}

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function callRecording(ctx, call) {
  const section = h('section', { class: 'panel', 'aria-labelledby': 'rec-title' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'rec-title' }, 'Recording')));
  const body = h('div', { class: 'panel-body' });
  section.appendChild(body);
  const url = typeof call.recording === 'string' && call.recording ? call.recording : null;
  if (!url) {
    body.appendChild(h('p', { class: 'muted' }, 'No recording for this call.'));
    return section;
  }
  const status = h('p', { class: 'muted small', role: 'status' }, 'Loading the waveform…');
  const canvas = h('canvas', {
    id: 'waveform', tabindex: '0', role: 'slider', 'aria-label': 'Recording position (caller above, bot below)',
    'aria-valuemin': '0', 'aria-valuemax': '0', 'aria-valuenow': '0', dataset: { state: 'loading' },
  });
  // The player gets its source once the file is there (the waveform's fetch proves it), so a
  // recording still being finished never leaves a broken player behind.
  const audio = h('audio', { id: 'recording', controls: true, preload: 'metadata' });
  const download = h('a', { href: url, download: `${call.id}.wav` }, 'Download WAV');
  body.append(
    h('div', { class: 'wave-wrap' }, canvas),
    h('div', { class: 'legend' },
      h('span', null, h('span', { class: 'sw sw-caller' }), 'Caller (left channel)'),
      h('span', null, h('span', { class: 'sw sw-bot' }), 'Bot (right channel)'),
      h('span', null, 'Click the waveform to seek; arrow keys step 5 s.'),
      download),
    audio, status);

  let wave = null; // envelope
  let base = null; // offscreen canvas with the static waveform
  let raf = 0;

  const duration = () => (Number.isFinite(audio.duration) && audio.duration > 0 ? audio.duration : wave ? wave.seconds : 0);

  const drawBase = () => {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const hgt = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== hgt) canvas.height = hgt;
    if (!wave) return;
    base = document.createElement('canvas');
    base.width = w;
    base.height = hgt;
    const g = base.getContext('2d');
    const colors = [cssVar('--caller', '#2f6fe4'), cssVar('--bot', '#e07a1f')];
    const lanes = 2;
    const laneH = hgt / lanes;
    const gain = 1 / Math.max(wave.peak, 0.02);
    g.fillStyle = cssVar('--border', '#dde3ea');
    for (let lane = 0; lane < lanes; lane++) g.fillRect(0, Math.round(laneH * lane + laneH / 2), w, Math.max(1, Math.round(dpr)));
    for (let c = 0; c < wave.env.length; c++) {
      const env = wave.env[c];
      const mid = laneH * c + laneH / 2;
      const amp = (laneH / 2) * 0.9 * gain;
      g.fillStyle = colors[c];
      for (let x = 0; x < w; x++) {
        const b0 = Math.floor((x * wave.buckets) / w);
        const b1 = Math.max(b0 + 1, Math.floor(((x + 1) * wave.buckets) / w));
        let lo = 0;
        let hi = 0;
        for (let b = b0; b < b1 && b < wave.buckets; b++) {
          if (env[2 * b] < lo) lo = env[2 * b];
          if (env[2 * b + 1] > hi) hi = env[2 * b + 1];
        }
        const y1 = mid - hi * amp;
        const y2 = mid - lo * amp;
        g.fillRect(x, y1, 1, Math.max(1, y2 - y1));
      }
    }
  };

  const draw = () => {
    const g = canvas.getContext('2d');
    g.clearRect(0, 0, canvas.width, canvas.height);
    if (base) g.drawImage(base, 0, 0);
    const d = duration();
    if (!d) return;
    const x = Math.min(canvas.width - 1, (audio.currentTime / d) * canvas.width);
    g.fillStyle = 'rgba(120, 130, 150, 0.18)';
    g.fillRect(0, 0, x, canvas.height);
    g.fillStyle = cssVar('--danger', '#c62f2f');
    g.fillRect(Math.round(x), 0, Math.max(2, Math.round(window.devicePixelRatio || 1) * 2), canvas.height);
    canvas.setAttribute('aria-valuemax', String(Math.round(d)));
    canvas.setAttribute('aria-valuenow', String(Math.round(audio.currentTime)));
    canvas.setAttribute('aria-valuetext', `${fmtDuration(audio.currentTime * 1000)} of ${fmtDuration(d * 1000)}`);
  };

  const frame = () => {
    draw();
    raf = audio.paused || audio.ended ? 0 : requestAnimationFrame(frame);
  };
  const kick = () => {
    if (!raf) raf = requestAnimationFrame(frame);
  };
  for (const ev of ['play', 'playing', 'timeupdate', 'seeked', 'seeking', 'loadedmetadata', 'pause', 'ended']) {
    audio.addEventListener(ev, kick);
  }
  audio.addEventListener('error', () => {
    const err = audio.error;
    status.textContent = `The recording cannot be played${err && err.message ? `: ${err.message}` : ''}.`;
  });

  const seekTo = (seconds) => {
    const d = duration();
    if (!d) return;
    audio.currentTime = Math.max(0, Math.min(d, seconds));
    kick();
  };
  canvas.addEventListener('click', (e) => {
    const rect = canvas.getBoundingClientRect();
    if (rect.width > 0) seekTo(((e.clientX - rect.left) / rect.width) * duration());
  });
  canvas.addEventListener('keydown', (e) => {
    const d = duration();
    const step = { ArrowLeft: -5, ArrowDown: -5, ArrowRight: 5, ArrowUp: 5, PageDown: -30, PageUp: 30 }[e.key];
    if (step !== undefined) seekTo(audio.currentTime + step);
    else if (e.key === 'Home') seekTo(0);
    else if (e.key === 'End') seekTo(d);
    else if (e.key === ' ' || e.key === 'Enter') {
      if (audio.paused) audio.play().catch(() => {});
      else audio.pause();
    } else return;
    e.preventDefault();
  });

  const resize = new ResizeObserver(() => {
    drawBase();
    draw();
  });
  resize.observe(canvas);
  ctx.onCleanup(() => {
    resize.disconnect();
    if (raf) cancelAnimationFrame(raf);
    audio.pause();
    audio.removeAttribute('src');
    audio.load();
  });

  // Just after a call ends its file may still be being finished (the API answers 404 for a moment).
  const ended = parseTime(call.ended_at || call.updated_at);
  const fresh = () => ended !== null && Date.now() - ended < 60_000;
  let retry = null;
  ctx.onCleanup(() => clearTimeout(retry));
  const load = (attempt) => fetch(url, { credentials: 'same-origin', cache: 'no-store', signal: ctx.signal })
    .then(async (res) => {
      if (res.status === 401) {
        sessionLost();
        throw new Error('session ended');
      }
      if (res.status === 404 && attempt < 15 && fresh()) {
        status.textContent = 'The recording is being finished…';
        retry = setTimeout(() => load(attempt + 1), 1000);
        return null;
      }
      if (!res.ok) throw new Error(res.status === 404 ? 'the recording is not available' : `HTTP ${res.status}`);
      return res.arrayBuffer();
    })
    .then((buf) => {
      if (!buf || !ctx.alive) return;
      audio.src = url;
      const wav = parseWav(buf);
      wave = envelope(buf, wav, 8192);
      drawBase();
      draw();
      canvas.dataset.state = 'ready';
      const chs = wav.channels === 2 ? 'stereo' : `${wav.channels} channel${wav.channels === 1 ? '' : 's'}`;
      status.textContent = `${fmtDuration(wave.seconds * 1000)} · ${wav.rate} Hz ${chs} PCM16 · ${fmtNumber(buf.byteLength)} bytes`;
    })
    .catch((e) => {
      if (isAbort(e) || !ctx.alive) return;
      canvas.dataset.state = 'error';
      status.textContent = `The recording cannot be shown: ${e.message}.`;
    });
  load(0);
  return section;
}

// ---------------------------------------------------------------------------------------------
// Agents

const AGENT_KINDS = ['echo', 'bridge', 'openai-realtime', 'gemini-live'];
const MASK = '********';
const SETTINGS_TEMPLATES = {
  echo: {},
  bridge: { url: 'wss://bot.example.com/ws?call={call_sid}', protocol: 'exotel' },
  'openai-realtime': { api_key: '', voice: 'marin', language: 'en-IN', instructions: 'You are a helpful phone agent. Be brief.' },
  'gemini-live': { api_key: '', voice: 'Kore', language: 'en-IN', instructions: 'You are a helpful phone agent. Be brief.' },
};

async function viewAgents(main, ctx) {
  const newBtn = h('button', { class: 'btn btn-primary', type: 'button', id: 'new-agent' }, 'New agent');
  main.appendChild(pageHead('Agents', {
    actions: [newBtn],
    sub: 'Each call is served by the agent its agentId names, else the phone\'s default agent, else DEFAULT_AGENT.',
  }));
  const formHost = h('div');
  const errors = errorBox();
  const tbody = h('tbody', null, h('tr', null, h('td', { class: 'empty', colspan: '6' }, 'Loading…')));
  main.append(formHost, errors.el, h('section', { class: 'panel', 'aria-label': 'Agents' },
    h('div', { class: 'table-wrap' }, h('table', { id: 'agents', class: 'cards' },
      h('thead', null, h('tr', null, ['Id', 'Kind', 'Greeting', 'On failure', 'Updated'].map((t) => h('th', { scope: 'col' }, t)),
        h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      tbody))));

  let kinds = AGENT_KINDS;
  const load = async () => {
    const data = await api('GET', '/api/agents', undefined, { signal: ctx.signal });
    if (!ctx.alive) return;
    errors.hide();
    if (Array.isArray(data.kinds) && data.kinds.length) kinds = [...new Set([...AGENT_KINDS.filter((k) => data.kinds.includes(k)), ...data.kinds])];
    const agents = Array.isArray(data.agents) ? data.agents : [];
    clear(tbody);
    if (!agents.length) {
      tbody.appendChild(h('tr', null, h('td', { class: 'empty', colspan: '6' },
        'No agents yet. The built-in kinds (', kinds.join(', '), ') can be used by name.')));
    }
    for (const a of agents) {
      const [edit, del] = editDeleteButtons({
        what: 'agent', name: a.id, path: `/api/agents/${enc(a.id)}`,
        message: 'Calls that name it will get the default agent.', onEdit: () => openForm(a), load, errors,
      });
      const settings = a.settings && typeof a.settings === 'object' ? a.settings : {};
      tbody.appendChild(h('tr', { dataset: { agentId: a.id } },
        h('td', { 'data-label': 'Id' }, h('strong', null, a.id)),
        h('td', { 'data-label': 'Kind' }, h('span', { class: 'badge badge-info badge-plain' }, a.kind)),
        h('td', { 'data-label': 'Greeting', class: 'wrap' }, dash(a.greeting || settings.greeting)),
        h('td', { 'data-label': 'On failure' }, dash(settings.on_failure || 'hangup')),
        h('td', { 'data-label': 'Updated', class: 'nowrap' }, fmtShort(a.updated_at)),
        h('td', { class: 'actions' }, edit, del)));
    }
  };

  const openForm = (agent) => {
    const editing = Boolean(agent);
    const fe = errorBox();
    const id = h('input', { name: 'id', required: true, spellcheck: 'false', autocomplete: 'off', pattern: '[A-Za-z0-9._-]{1,64}', value: agent ? agent.id : '' });
    if (editing) id.readOnly = true;
    const kind = select(kinds.includes(agent && agent.kind) || !agent ? kinds : [...kinds, agent.kind], agent ? agent.kind : 'echo', { name: 'kind' });
    const greeting = h('textarea', { name: 'greeting', rows: '2', value: agent && agent.greeting ? agent.greeting : '' });
    greeting.classList.add('short');
    const initial = agent ? agent.settings || {} : SETTINGS_TEMPLATES[kind.value] || {};
    const settings = h('textarea', { name: 'settings', class: 'code', spellcheck: 'false', value: JSON.stringify(initial, null, 2) });
    let template = editing ? null : settings.value;
    kind.addEventListener('change', () => {
      // A new agent's untouched settings follow the kind.
      if (template !== null && settings.value === template) {
        template = JSON.stringify(SETTINGS_TEMPLATES[kind.value] || {}, null, 2);
        settings.value = template;
      }
    });
    const save = h('button', { class: 'btn btn-primary', type: 'submit' }, editing ? 'Save changes' : 'Create agent');
    const cancel = h('button', { class: 'btn', type: 'button' }, 'Cancel');
    const title = editing ? `Edit agent ${agent.id}` : 'New agent';
    const form = h('form', { class: 'panel', id: 'agent-form', 'aria-labelledby': 'agent-form-title', novalidate: true },
      h('div', { class: 'panel-head' }, h('h2', { id: 'agent-form-title' }, title)),
      h('div', { class: 'panel-body' },
        fe.el,
        h('div', { class: 'form-grid' },
          field('Id', id, editing ? 'The id cannot change.' : 'What a call\'s agentId names: letters, digits, -, _ or .').wrap,
          field('Kind', kind).wrap,
          h('div', { class: 'span-all' }, field('Greeting (optional)', greeting, 'AI agents say this first; {custom.NAME} and {from} are filled in.').wrap),
          h('div', { class: 'span-all' }, field('Settings (JSON)', settings,
            `A JSON object. Secrets (api_key, tool_secret, auth_token) are shown as ${MASK}: leave the mask to keep the stored value, write a new one to replace it, or null to remove it.`).wrap)),
        h('div', { class: 'form-actions' }, save, cancel)));
    cancel.addEventListener('click', () => {
      clear(formHost);
      newBtn.focus();
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      fe.hide();
      const idValue = id.value.trim();
      if (!idValue) {
        fe.show('The id is required.');
        id.focus();
        return;
      }
      let parsed;
      try {
        parsed = settings.value.trim() ? JSON.parse(settings.value) : {};
      } catch (err) {
        fe.show(`Settings are not valid JSON: ${err.message}`);
        settings.focus();
        return;
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
        fe.show('Settings must be a JSON object ({…}).');
        settings.focus();
        return;
      }
      const body = { kind: kind.value, settings: parsed };
      const g = greeting.value.trim();
      if (g || (editing && agent.greeting)) body.greeting = g;
      await withBusy(save, async () => {
        try {
          if (editing) await api('PUT', `/api/agents/${enc(agent.id)}`, body);
          else await api('POST', '/api/agents', { id: idValue, ...body });
          toast(editing ? `Agent ${idValue} saved.` : `Agent ${idValue} created.`);
          await load().catch(() => {});
          clear(formHost);
          const row = tbody.querySelector(`tr[data-agent-id="${CSS.escape(idValue)}"] button`);
          if (row) row.focus();
        } catch (err) {
          if (err.status !== 401) fe.show(err);
        }
      });
    });
    clear(formHost).appendChild(form);
    (editing ? kind : id).focus();
    form.scrollIntoView({ block: 'nearest' });
  };
  newBtn.addEventListener('click', () => openForm(null));

  await load().catch((e) => {
    if (isAbort(e) || !ctx.alive || e.status === 401) return;
    errors.show(e);
  });
}

// ---------------------------------------------------------------------------------------------
// Phones

async function viewPhones(main, ctx) {
  const newBtn = h('button', { class: 'btn btn-primary', type: 'button', id: 'new-phone' }, 'New phone');
  main.appendChild(pageHead('Phones', {
    actions: [newBtn],
    sub: 'ExoPhones with their own Exotel account. Tokens are encrypted at rest and never shown.',
  }));
  const formHost = h('div');
  const errors = errorBox();
  const cols = ['Number', 'Account', 'API key', 'API token', 'Flow id', 'Default agent', 'Max calls'];
  const tbody = h('tbody', null, h('tr', null, h('td', { class: 'empty', colspan: String(cols.length + 1) }, 'Loading…')));
  main.append(formHost, errors.el, h('section', { class: 'panel', 'aria-label': 'Phones' },
    h('div', { class: 'table-wrap' }, h('table', { id: 'phones', class: 'data cards' },
      h('thead', null, h('tr', null, cols.map((t) => h('th', { scope: 'col' }, t)),
        h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      tbody))));

  let agentIds = [];
  const load = async () => {
    const [data, agents] = await Promise.all([
      api('GET', '/api/phones', undefined, { signal: ctx.signal }),
      api('GET', '/api/agents', undefined, { signal: ctx.signal }).catch(() => null),
    ]);
    if (!ctx.alive) return;
    errors.hide();
    if (agents) {
      agentIds = [...new Set([...(agents.agents || []).map((a) => a.id), ...(agents.kinds || [])])];
    }
    const phones = Array.isArray(data.phones) ? data.phones : [];
    clear(tbody);
    if (!phones.length) {
      tbody.appendChild(h('tr', null, h('td', { class: 'empty', colspan: String(cols.length + 1) },
        'No phones yet: calls use the default account from EXOTEL_* settings.')));
    }
    for (const p of phones) {
      const [edit, del] = editDeleteButtons({
        what: 'phone', name: p.number, path: `/api/phones/${enc(p.id)}`,
        message: 'Its credentials are deleted with it.', onEdit: () => openForm(p), load, errors,
      });
      const token = p.has_token || p.api_token ? MASK : '—';
      tbody.appendChild(h('tr', { dataset: { phoneId: p.id } },
        h('td', { 'data-label': 'Number' }, h('span', null, h('strong', null, p.number), h('span', { class: 'sub mono truncate', title: p.id }, p.id))),
        h('td', { 'data-label': 'Account' }, h('span', null, dash(p.account_sid), h('span', { class: 'sub' }, dash(p.subdomain)))),
        h('td', { 'data-label': 'API key', class: 'mono small' }, dash(p.api_key)),
        h('td', { 'data-label': 'API token', class: 'mono small token' }, token),
        h('td', { 'data-label': 'Flow id' }, dash(p.app_id)),
        h('td', { 'data-label': 'Default agent' }, dash(p.default_agent)),
        h('td', { 'data-label': 'Max calls', class: 'num' }, dash(p.max_concurrent)),
        h('td', { class: 'actions' }, edit, del)));
    }
  };

  const openForm = (phone) => {
    const editing = Boolean(phone);
    const fe = errorBox();
    const v = (k) => (phone && phone[k] !== null && phone[k] !== undefined ? String(phone[k]) : '');
    const inputs = {
      id: h('input', { name: 'id', spellcheck: 'false', autocomplete: 'off', value: v('id'), placeholder: editing ? '' : 'generated when empty' }),
      number: h('input', { name: 'number', type: 'tel', required: true, autocomplete: 'off', value: v('number'), placeholder: '+918047112345' }),
      account_sid: h('input', { name: 'account_sid', required: true, spellcheck: 'false', autocomplete: 'off', value: v('account_sid') }),
      api_key: h('input', { name: 'api_key', required: true, spellcheck: 'false', autocomplete: 'off', value: v('api_key') }),
      api_token: h('input', {
        name: 'api_token', type: 'password', autocomplete: 'new-password', spellcheck: 'false',
        placeholder: editing ? `${MASK} (unchanged)` : '', required: !editing,
      }),
      subdomain: select(['api.exotel.com', 'api.in.exotel.com'], v('subdomain') || 'api.exotel.com', { name: 'subdomain' }),
      app_id: h('input', { name: 'app_id', spellcheck: 'false', autocomplete: 'off', value: v('app_id') }),
      default_agent: select([['', '(gateway default)'], ...agentIds], v('default_agent'), { name: 'default_agent' }),
      max_concurrent: h('input', { name: 'max_concurrent', type: 'number', min: '1', step: '1', value: v('max_concurrent'), placeholder: 'no limit' }),
    };
    if (editing && phone.default_agent && !agentIds.includes(phone.default_agent)) {
      inputs.default_agent.appendChild(h('option', { value: phone.default_agent }, phone.default_agent));
      inputs.default_agent.value = phone.default_agent;
    }
    if (editing) inputs.id.readOnly = true;
    const save = h('button', { class: 'btn btn-primary', type: 'submit' }, editing ? 'Save changes' : 'Create phone');
    const cancel = h('button', { class: 'btn', type: 'button' }, 'Cancel');
    const form = h('form', { class: 'panel', id: 'phone-form', 'aria-labelledby': 'phone-form-title', novalidate: true },
      h('div', { class: 'panel-head' }, h('h2', { id: 'phone-form-title' }, editing ? `Edit phone ${phone.number}` : 'New phone')),
      h('div', { class: 'panel-body' },
        fe.el,
        h('div', { class: 'form-grid' },
          field('Number', inputs.number, 'The ExoPhone, E.164.').wrap,
          field('Id', inputs.id, editing ? 'The id cannot change.' : 'Optional.').wrap,
          field('Account SID', inputs.account_sid).wrap,
          field('API key', inputs.api_key).wrap,
          field('API token', inputs.api_token, editing ? 'Write-only: leave empty to keep the stored token.' : 'Write-only: stored encrypted, never shown again.').wrap,
          field('Subdomain', inputs.subdomain, 'Singapore or Mumbai (api.in.exotel.com).').wrap,
          field('Flow (app) id', inputs.app_id, 'The flow with the Voicebot applet (flow mode).').wrap,
          field('Default agent', inputs.default_agent).wrap,
          field('Max concurrent calls', inputs.max_concurrent).wrap),
        h('div', { class: 'form-actions' }, save, cancel)));
    cancel.addEventListener('click', () => {
      clear(formHost);
      newBtn.focus();
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      fe.hide();
      const body = {};
      for (const [k, el] of Object.entries(inputs)) {
        const val = el.value.trim();
        if (k === 'id' && editing) continue;
        if (k === 'api_token' && (val === '' || /^[*•]+$/.test(val))) continue; // blank or the mask: keep it
        if (val === '') continue;
        if (k === 'max_concurrent') {
          const n = Number(val);
          if (!Number.isInteger(n) || n < 1) {
            fe.show('Max concurrent calls must be a whole number, at least 1.');
            el.focus();
            return;
          }
          body[k] = n;
        } else body[k] = val;
      }
      if (!editing) {
        for (const [k, label] of [['number', 'Number'], ['account_sid', 'Account SID'], ['api_key', 'API key'], ['api_token', 'API token']]) {
          if (!body[k]) {
            fe.show(`${label} is required.`);
            inputs[k].focus();
            return;
          }
        }
      }
      await withBusy(save, async () => {
        try {
          if (editing) await api('PUT', `/api/phones/${enc(phone.id)}`, body);
          else await api('POST', '/api/phones', body);
          toast(editing ? `Phone ${body.number || phone.number} saved.` : `Phone ${body.number} created.`);
          await load().catch(() => {});
          clear(formHost);
        } catch (err) {
          if (err.status !== 401) fe.show(err);
        }
      });
    });
    clear(formHost).appendChild(form);
    inputs.number.focus();
    form.scrollIntoView({ block: 'nearest' });
  };
  newBtn.addEventListener('click', () => openForm(null));

  await load().catch((e) => {
    if (isAbort(e) || !ctx.alive || e.status === 401) return;
    errors.show(e);
  });
}

// ---------------------------------------------------------------------------------------------
// Campaigns

const FINAL_CONTACT = ['completed', 'failed', 'exhausted', 'cancelled'];
const PROGRESS_STATES = ['pending', 'dialing', 'in_progress', 'retry_scheduled', 'completed', 'failed', 'exhausted', 'cancelled'];

function progressOf(c) {
  const p = (c && c.progress) || {};
  const total = Number(p.total ?? c.contacts) || 0;
  const done = FINAL_CONTACT.reduce((n, k) => n + (Number(p[k]) || 0), 0);
  const pct = total ? Math.floor((done * 100) / total) : 0;
  return { total, done, pct, p };
}

function progressBar(attrs, small) {
  const fill = h('div', { class: 'progress-fill' });
  const label = h('span', { class: 'progress-label' });
  const el = h('div', {
    class: `progress${small ? ' progress-sm' : ''}`, role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100',
    'aria-valuenow': '0', ...attrs,
  }, fill, label);
  return {
    el,
    set(pct, text) {
      fill.style.width = `${pct}%`;
      setText(label, `${pct}%`);
      el.setAttribute('aria-valuenow', String(pct));
      if (text) el.setAttribute('aria-valuetext', text);
      el.classList.toggle('progress-done', pct >= 100);
    },
  };
}

async function viewCampaigns(main, ctx) {
  const newBtn = h('button', { class: 'btn btn-primary', type: 'button', id: 'new-campaign', 'aria-expanded': 'false', 'aria-controls': 'campaign-form' }, 'New campaign');
  main.appendChild(pageHead('Campaigns', { actions: [newBtn], sub: 'Dial a contact list with an agent, within limits and a calling window.' }));
  const formHost = h('div');
  const errors = errorBox();
  const tbody = h('tbody', null, h('tr', null, h('td', { class: 'empty', colspan: '7' }, 'Loading…')));
  main.append(formHost, errors.el, h('section', { class: 'panel', 'aria-label': 'Campaigns' },
    h('div', { class: 'table-wrap' }, h('table', { id: 'campaigns', class: 'cards' },
      h('thead', null, h('tr', null, ['Name', 'Status', 'Agent', 'Contacts', 'Progress', 'Created', 'Id'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody))));

  const load = async () => {
    const data = await api('GET', '/api/campaigns', undefined, { signal: ctx.signal });
    if (!ctx.alive) return;
    errors.hide();
    const list = Array.isArray(data.campaigns) ? data.campaigns : [];
    list.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    replaceRows(tbody, JSON.stringify(list), () => buildRows(list));
  };
  const buildRows = (list) => {
    if (!list.length) tbody.appendChild(h('tr', null, h('td', { class: 'empty', colspan: '7' }, 'No campaigns yet.')));
    for (const c of list) {
      const { pct, done, total } = progressOf(c);
      const bar = progressBar({ 'aria-label': `Progress of ${c.name}` }, true);
      bar.set(pct, `${done} of ${total} contacts done`);
      const href = `#/campaigns/${enc(c.id)}`;
      tbody.appendChild(h('tr', { dataset: { campaignId: c.id } },
        h('td', { 'data-label': 'Name' }, h('a', { href }, h('strong', null, c.name || c.id))),
        h('td', { 'data-label': 'Status' }, badge(c.status)),
        h('td', { 'data-label': 'Agent' }, dash(c.agent)),
        h('td', { 'data-label': 'Contacts', class: 'num' }, fmtNumber(c.contacts)),
        h('td', { 'data-label': 'Progress' }, h('span', { class: 'nowrap' }, bar.el, h('span', { class: 'sub' }, `${pct}% · ${done}/${total}`))),
        h('td', { 'data-label': 'Created', class: 'nowrap' }, fmtShort(c.created_at)),
        h('td', { 'data-label': 'Id', class: 'mono small' }, c.id)));
    }
  };

  const openForm = async () => {
    if (formHost.firstChild) {
      clear(formHost);
      newBtn.setAttribute('aria-expanded', 'false');
      return;
    }
    newBtn.setAttribute('aria-expanded', 'true');
    const fe = errorBox();
    const [agents, phones] = await Promise.all([
      api('GET', '/api/agents', undefined, { signal: ctx.signal }).catch(() => null),
      api('GET', '/api/phones', undefined, { signal: ctx.signal }).catch(() => null),
    ]);
    if (!ctx.alive) return;
    const agentIds = agents ? [...new Set([...(agents.agents || []).map((a) => a.id), ...(agents.kinds || [])])] : ['echo'];
    const phoneOpts = [['', '(default account)'], ...((phones && phones.phones) || []).map((p) => [p.id, `${p.number} (${p.id})`])];
    const days = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
    const inputs = {
      name: h('input', { name: 'name', required: true, autocomplete: 'off', placeholder: 'Payment reminders' }),
      agent: select(agentIds, agentIds.includes('echo') ? 'echo' : agentIds[0], { name: 'agent' }),
      phone: select(phoneOpts, '', { name: 'phone' }),
      max_concurrent: h('input', { name: 'max_concurrent', type: 'number', min: '1', max: '1000', step: '1', value: '10' }),
      calls_per_minute: h('input', { name: 'calls_per_minute', type: 'number', min: '1', max: '10000', step: '1', value: '200' }),
      file: h('input', { name: 'file', type: 'file', accept: '.csv,text/csv', required: true }),
      phone_column: h('input', { name: 'phone_column', autocomplete: 'off', spellcheck: 'false', placeholder: 'detected' }),
      start: h('input', { name: 'window_start', type: 'time', value: '09:00' }),
      end: h('input', { name: 'window_end', type: 'time', value: '21:00' }),
      timezone: h('input', { name: 'timezone', value: 'Asia/Kolkata', spellcheck: 'false', autocomplete: 'off' }),
      retry: h('textarea', { name: 'retry', class: 'code short', spellcheck: 'false', rows: '4', placeholder: '{"busy": {"after_secs": 300, "max_attempts": 3}}' }),
    };
    const dayBoxes = days.map((d) => h('input', { type: 'checkbox', name: 'days', value: d, checked: true }));
    const submit = h('button', { class: 'btn btn-primary', type: 'submit' }, 'Create campaign');
    const cancel = h('button', { class: 'btn', type: 'button' }, 'Cancel');
    const result = h('div', { class: 'result-box', 'aria-live': 'polite' });
    const form = h('form', { class: 'panel', id: 'campaign-form', 'aria-labelledby': 'campaign-form-title', novalidate: true },
      h('div', { class: 'panel-head' }, h('h2', { id: 'campaign-form-title' }, 'New campaign')),
      h('div', { class: 'panel-body' },
        fe.el,
        h('div', { class: 'form-grid' },
          field('Name', inputs.name).wrap,
          field('Agent', inputs.agent).wrap,
          field('Phone', inputs.phone, 'Which Exotel account dials.').wrap,
          field('Max concurrent calls', inputs.max_concurrent).wrap,
          field('Calls per minute', inputs.calls_per_minute).wrap,
          h('div', { class: 'span-all' }, field('Contacts (CSV file)', inputs.file,
            'UTF-8 CSV with a header line; the phone column is phone, number, to, mobile, phone_number or msisdn. Other columns become the call\'s variables.').wrap)),
        h('details', { class: 'advanced' },
          h('summary', null, 'Calling window, retries, phone column'),
          h('div', { class: 'form-grid' },
            field('Window opens', inputs.start).wrap,
            field('Window closes', inputs.end).wrap,
            field('Time zone', inputs.timezone, 'IANA name, e.g. Asia/Kolkata.').wrap,
            field('Phone column', inputs.phone_column).wrap,
            h('fieldset', { class: 'span-all' }, h('legend', null, 'Days'),
              h('div', { class: 'days' }, days.map((d, i) => h('label', null, dayBoxes[i], d)))),
            h('div', { class: 'span-all' }, field('Retries by outcome (JSON, optional)', inputs.retry,
              'Outcomes busy, no-answer and failed: {"after_secs", "max_attempts"}.').wrap))),
        h('div', { class: 'form-actions' }, submit, cancel),
        result));
    cancel.addEventListener('click', () => {
      clear(formHost);
      newBtn.setAttribute('aria-expanded', 'false');
      newBtn.focus();
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      fe.hide();
      clear(result);
      const file = inputs.file.files && inputs.file.files[0];
      if (!file) {
        fe.show('Choose a CSV file with the contacts.');
        inputs.file.focus();
        return;
      }
      const chosenDays = dayBoxes.filter((b) => b.checked).map((b) => b.value);
      if (!chosenDays.length) {
        fe.show('Choose at least one day for the calling window.');
        dayBoxes[0].focus();
        return;
      }
      const retryText = inputs.retry.value.trim();
      if (retryText) {
        try {
          const r = JSON.parse(retryText);
          if (!r || typeof r !== 'object' || Array.isArray(r)) throw new Error('it must be a JSON object');
        } catch (err) {
          fe.show(`Retries are not valid JSON: ${err.message}`);
          inputs.retry.focus();
          return;
        }
      }
      const fd = new FormData();
      fd.append('name', inputs.name.value.trim() || file.name.replace(/\.csv$/i, ''));
      fd.append('agent', inputs.agent.value);
      if (inputs.phone.value) fd.append('phone', inputs.phone.value);
      if (inputs.max_concurrent.value.trim()) fd.append('max_concurrent', inputs.max_concurrent.value.trim());
      if (inputs.calls_per_minute.value.trim()) fd.append('calls_per_minute', inputs.calls_per_minute.value.trim());
      if (inputs.phone_column.value.trim()) fd.append('phone_column', inputs.phone_column.value.trim());
      fd.append('window', JSON.stringify({
        start: inputs.start.value || '09:00', end: inputs.end.value || '21:00', days: chosenDays,
        timezone: inputs.timezone.value.trim() || 'Asia/Kolkata',
      }));
      if (retryText) fd.append('retry', retryText);
      fd.append('file', file, file.name);
      await withBusy(submit, async () => {
        try {
          const data = await api('POST', '/api/campaigns', fd);
          const c = (data && data.campaign) || {};
          const rejected = Array.isArray(c.rejected) ? c.rejected : [];
          const rejectedTotal = Number(c.rejected_total ?? rejected.length) || 0;
          load().catch(() => {});
          if (!rejectedTotal) {
            toast(`Campaign ${c.name || c.id} created with ${fmtNumber(c.contacts)} contacts.`);
            location.hash = `#/campaigns/${enc(c.id)}`;
            return;
          }
          form.reset();
          clear(result).appendChild(h('div', { class: 'alert alert-warn', id: 'campaign-created', role: 'status' },
            h('p', { class: 'alert-title' },
              `Campaign ${c.name || c.id} created (draft) with ${fmtNumber(c.contacts)} contacts. `,
              `${fmtNumber(rejectedTotal)} ${rejectedTotal === 1 ? 'line was' : 'lines were'} skipped:`),
            lineList(rejected, rejectedTotal - rejected.length),
            h('p', null, h('a', { class: 'btn btn-primary btn-sm', href: `#/campaigns/${enc(c.id)}` }, 'Open campaign'))));
        } catch (err) {
          if (err.status === 401) return;
          fe.show(err);
          fe.el.scrollIntoView({ block: 'nearest' });
        }
      });
    });
    clear(formHost).appendChild(form);
    inputs.name.focus();
  };
  newBtn.addEventListener('click', () => openForm().catch(() => {}));

  ctx.onPollError = (e) => {
    if (e.status !== 401) errors.show(e);
  };
  await poll(ctx, 3000, load);
}

async function viewCampaign(main, ctx, [id]) {
  const head = h('div');
  const errors = errorBox();
  const actionErrors = errorBox();
  const bar = progressBar({ id: 'campaign-progress', 'aria-label': 'Campaign progress' });
  const progressText = h('p', { class: 'muted small', id: 'campaign-progress-text' });
  const tiles = h('div', { class: 'tiles', id: 'campaign-counts' });
  const reason = h('div', { class: 'alert alert-warn', role: 'status', hidden: true });
  const buttons = {
    start: h('button', { class: 'btn btn-primary', type: 'button', dataset: { action: 'start' } }, 'Start'),
    pause: h('button', { class: 'btn', type: 'button', dataset: { action: 'pause' } }, 'Pause'),
    resume: h('button', { class: 'btn btn-primary', type: 'button', dataset: { action: 'resume' } }, 'Resume'),
    cancel: h('button', { class: 'btn btn-danger', type: 'button', dataset: { action: 'cancel' } }, 'Cancel campaign'),
  };
  const download = h('a', { class: 'btn', href: `/api/campaigns/${enc(id)}/results.csv`, download: `${id}-results.csv`, id: 'campaign-results' }, 'Download results');
  const meta = h('div');
  const contactsBody = h('tbody');
  main.append(head, errors.el,
    h('section', { class: 'panel', 'aria-labelledby': 'prog-title' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'prog-title' }, 'Progress'),
        h('div', { class: 'actions' }, buttons.start, buttons.pause, buttons.resume, buttons.cancel, download)),
      h('div', { class: 'panel-body' }, actionErrors.el, reason, bar.el, progressText, tiles)),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'cmeta-title' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'cmeta-title' }, 'Settings')), h('div', { class: 'panel-body' }, meta)),
      h('section', { class: 'panel', 'aria-labelledby': 'contacts-title' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'contacts-title' }, 'Contacts'), h('span', { class: 'muted small' }, 'first 100')),
        h('div', { class: 'table-wrap' }, h('table', { id: 'campaign-contacts', class: 'data' },
          h('thead', null, h('tr', null, ['Line', 'Phone', 'State', 'Attempts', 'Outcome', 'Call'].map((t) => h('th', { scope: 'col' }, t)))),
          contactsBody)))));

  let campaign = null;
  for (const [action, button] of Object.entries(buttons)) {
    button.addEventListener('click', async () => {
      if (action === 'cancel') {
        const ok = await ask({ title: 'Cancel this campaign?', message: 'No more contacts are dialed; calls in flight finish. This cannot be undone.', confirm: 'Cancel campaign', danger: true });
        if (!ok) return;
      }
      actionErrors.hide();
      await withBusy(button, async () => {
        try {
          const data = await api('POST', `/api/campaigns/${enc(id)}/${action}`, {});
          if (data && data.campaign) update(data.campaign);
          toast(`Campaign ${action === 'cancel' ? 'cancelled' : action === 'start' ? 'started' : action === 'pause' ? 'paused' : 'resumed'}.`);
        } catch (e) {
          if (e.status !== 401) actionErrors.show(e);
        }
      });
      if (campaign) setButtons(campaign.status);
    });
  }
  const setButtons = (status) => {
    buttons.start.hidden = status !== 'draft';
    buttons.pause.hidden = status !== 'running';
    buttons.resume.hidden = status !== 'paused';
    buttons.cancel.hidden = !['draft', 'running', 'paused'].includes(status);
  };

  let headStatus = null;
  const update = (c) => {
    campaign = c;
    if (headStatus !== c.status) {
      const hadFocus = head.contains(document.activeElement);
      clear(head).appendChild(pageHead(c.name || c.id, {
        back: ['#/campaigns', 'Campaigns'], badgeEl: badge(c.status, { id: 'campaign-status' }), sub: `id ${c.id}`,
      }));
      if (hadFocus) head.querySelector('h1').focus();
      headStatus = c.status;
    }
    setButtons(c.status);
    reason.hidden = !c.status_reason;
    setText(reason, c.status_reason || '');
    const { pct, done, total, p } = progressOf(c);
    bar.set(pct, `${done} of ${total} contacts done`);
    setText(progressText, `${fmtNumber(done)} of ${fmtNumber(total)} contacts done${c.rejected ? ` · ${fmtNumber(c.rejected)} rejected at import` : ''}`);
    clear(tiles);
    for (const k of PROGRESS_STATES) {
      tiles.appendChild(h('div', { class: 'tile', dataset: { state: k } },
        h('span', { class: 'n' }, fmtNumber(Number(p[k]) || 0)), h('span', { class: 'l' }, k.replace(/_/g, ' '))));
    }
    const w = c.window && typeof c.window === 'object' ? c.window : null;
    const r = c.retry && typeof c.retry === 'object' ? c.retry : null;
    clear(meta).appendChild(kv([
      ['Agent', c.agent],
      ['Phone', c.phone_id || '(default account)'],
      ['Account', c.account_sid],
      ['Max concurrent', fmtNumber(c.max_concurrent)],
      ['Calls per minute', fmtNumber(c.calls_per_minute)],
      ['Window', w ? `${w.start}–${w.end} ${Array.isArray(w.days) ? w.days.join(', ') : ''} (${w.timezone})` : null],
      ['Retries', r && Object.keys(r).length ? Object.entries(r).map(([k, x]) => `${k}: every ${x.after_secs}s, ${x.max_attempts} dials`).join('; ') : 'none'],
      ['Phone column', c.phone_column],
      ['Columns', Array.isArray(c.columns) ? c.columns.join(', ') : null],
      ['Created', fmtDateTime(c.created_at)],
      ['Started', c.started_at ? fmtDateTime(c.started_at) : null],
      ['Ended', c.ended_at ? fmtDateTime(c.ended_at) : null],
    ]));
  };

  const renderContacts = (list) => replaceRows(contactsBody, JSON.stringify(list), () => {
    if (!list.length) contactsBody.appendChild(h('tr', null, h('td', { class: 'empty', colspan: '6' }, 'No contacts.')));
    for (const ct of list) {
      contactsBody.appendChild(h('tr', null,
        h('td', { class: 'num' }, fmtNumber(ct.line)),
        h('td', null, ct.phone),
        h('td', null, badge(ct.state)),
        h('td', { class: 'num' }, fmtNumber(ct.attempts)),
        h('td', null, dash(ct.last_outcome)),
        h('td', null, ct.last_call_id ? h('a', { href: `#/calls/${enc(ct.last_call_id)}`, class: 'mono small' }, ct.last_call_id) : '—')));
    }
  });

  let tick = 0;
  ctx.onPollError = (e) => {
    if (e.status === 401) return;
    if (!campaign) {
      clear(head).appendChild(pageHead('Campaign', { back: ['#/campaigns', 'Campaigns'] }));
      errors.show(e.status === 404 ? `No campaign ${id}.` : e);
    } else errors.show(`Progress could not be updated: ${e.message}`);
  };
  await poll(ctx, 1000, async () => {
    if (campaign && ['completed', 'cancelled'].includes(campaign.status) && tick++ % 10 !== 0) return;
    const [data, contacts] = await Promise.all([
      api('GET', `/api/campaigns/${enc(id)}`, undefined, { signal: ctx.signal }),
      api('GET', `/api/campaigns/${enc(id)}/contacts?limit=100`, undefined, { signal: ctx.signal }).catch((e) => {
        if (isAbort(e)) throw e;
        return null;
      }),
    ]);
    if (!ctx.alive) return;
    errors.hide();
    update(data.campaign || data);
    if (contacts && Array.isArray(contacts.contacts)) renderContacts(contacts.contacts);
  });
}

// ---------------------------------------------------------------------------------------------
// Boot

function boot() {
  document.getElementById('signin-form').addEventListener('submit', (e) => {
    signIn(e).catch(() => {});
  });
  document.getElementById('signout').addEventListener('click', () => {
    signOut().catch(() => {});
  });
  const toggle = document.getElementById('nav-toggle');
  toggle.addEventListener('click', () => {
    const sidebar = document.querySelector('.sidebar');
    const open = !sidebar.classList.contains('open');
    sidebar.classList.toggle('open', open);
    toggle.setAttribute('aria-expanded', String(open));
  });
  document.getElementById('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const main = document.getElementById('main');
    const h1 = main.querySelector('h1');
    (h1 || main).focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeNav();
  });
  window.addEventListener('hashchange', () => {
    if (!location.hash.startsWith('#/')) return;
    render();
  });
  checkSession();
}

boot();
