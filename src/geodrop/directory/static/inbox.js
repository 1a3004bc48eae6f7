// The inbox: a live list from the directory's event stream, and downloads by signed URL.

import { ApiError, describeError } from './api.js';
import { formatAge, formatBytes, formatTime, formatUntil } from './format.js';
import { readEvents } from './sse.js';

const MAX_BACKOFF_MS = 30_000;
const AGE_REFRESH_MS = 30_000;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class InboxPanel {
  constructor(api, root) {
    this.api = api;
    this.list = root.querySelector('#inbox-list');
    this.empty = root.querySelector('#inbox-empty');
    this.error = root.querySelector('#inbox-error');
    this.state = root.querySelector('#inbox-state');
    this.entries = new Map();
    this.lastEventId = '';
    this.controller = null;
    this.ageTimer = null;
  }

  start() {
    this.stop();
    this.controller = new AbortController();
    this.listen(this.controller.signal);
    // Ages and expiries are re-read from the clock, not from the server.
    this.ageTimer = setInterval(() => this.renderTimes(), AGE_REFRESH_MS);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    clearInterval(this.ageTimer);
  }

  setState(text, live) {
    this.state.textContent = text;
    this.state.classList.toggle('live', live);
  }

  /** Follow the event stream, reconnecting with backoff; resumes after the last event id. */
  async listen(signal) {
    let backoff = 1000;
    while (!signal.aborted) {
      try {
        this.setState('connecting…', false);
        const response = await this.api.openEvents(this.lastEventId, signal);
        this.setState('live', true);
        this.error.textContent = '';
        backoff = 1000;
        for await (const message of readEvents(response)) {
          if (message.id) this.lastEventId = message.id;
          if (message.event === 'entry') this.add(JSON.parse(message.data));
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status === 401) {
          this.setState('stopped', false);
          return; // the session signs out
        }
        this.error.textContent = `${describeError(error)} Reconnecting…`;
      }
      if (signal.aborted) return;
      this.setState('reconnecting…', false);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  add(entry) {
    if (this.entries.has(entry.file_id)) return;
    const item = this.render(entry);
    this.entries.set(entry.file_id, { entry, item, status: null });
    // Newest first.
    this.list.prepend(item);
    this.empty.hidden = true;
    this.loadStatus(entry.file_id);
  }

  render(entry) {
    const item = element('li', 'file-row');
    item.dataset.fileId = entry.file_id;
    const info = element('div', 'file-info');
    info.append(element('p', 'file-name', entry.name));
    const meta = element('p', 'file-meta');
    meta.append(
      element('span', 'size', formatBytes(entry.size)),
      element('span', 'sender', `from ${entry.sender}`),
      element('span', 'age'),
      element('span', 'expiry'),
    );
    info.append(meta, element('p', 'row-message'));
    const button = element('button', 'button small', 'Download');
    button.type = 'button';
    button.setAttribute('aria-label', `Download ${entry.name} from ${entry.sender}`);
    button.addEventListener('click', () => this.download(entry, button, item));
    item.append(info, button);
    this.renderTime(item, entry, null);
    return item;
  }

  renderTime(item, entry, status) {
    const age = item.querySelector('.age');
    age.textContent = formatAge(entry.created_at);
    age.title = formatTime(entry.created_at);
    const expiry = item.querySelector('.expiry');
    if (status) {
      expiry.textContent = `expires ${formatUntil(status.expires_at)}`;
      expiry.title = formatTime(status.expires_at);
    }
  }

  renderTimes() {
    for (const { entry, item, status } of this.entries.values()) {
      this.renderTime(item, entry, status);
    }
  }

  /** The file's expiry (and whether it is still there) from its status. */
  async loadStatus(fileId) {
    const known = this.entries.get(fileId);
    try {
      known.status = await this.api.fileStatus(fileId);
      this.renderTime(known.item, known.entry, known.status);
      const mine = known.status.receivers.find((d) => d.received_at);
      if (mine) known.item.querySelector('.row-message').textContent = 'Downloaded before.';
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 410)) {
        this.showRowError(known.item, error);
      }
      // Other failures: the expiry stays unknown; a download still negotiates afresh.
    }
  }

  showRowError(item, error) {
    const message = item.querySelector('.row-message');
    message.textContent = describeError(error);
    message.classList.add('error');
    message.setAttribute('role', 'alert');
  }

  /** Negotiate with this browser's access unit, then let the browser fetch the signed URL. */
  async download(entry, button, item) {
    const message = item.querySelector('.row-message');
    message.classList.remove('error');
    message.removeAttribute('role');
    message.textContent = 'Preparing the download…';
    button.disabled = true;
    try {
      const offer = await this.api.negotiateDownload(entry.file_id);
      const link = document.createElement('a');
      link.href = offer.url;
      link.rel = 'noopener noreferrer';
      // The answer is Content-Disposition: attachment, so the page stays where it is.
      document.body.append(link);
      link.click();
      link.remove();
      message.textContent = `Downloading from ${offer.region} (${offer.link} link).`;
    } catch (error) {
      this.showRowError(item, error);
    } finally {
      button.disabled = false;
    }
  }

  clear() {
    this.entries.clear();
    this.list.replaceChildren();
    this.empty.hidden = false;
    this.lastEventId = '';
    this.error.textContent = '';
    this.setState('', false);
  }
}
