// Files sent from this browser (kept in localStorage) and where each stands on the server.
// Statuses are read when asked for, when the list changes and when the tab becomes
// visible again: never in a loop.

import { ApiError, describeError } from './api.js';
import { formatAge, formatBytes, formatTime, formatUntil } from './format.js';

const MAX_RECORDS = 50;
const MIN_REFRESH_GAP_MS = 15_000;
const PARALLEL = 4;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** What a status says, as a short phrase and a state name (for styling and tests). */
export function describeStatus(status) {
  if (status.state === 'uploading') {
    const percent = status.size ? Math.floor((100 * status.offset) / status.size) : 0;
    return { state: 'uploading', text: `Uploading: ${percent}% on the server` };
  }
  const received = status.receivers.filter((d) => d.received_at);
  const waiting = status.receivers.filter((d) => !d.received_at);
  const parts = [];
  if (received.length) parts.push(`Received by ${received.map((d) => d.user).join(', ')}`);
  if (waiting.length) parts.push(`waiting for ${waiting.map((d) => d.user).join(', ')}`);
  const text = parts.join('; ') || 'Waiting';
  return { state: waiting.length ? 'waiting' : 'received', text: text[0].toUpperCase() + text.slice(1) };
}

export class SentPanel {
  constructor(api, user, root) {
    this.api = api;
    this.key = `geodrop.sent.v1.${user}`;
    this.list = root.querySelector('#sent-list');
    this.empty = root.querySelector('#sent-empty');
    this.error = root.querySelector('#sent-error');
    this.lastRefresh = 0;
    this.onVisible = () => {
      if (document.visibilityState === 'visible' && Date.now() - this.lastRefresh > MIN_REFRESH_GAP_MS) {
        this.refresh();
      }
    };
    this.onRefresh = () => this.refresh();
    this.refreshButton = root.querySelector('#sent-refresh');
    document.addEventListener('visibilitychange', this.onVisible);
    this.refreshButton.addEventListener('click', this.onRefresh);
  }

  dispose() {
    document.removeEventListener('visibilitychange', this.onVisible);
    this.refreshButton.removeEventListener('click', this.onRefresh);
    this.list.replaceChildren();
    this.error.textContent = '';
  }

  records() {
    try {
      const records = JSON.parse(localStorage.getItem(this.key) ?? '[]');
      return Array.isArray(records) ? records : [];
    } catch {
      return [];
    }
  }

  save(records) {
    localStorage.setItem(this.key, JSON.stringify(records.slice(0, MAX_RECORDS)));
  }

  /** Remember a newly negotiated file (newest first). */
  add(record) {
    const records = this.records().filter((r) => r.file_id !== record.file_id);
    this.save([record, ...records]);
    this.render();
    const item = this.list.querySelector('li');
    if (item) this.refreshRow(item);
  }

  forget(fileId) {
    this.save(this.records().filter((r) => r.file_id !== fileId));
    this.render();
  }

  render() {
    const records = this.records();
    this.empty.hidden = records.length > 0;
    this.list.replaceChildren(...records.map((record) => this.row(record)));
  }

  row(record) {
    const item = element('li', 'file-row');
    item.dataset.fileId = record.file_id;
    const info = element('div', 'file-info');
    info.append(element('p', 'file-name', record.name));
    const meta = element('p', 'file-meta');
    const sentAt = element('span', 'age', `sent ${formatAge(record.sent_at)}`);
    sentAt.title = formatTime(record.sent_at);
    meta.append(
      element('span', 'size', formatBytes(record.size)),
      element('span', 'receivers', `to ${record.receivers.join(', ')}`),
      sentAt,
    );
    const state = element('p', 'sent-state', 'Status not read yet');
    state.dataset.state = 'unknown';
    info.append(meta, state);
    const forget = element('button', 'button secondary small', 'Remove');
    forget.type = 'button';
    forget.setAttribute('aria-label', `Remove ${record.name} from this list`);
    forget.addEventListener('click', () => this.forget(record.file_id));
    item.append(info, forget);
    return item;
  }

  /** Re-read every listed file's status (a few at a time). */
  async refresh() {
    this.lastRefresh = Date.now();
    this.render();
    this.error.textContent = '';
    const rows = [...this.list.querySelectorAll('li')];
    const work = rows.map((item) => () => this.refreshRow(item));
    const workers = Array.from({ length: Math.min(PARALLEL, work.length) }, async () => {
      while (work.length) await work.shift()();
    });
    await Promise.all(workers);
  }

  async refreshRow(item) {
    const state = item.querySelector('.sent-state');
    state.textContent = 'Checking…';
    try {
      const status = await this.api.fileStatus(item.dataset.fileId);
      const { state: name, text } = describeStatus(status);
      state.dataset.state = name;
      state.textContent = `${text} · expires ${formatUntil(status.expires_at)}`;
      state.title = formatTime(status.expires_at);
      state.classList.remove('error');
    } catch (error) {
      state.classList.add('error');
      if (error instanceof ApiError && error.status === 410) state.dataset.state = 'expired';
      else if (error instanceof ApiError && error.status === 404) state.dataset.state = 'missing';
      else state.dataset.state = 'error';
      state.textContent = describeError(error);
    }
  }
}
