// tempalias bookmarklet popup. The bookmarklet opens this page on our own
// origin with its settings in the fragment (never sent to the server). The
// page that opened us says which origin it is on; a handshake proves it:
// we post "ready" to that origin only, and act on "go" only from our opener
// at that origin carrying the same nonce. The alias goes back the same way.
// The token never leaves this origin: it is shown here and, unless the
// visitor said no on the main page, kept in My aliases (mine.js).
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const p = new URLSearchParams(location.hash.slice(1));
  const nonce = p.get('nonce') || '';
  const origin = p.get('origin') || '';
  const req = { target: (p.get('target') || '').trim() };
  let started = false;

  function status(text) { $('status').textContent = text; }
  function fail(text) {
    status('');
    $('error').textContent = text;
    $('error').hidden = false;
  }

  function validOrigin(o) {
    try {
      const u = new URL(o);
      return (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === o;
    } catch (e) {
      return false;
    }
  }

  for (const k of ['days', 'max-usage']) {
    const v = (p.get(k) || '').trim();
    if (v === '') continue;
    const n = Number(v);
    req[k] = Number.isInteger(n) ? n : v; // the API explains what is wrong
  }

  async function create() {
    if (started) return;
    started = true;
    status('Creating an alias for ' + (req.target || '(no address set)') + '…');
    let resp;
    try {
      resp = await fetch('/aliases', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
        body: JSON.stringify(req),
        credentials: 'omit',
      });
    } catch (e) {
      return { error: 'could not reach the tempalias server.' };
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    if (resp.status !== 201 || !body || !body.alias) {
      return { error: (body && body.description) || ('the server answered ' + resp.status + '.') };
    }
    return { alias: body };
  }

  function showAlias(a) {
    status('');
    $('alias').textContent = a.alias;
    $('lifetime').textContent = a.lifetime;
    $('pending').hidden = a.status !== 'pending';
    $('token').textContent = a.token;
    $('remembered').textContent = window.tempaliasMine.add(a)
      ? 'Kept under My aliases on the tempalias page, in this browser.'
      : 'The token is shown only here: keep it if you may want to end the alias early.';
    $('result').hidden = false;
  }

  const opener = window.opener;
  if (!opener) {
    // The site cut the link to its popups (Cross-Origin-Opener-Policy), or
    // this page was opened directly: create only on an explicit click and
    // show the alias here to copy by hand.
    status('This window cannot talk to the page that opened it. You can create the alias here and copy it.');
    const b = $('create');
    b.hidden = false;
    b.addEventListener('click', async () => {
      b.disabled = true;
      const r = await create();
      if (r.error) { fail('Could not create the alias: ' + r.error); return; }
      b.hidden = true;
      showAlias(r.alias);
    });
    return;
  }
  if (!validOrigin(origin) || nonce.length < 8) {
    fail('This window was opened with broken settings. Drag a fresh bookmarklet from the tempalias page.');
    return;
  }

  // The handshake proves which site opened us, not that its visitor asked
  // for an alias: any site can open this page. So nothing is created until
  // the person clicks here, having read where the alias goes and for whom.
  function confirmed() {
    return new Promise((resolve) => {
      status('');
      $('ask').textContent = 'Create an alias forwarding to ' + (req.target || '(no address set)') +
        ' and fill it in on ' + origin + '?';
      $('ask').hidden = false;
      const b = $('confirm');
      b.hidden = false;
      b.focus();
      b.addEventListener('click', () => {
        b.disabled = true;
        $('ask').hidden = true;
        b.hidden = true;
        resolve();
      }, { once: true });
    });
  }

  window.addEventListener('message', async (e) => {
    const m = e.data;
    if (e.source !== opener || e.origin !== origin || !m || m.type !== 'tempalias-go' || m.nonce !== nonce) return;
    if (started) return;
    await confirmed();
    const r = await create();
    if (r.error) {
      opener.postMessage({ type: 'tempalias-error', nonce: nonce, error: r.error }, origin);
      fail('Could not create the alias: ' + r.error);
      return;
    }
    opener.postMessage({ type: 'tempalias-alias', nonce: nonce, alias: r.alias.alias }, origin);
    showAlias(r.alias);
    // Not closed by itself: the token below is shown only here.
    status('Filled in on ' + origin + '. You can close this window.');
  });
  opener.postMessage({ type: 'tempalias-ready', nonce: nonce }, origin);
})();
