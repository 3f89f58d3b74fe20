// tempalias page: creates an alias through the JSON API, remembers the last
// choices and (unless told not to) the aliases it made in localStorage,
// lists those with their live status, and keeps the bookmarklet link up to
// date. Without this script the form still posts to /aliases and gets an
// HTML page back.
'use strict';

(function () {
  const form = document.getElementById('create');
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const mine = window.tempaliasMine;
  const fields = { target: $('target'), days: $('days'), 'max-usage': $('max-usage') };
  const storeKey = 'tempalias.choices';
  let limits = null; // from GET /limits
  const restored = {}; // fields filled from storage, untouched since
  // The server's sentences explain a bad value better than a browser's
  // bubble, and the same way on every browser.
  form.noValidate = true;

  // Remembered choices, each only if it is still a valid entry.
  try {
    const saved = JSON.parse(localStorage.getItem(storeKey) || '{}');
    for (const k in fields) {
      if (!saved || typeof saved[k] !== 'string' || saved[k] === '') continue;
      fields[k].value = saved[k];
      if (fields[k].checkValidity()) restored[k] = true;
      else fields[k].value = '';
    }
  } catch (e) { /* storage off or garbled: start empty */ }

  function choices() {
    const c = {};
    for (const k in fields) c[k] = fields[k].value.trim();
    return c;
  }
  function remember() {
    const c = choices();
    for (const k in fields) if (!fields[k].checkValidity()) c[k] = '';
    try { localStorage.setItem(storeKey, JSON.stringify(c)); } catch (e) { /* private mode */ }
  }

  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

  // The service's bounds, stated next to the fields they bound.
  async function loadLimits() {
    try {
      const resp = await fetch('/limits', { credentials: 'omit' });
      if (!resp.ok) return;
      const l = await resp.json();
      if (!Number.isInteger(l['default-days']) || !Number.isInteger(l['max-days']) || !Number.isInteger(l['max-usage'])) return;
      limits = l;
    } catch (e) {
      return; // the generic help stays
    }
    $('days-help').textContent = 'Leave empty for this service\'s default, ' + plural(limits['default-days'], 'day', 'days') +
      '. At most ' + plural(limits['max-days'], 'day', 'days') + '.';
    $('max-help').textContent = 'Leave empty for no limit by count. At most ' + plural(limits['max-usage'], 'message', 'messages') + '.';
    fields.days.placeholder = String(limits['default-days']);
    fields.days.max = limits['max-days'];
    fields['max-usage'].max = limits['max-usage'];
    for (const el of document.querySelectorAll('.change-days')) el.max = limits['max-days'];
    for (const el of document.querySelectorAll('.change-max')) el.max = limits['max-usage'];
    // A remembered choice the limits no longer allow is dropped.
    for (const k in restored) {
      if (restored[k] && !fields[k].checkValidity()) {
        fields[k].value = '';
        restored[k] = false;
        updateBookmarklet();
      }
    }
  }

  function showError(text) {
    const e = $('error');
    e.textContent = text;
    e.hidden = false;
  }

  async function describe(resp) {
    try {
      const body = await resp.json();
      if (body && body.description) {
        let text = body.description;
        if (resp.status === 429 && resp.headers.get('Retry-After')) {
          text += ' (You can try again in ' + plural(Number(resp.headers.get('Retry-After')), 'second', 'seconds') + '.)';
        }
        return text;
      }
    } catch (e) { /* not JSON */ }
    return 'The server answered ' + resp.status + ' ' + resp.statusText + '.';
  }

  // statusText is the one sentence for an alias's view from the API.
  function statusText(a) {
    const expires = new Date(a.expires).toLocaleString();
    let text;
    if (a.status === 'used-up') {
      // Dead for mail; shown to its holder until it expires.
      text = 'Used up: it refuses all mail now. Relayed ' + plural(a.relayed, 'message', 'messages') +
        '; ' + plural(a.refused, 'message', 'messages') + ' refused since. It is deleted ' + expires + '.';
    } else {
      text = (a.status === 'pending' ? 'Waiting for your confirmation. ' : 'Active. ') +
        'Relayed ' + plural(a.relayed, 'message', 'messages');
      if (a.remaining != null) text += ', ' + a.remaining + ' left';
      text += '; it expires ' + expires + '.';
    }
    if (Array.isArray(a['allow-from']) && a['allow-from'].length) text += ' Only from ' + a['allow-from'].join(', ') + '.';
    return text;
  }

  // api calls our own API for entry e ({id, token}); the token goes in the
  // Authorization header only.
  function api(e, method, body) {
    const init = { method: method, headers: { 'Authorization': 'Bearer ' + e.token }, credentials: 'omit' };
    if (body) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch('/aliases/' + encodeURIComponent(e.id), init);
  }

  // bindAlias wires the controls found in root (by class) to entry e:
  // Check status, the change form, Revoke. The result card and every
  // remembered alias share it; after runs when a change or revoke worked.
  function bindAlias(root, e, after) {
    const q = (c) => root.querySelector('.' + c);
    const status = q('status');
    const say = (t) => { status.textContent = t; };
    let gone = false;
    // The lifetime sentence, where root shows one (the result card),
    // follows the latest view: after a change it counts from now.
    const lifetime = q('lifetime');
    const update = (a) => { if (lifetime && a.lifetime) lifetime.textContent = a.lifetime; };
    function dead(text) {
      gone = true;
      say(text);
      for (const c of ['change-toggle', 'revoke']) q(c).disabled = true;
      change.hidden = true;
      root.classList.add('gone');
    }
    async function check() {
      try {
        const resp = await api(e, 'GET');
        if (resp.status === 404) { dead('Gone: it expired or was revoked.'); return; }
        if (!resp.ok) { say('Could not check: ' + await describe(resp)); return; }
        const a = await resp.json();
        say(statusText(a));
        update(a);
        allowShown = Array.isArray(a['allow-from']) ? a['allow-from'].join(', ') : '';
        if (change.hidden) allow.value = allowShown;
      } catch (err) {
        say('Could not reach the server.');
      }
    }

    const change = $('change-template').content.firstElementChild.cloneNode(true);
    q('actions').after(change);
    const days = change.querySelector('.change-days');
    const max = change.querySelector('.change-max');
    const allow = change.querySelector('.change-allow');
    let allowShown = '';
    if (limits) { days.max = limits['max-days']; max.max = limits['max-usage']; }
    const toggle = q('change-toggle');
    function openChange(open) {
      change.hidden = !open;
      toggle.setAttribute('aria-expanded', String(open));
      if (open) { allow.value = allowShown; days.focus(); }
    }
    toggle.addEventListener('click', () => openChange(change.hidden));
    change.querySelector('.change-cancel').addEventListener('click', () => openChange(false));
    change.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = {};
      for (const [k, el, what] of [['days', days, 'Days'], ['max-usage', max, 'The number of messages']]) {
        const v = el.value.trim();
        if (v === '') continue;
        const n = Number(v);
        if (!Number.isInteger(n)) { say(what + ' must be a whole number, like 3.'); el.focus(); return; }
        body[k] = n;
      }
      const a = allow.value.trim();
      if (a !== allowShown) body['allow-from'] = a === '' ? [] : a.split(',').map((x) => x.trim()).filter((x) => x !== '');
      if (Object.keys(body).length === 0) { say('Nothing to change: fill in the days, the messages or the senders.'); return; }
      const save = change.querySelector('.change-save');
      save.disabled = true;
      try {
        const resp = await api(e, 'PATCH', body);
        if (resp.status === 404) { dead('Gone: it expired or was revoked.'); return; }
        if (resp.status !== 200) { say('Could not change it: ' + await describe(resp)); return; }
        const v = await resp.json();
        update(v);
        allowShown = Array.isArray(v['allow-from']) ? v['allow-from'].join(', ') : '';
        days.value = '';
        max.value = '';
        openChange(false);
        say('Changed. ' + statusText(v));
        if (after) after();
      } catch (err) {
        say('Could not reach the server; nothing was changed.');
      } finally {
        save.disabled = false;
      }
    });

    q('status-check').addEventListener('click', check);
    const revoke = q('revoke');
    revoke.addEventListener('click', async () => {
      revoke.disabled = true;
      try {
        const resp = await api(e, 'DELETE');
        if (resp.status === 204) {
          dead('Revoked. Mail to ' + e.alias + ' is refused from now on.');
          if (after) after();
        } else if (resp.status === 404) {
          dead('This alias is already gone.');
        } else {
          say('Could not revoke: ' + await describe(resp));
          revoke.disabled = gone;
        }
      } catch (err) {
        say('Could not reach the server; the alias is still active.');
        revoke.disabled = gone;
      }
    });
    return { check: check };
  }

  async function copyText(text, node, note) {
    try {
      await navigator.clipboard.writeText(text);
      note.textContent = 'Copied to the clipboard.';
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(node);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      note.textContent = 'Selected; press Ctrl+C (or ⌘C) to copy.';
    }
  }

  // My aliases on this device.
  function renderMine() {
    const list = mine.load();
    const ul = $('mine');
    ul.textContent = '';
    $('mine-section').hidden = list.length === 0;
    for (const e of list) {
      const li = $('mine-template').content.firstElementChild.cloneNode(true);
      li.dataset.id = e.id;
      li.querySelector('.mine-alias').textContent = e.alias;
      li.querySelector('.mine-target').textContent = 'Forwards to ' + e.target;
      const status = li.querySelector('.status');
      status.textContent = 'Checking…';
      li.querySelector('.copy').addEventListener('click', () => copyText(e.alias, li.querySelector('.mine-alias'), status));
      li.querySelector('.forget').addEventListener('click', () => {
        mine.forget(e.id);
        renderMine();
      });
      ul.appendChild(li);
      bindAlias(li, e).check();
    }
  }
  window.addEventListener('storage', (ev) => { if (ev.key === mine.key || ev.key === null) renderMine(); });

  const rememberBox = $('remember');
  rememberBox.checked = mine.remembering();
  rememberBox.addEventListener('change', () => mine.setRemembering(rememberBox.checked));
  $('remember-field').hidden = false;

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('error').hidden = true;
    $('error').textContent = '';
    const c = choices();
    const req = { target: c.target };
    for (const k of ['days', 'max-usage']) {
      if (c[k] === '') continue;
      const n = Number(c[k]);
      if (!Number.isInteger(n)) {
        failed((k === 'days' ? 'Days' : 'The number of messages') + ' must be a whole number, like 3.');
        fields[k].focus();
        return;
      }
      req[k] = n;
    }
    const button = $('submit');
    button.disabled = true;
    try {
      const resp = await fetch('/aliases', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
        body: JSON.stringify(req),
        credentials: 'omit',
      });
      if (resp.status !== 201) {
        failed('Could not create the alias: ' + await describe(resp));
        return;
      }
      const a = await resp.json();
      remember();
      show(a);
    } catch (e) {
      failed('Could not reach the server. Check your connection and try again.');
    } finally {
      button.disabled = false;
    }
  });

  // failed shows an error of the latest request and hides the card of an
  // earlier one, which it did not produce.
  function failed(text) {
    $('result').hidden = true;
    showError(text);
  }

  // show fills the result card with a new alias; the card is rebuilt so
  // that no control still acts on the previous one.
  let resultTemplate = null;
  function show(a) {
    const old = $('result');
    if (!resultTemplate) resultTemplate = old.cloneNode(true);
    const r = resultTemplate.cloneNode(true);
    old.replaceWith(r);
    $('alias').textContent = a.alias;
    $('lifetime').textContent = a.lifetime;
    $('pending').hidden = a.status !== 'pending';
    $('token').textContent = a.token;
    $('copy').addEventListener('click', () => copyText($('alias').textContent, $('alias'), $('copied')));
    const added = mine.add(a);
    bindAlias(r, a, added ? renderMine : null);
    if (added) {
      const strong = document.createElement('strong');
      strong.textContent = 'Management token';
      $('token-help').replaceChildren(strong, ' — kept with the alias in this browser, under My aliases below. Copy it too if you may want to check, change or end the alias elsewhere.');
      renderMine();
    }
    r.hidden = false;
    r.focus();
  }

  // The bookmarklet. bookmarklet() runs on other people's pages, so it is
  // self-contained ES5-ish code with its settings passed as arguments: it
  // opens /bookmarklet.html on our origin in a popup (a page's CSP cannot
  // forbid that, unlike fetch or <script src>), checks a handshake over
  // postMessage and fills in the alias it gets back.
  function bookmarklet(base, target, days, max) {
    var d = document, field = d.activeElement, nonce = '', i, note;
    var rnd = new Uint32Array(4);
    crypto.getRandomValues(rnd);
    for (i = 0; i < 4; i++) nonce += rnd[i].toString(36);
    function isField(e) {
      return !!e && ((e.tagName === 'INPUT' && /^(email|text|search|)$/i.test(e.getAttribute('type') || '')) || e.tagName === 'TEXTAREA') && !e.disabled && !e.readOnly;
    }
    function say(text) {
      if (!note) {
        note = d.createElement('div');
        note.id = 'tempalias-note';
        note.setAttribute('role', 'status');
        var s = note.style;
        s.position = 'fixed'; s.zIndex = '2147483647'; s.right = '12px'; s.bottom = '12px';
        s.maxWidth = '22em'; s.padding = '10px 14px'; s.borderRadius = '8px';
        s.font = '15px/1.4 system-ui, sans-serif'; s.color = '#fff'; s.background = '#1d4e89';
        s.boxShadow = '0 2px 10px rgba(0,0,0,.3)'; s.cursor = 'pointer';
        note.onclick = function () { note.remove(); };
        d.body.appendChild(note);
        setTimeout(function () { note.remove(); }, 8000);
      }
      note.textContent = 'tempalias: ' + text;
    }
    function fill(el, value) {
      var p = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el), 'value');
      if (p && p.set) p.set.call(el, value); else el.value = value;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
      say(value + ' filled in.');
    }
    var q = 'target=' + encodeURIComponent(target) + '&days=' + encodeURIComponent(days) +
      '&max-usage=' + encodeURIComponent(max) + '&origin=' + encodeURIComponent(location.origin) + '&nonce=' + nonce;
    var w = window.open(base + '/bookmarklet.html#' + q, '_blank', 'popup,width=460,height=360');
    if (!w) { say('the popup was blocked; allow popups for this site and try again.'); return; }
    say('creating an alias…');
    function onMessage(e) {
      var m = e.data;
      if (e.origin !== base || e.source !== w || !m || m.nonce !== nonce) return;
      if (m.type === 'tempalias-ready') {
        w.postMessage({ type: 'tempalias-go', nonce: nonce }, base);
      } else if (m.type === 'tempalias-error') {
        removeEventListener('message', onMessage);
        say(String(m.error));
      } else if (m.type === 'tempalias-alias') {
        removeEventListener('message', onMessage);
        var a = String(m.alias);
        if (isField(field)) {
          fill(field, a);
        } else {
          say('click the email field to fill in ' + a);
          d.addEventListener('focusin', function next(ev) {
            if (!isField(ev.target)) return;
            d.removeEventListener('focusin', next, true);
            fill(ev.target, a);
          }, true);
        }
      }
    }
    addEventListener('message', onMessage);
  }

  const bm = $('bookmarklet');
  function updateBookmarklet() {
    const c = choices();
    const args = [location.origin, c.target, c.days, c['max-usage']].map((v) => JSON.stringify(v)).join(',');
    bm.href = 'javascript:' + encodeURIComponent('(' + bookmarklet.toString() + ')(' + args + ');void 0');
    bm.textContent = c.target ? 'tempalias → ' + c.target : 'tempalias';
  }
  bm.addEventListener('click', (ev) => {
    ev.preventDefault();
    $('bm-hint').textContent = 'Drag the link to your bookmarks bar; it works on other sites, not on this page.';
  });
  for (const k in fields) fields[k].addEventListener('input', () => { restored[k] = false; updateBookmarklet(); remember(); });
  updateBookmarklet();
  // A phone or tablet has no bookmarks bar to drag the link to.
  if (matchMedia('(hover: none) and (pointer: coarse)').matches && !matchMedia('(any-pointer: fine)').matches) {
    $('bm-text').textContent = 'On a phone or tablet there is no bookmarks bar to drag this to. Instead, create the alias here, tap Copy and paste it into the sign-up form; My aliases keeps it for you.';
    bm.parentElement.hidden = true;
  }
  $('bookmarklet-section').hidden = false;
  renderMine();
  loadLimits();

  for (const el of document.querySelectorAll('.origin')) el.textContent = location.origin;
})();
