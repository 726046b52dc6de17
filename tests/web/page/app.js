// A minimal web chat on strophe.js: log in over BOSH or WebSocket (the
// service URL decides), show contacts' presence and messages, send messages.
/* global Strophe */
(function () {
  'use strict';
  // the UMD bundle defines the global Strophe (and $msg, $pres, ...)
  const lib = window.Strophe;
  const S = lib.Strophe || lib;
  const $msg = lib.$msg || window.$msg;
  const $pres = lib.$pres || window.$pres;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  for (const k of ['service', 'jid', 'to']) if (params.has(k)) $(k).value = params.get(k);

  let conn = null;
  const statusNames = Object.fromEntries(Object.entries(S.Status).map(([k, v]) => [v, k]));

  function setStatus(text, cls) {
    $('status').textContent = text;
    $('status').className = cls || '';
  }

  function addMessage(dir, who, body) {
    const li = document.createElement('li');
    li.className = dir;
    const from = document.createElement('span');
    from.className = 'from';
    from.textContent = who + ':';
    const b = document.createElement('span');
    b.className = 'body';
    b.textContent = body;
    li.append(from, b);
    $('messages').append(li);
  }

  function onMessage(m) {
    const body = m.getElementsByTagName('body')[0];
    if (body) addMessage('in', m.getAttribute('from'), S.getText(body));
    return true;
  }

  function onPresence(p) {
    const from = p.getAttribute('from');
    const type = p.getAttribute('type') || 'available';
    let li = Array.from($('presence').children).find((x) => x.dataset.jid === from);
    if (!li) {
      li = document.createElement('li');
      li.dataset.jid = from;
      $('presence').append(li);
    }
    li.textContent = from + ': ' + type;
    return true;
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (conn) conn.reset();
    conn = new S.Connection($('service').value);
    window.chatConnection = conn;
    setStatus('connecting');
    conn.connect($('jid').value, $('password').value, (status, condition) => {
      const name = statusNames[status] || String(status);
      if (status === S.Status.CONNECTED) {
        conn.addHandler(onMessage, null, 'message');
        conn.addHandler(onPresence, null, 'presence');
        conn.send($pres().tree());
        $('me').textContent = conn.jid;
        $('send').disabled = false;
        setStatus('online', 'online');
      } else if ([S.Status.CONNFAIL, S.Status.AUTHFAIL, S.Status.ERROR, S.Status.CONNTIMEOUT].includes(status)) {
        setStatus('failed: ' + name + (condition ? ' ' + condition : ''), 'failed');
      } else if (status === S.Status.DISCONNECTED) {
        $('send').disabled = true;
        if (!$('status').className.includes('failed')) setStatus('offline');
      } else {
        setStatus(name.toLowerCase());
      }
    });
  });

  $('compose').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = $('to').value;
    const text = $('text').value;
    if (!conn || !text) return;
    conn.send($msg({ to, type: 'chat' }).c('body').t(text).tree());
    addMessage('out', 'me', text);
    $('text').value = '';
  });
})();
