// tempalias page: creates an alias through the JSON API, remembers the last
// choices in localStorage and keeps the bookmarklet link up to date. Without
// this script the form still posts to /aliases and gets an HTML page back.
'use strict';

(function () {
  const form = document.getElementById('create');
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const fields = { target: $('target'), days: $('days'), 'max-usage': $('max-usage') };
  const storeKey = 'tempalias.choices';
  let current = null; // {id, token} of the alias shown

  // Remembered choices.
  try {
    const saved = JSON.parse(localStorage.getItem(storeKey) || '{}');
    for (const k in fields) {
      if (typeof saved[k] === 'string') fields[k].value = saved[k];
    }
  } catch (e) { /* storage off or garbled: start empty */ }

  function choices() {
    const c = {};
    for (const k in fields) c[k] = fields[k].value.trim();
    return c;
  }
  function remember() {
    try { localStorage.setItem(storeKey, JSON.stringify(choices())); } catch (e) { /* private mode */ }
  }

  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

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

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('error').hidden = true;
    const c = choices();
    const req = { target: c.target };
    for (const k of ['days', 'max-usage']) {
      if (c[k] === '') continue;
      const n = Number(c[k]);
      if (!Number.isInteger(n)) {
        showError((k === 'days' ? 'Days' : 'The number of messages') + ' must be a whole number, like 3.');
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
        showError('Could not create the alias: ' + await describe(resp));
        return;
      }
      const a = await resp.json();
      remember();
      show(a);
    } catch (e) {
      showError('Could not reach the server. Check your connection and try again.');
    } finally {
      button.disabled = false;
    }
  });

  function show(a) {
    current = { id: a.id, token: a.token };
    $('alias').textContent = a.alias;
    $('lifetime').textContent = a.lifetime;
    $('pending').hidden = a.status !== 'pending';
    $('token').textContent = a.token;
    $('copied').textContent = '';
    $('status').textContent = '';
    $('revoked').textContent = '';
    $('revoke').disabled = false;
    const r = $('result');
    r.hidden = false;
    r.focus();
  }

  $('copy').addEventListener('click', async () => {
    const text = $('alias').textContent;
    try {
      await navigator.clipboard.writeText(text);
      $('copied').textContent = 'Copied to the clipboard.';
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents($('alias'));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      $('copied').textContent = 'Selected; press Ctrl+C (or ⌘C) to copy.';
    }
  });

  // Status: what the token holder may see of the alias while it lives.
  $('status-check').addEventListener('click', async () => {
    if (!current) return;
    try {
      const resp = await fetch('/aliases/' + encodeURIComponent(current.id), {
        headers: { 'Authorization': 'Bearer ' + current.token },
        credentials: 'omit',
      });
      if (resp.status === 404) {
        $('status').textContent = 'This alias is gone: it expired or was revoked.';
        return;
      }
      if (!resp.ok) {
        $('status').textContent = 'Could not check: ' + await describe(resp);
        return;
      }
      const a = await resp.json();
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
      $('status').textContent = text;
    } catch (e) {
      $('status').textContent = 'Could not reach the server.';
    }
  });

  $('revoke').addEventListener('click', async () => {
    if (!current) return;
    const button = $('revoke');
    button.disabled = true;
    try {
      const resp = await fetch('/aliases/' + encodeURIComponent(current.id), {
        method: 'DELETE',
        headers: { 'Authorization': 'Bearer ' + current.token },
        credentials: 'omit',
      });
      if (resp.status === 204) {
        $('revoked').textContent = 'Revoked. Mail to ' + $('alias').textContent + ' is refused from now on.';
      } else if (resp.status === 404) {
        $('revoked').textContent = 'This alias is already gone.';
      } else {
        $('revoked').textContent = 'Could not revoke: ' + await describe(resp);
        button.disabled = false;
      }
    } catch (e) {
      $('revoked').textContent = 'Could not reach the server; the alias is still active.';
      button.disabled = false;
    }
  });

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
  for (const k in fields) fields[k].addEventListener('input', () => { updateBookmarklet(); remember(); });
  updateBookmarklet();
  $('bookmarklet-section').hidden = false;

  for (const el of document.querySelectorAll('.origin')) el.textContent = location.origin;
})();
