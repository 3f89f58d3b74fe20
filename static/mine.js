// tempalias: the aliases this browser remembers ("My aliases on this
// device"), shared by the page and the bookmarklet's popup, which run on
// the same origin. Each entry holds the alias's management token, so it
// stays in this origin's localStorage: it is sent only to our own API, in
// the Authorization header, never in a URL. Anything in storage that does
// not look like an entry is skipped, so a damaged value cannot break the
// page.
'use strict';

window.tempaliasMine = (function () {
  const listKey = 'tempalias.aliases';
  const rememberKey = 'tempalias.remember';
  const idRE = /^[0-9a-z]{1,64}$/;
  const tokenRE = /^[\x21-\x7e]{8,512}$/; // fits a header value as it is

  function valid(e) {
    return !!e && typeof e === 'object' &&
      typeof e.id === 'string' && idRE.test(e.id) &&
      typeof e.token === 'string' && tokenRE.test(e.token) &&
      typeof e.alias === 'string' && e.alias.length <= 320 &&
      typeof e.target === 'string' && e.target.length <= 320;
  }

  function load() {
    let list;
    try {
      list = JSON.parse(localStorage.getItem(listKey) || '[]');
    } catch (e) {
      return []; // storage off or garbled
    }
    if (!Array.isArray(list)) return [];
    const seen = {};
    return list.filter((e) => valid(e) && !seen[e.id] && (seen[e.id] = true))
      .map((e) => ({ id: e.id, alias: e.alias, target: e.target, token: e.token }));
  }

  function save(list) {
    try {
      localStorage.setItem(listKey, JSON.stringify(list));
      return true;
    } catch (e) {
      return false; // private mode or full
    }
  }

  return {
    load: load,
    // add remembers a created alias (the API's 201 body) when the visitor
    // has not said no; it reports whether it did.
    add: function (a) {
      if (!this.remembering()) return false;
      const e = { id: a.id, alias: a.alias, target: a.target, token: a.token };
      if (!valid(e)) return false;
      const list = load().filter((x) => x.id !== e.id);
      list.unshift(e);
      return save(list);
    },
    forget: function (id) { return save(load().filter((x) => x.id !== id)); },
    remembering: function () {
      try { return localStorage.getItem(rememberKey) !== 'no'; } catch (e) { return false; }
    },
    setRemembering: function (on) {
      try { localStorage.setItem(rememberKey, on ? 'yes' : 'no'); } catch (e) { /* private mode */ }
    },
    key: listKey,
  };
})();
