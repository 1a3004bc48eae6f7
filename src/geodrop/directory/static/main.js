// geodrop's web client: sign in with a user token, then send, receive and follow files.

import { Api, describeError } from './api.js';
import { InboxPanel } from './inbox.js';
import { SendPanel } from './send.js';
import { SentPanel } from './sent.js';

const TOKEN_KEY = 'geodrop.token';

const $ = (selector) => document.querySelector(selector);

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
}

function storeToken(token, remember) {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  if (token) (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
}

class Session {
  constructor() {
    this.panels = null;
    $('#sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.signIn($('#token').value.trim(), $('#remember').checked);
    });
    $('#sign-out').addEventListener('click', () => this.signOut(''));
  }

  showSignIn(message) {
    $('#app').hidden = true;
    $('#who').hidden = true;
    $('#sign-in').hidden = false;
    $('#sign-in-error').textContent = message;
    $('#token').focus();
  }

  async signIn(token, remember) {
    $('#sign-in-error').textContent = '';
    if (!token) {
      this.showSignIn('Paste your user token first.');
      return;
    }
    const api = new Api(token, (error) => this.signOut(describeError(error)));
    let who;
    try {
      who = await api.whoami();
    } catch (error) {
      storeToken(null);
      this.showSignIn(describeError(error));
      return;
    }
    storeToken(token, remember);
    this.open(api, who.user);
  }

  open(api, user) {
    $('#sign-in').hidden = true;
    $('#token').value = '';
    $('#who-name').textContent = user;
    $('#who').hidden = false;
    $('#app').hidden = false;
    const app = $('#app');
    const sent = new SentPanel(api, user, app);
    const inbox = new InboxPanel(api, app);
    const send = new SendPanel(api, user, sent, app);
    this.panels = { sent, inbox, send };
    inbox.start();
    sent.refresh();
    api
      .locate()
      .then((where) => {
        $('#who-where').textContent = `${where.region} · ${where.carrier}`;
      })
      .catch((error) => {
        $('#send-error').textContent = describeError(error);
      });
    $('#receivers').focus();
  }

  signOut(message) {
    if (this.panels) {
      this.panels.inbox.stop();
      this.panels.inbox.clear();
      this.panels.send.dispose();
      this.panels.sent.dispose();
      this.panels = null;
    }
    storeToken(null);
    this.showSignIn(message);
  }
}

function boot() {
  if (!window.tus || !window.tus.isSupported) {
    const problem = $('#boot-error');
    problem.hidden = false;
    problem.textContent = window.tus
      ? 'This browser cannot upload files (no XMLHttpRequest or Blob support).'
      : 'The upload library (tus-js-client) is missing from this server: run `make web` and restart.';
  }
  const session = new Session();
  const token = storedToken();
  if (token) session.signIn(token, localStorage.getItem(TOKEN_KEY) !== null);
  else session.showSignIn('');
}

boot();
