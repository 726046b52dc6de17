// Starts converse.js (its unmodified dist build) with the settings given in
// the query string (websocket_url, jid, password) and a tiny plugin that
// lets converse.test.mjs look at converse's state: window.tern.api,
// window.tern.events (the converse events seen so far, in order) and
// window.tern.frames (the WebSocket traffic). Converse's own log (loglevel
// debug, with every stanza) goes to the console.
(function () {
  'use strict';
  const q = new URLSearchParams(window.location.search);
  const tern = { events: [], frames: [], api: null };
  window.tern = tern;

  // Every WebSocket frame, both ways, in order ('> ' sent, '< ' received):
  // the test reads the XML converse really sent from here.
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      tern.frames.push(`-- websocket ${args[0]}`);
      this.addEventListener('message', (ev) => tern.frames.push(`< ${ev.data}`));
      this.addEventListener('close', (ev) => tern.frames.push(`-- websocket closed (${ev.code})`));
    }

    send(data) {
      tern.frames.push(`> ${data}`);
      return super.send(data);
    }
  };

  window.converse.plugins.add('tern-probe', {
    initialize() {
      const { api } = this._converse;
      tern.api = api;
      for (const ev of ['connected', 'statusInitialized', 'rosterContactsFetched', 'bookmarksInitialized',
        'chatBoxesFetched', 'enteredNewRoom', 'disconnected', 'logout']) {
        api.listen.on(ev, () => tern.events.push(ev));
      }
      api.listen.on('chatRoomViewInitialized', (view) => tern.events.push(`roomView:${view.model.get('jid')}`));
    },
  });

  window.converse.initialize({
    assets_path: '/dist/',
    websocket_url: q.get('websocket_url'),
    jid: q.get('jid'),
    password: q.get('password'),
    authentication: 'login',
    auto_login: true,
    // not IndexedDB (converse's default): each browser context starts empty anyway
    persistent_store: q.get('persistent_store') || 'localStorage',
    auto_reconnect: false,
    discover_connection_methods: false,
    view_mode: 'fullscreen',
    loglevel: 'debug',
    i18n: 'en',
    locales: ['en'],
    play_sounds: false,
    show_desktop_notifications: false,
    clear_cache_on_logout: true,
    muc_respect_autojoin: true,
    whitelisted_plugins: ['tern-probe'],
  }).catch((e) => { tern.events.push(`initialize-failed:${e}`); });
}());
