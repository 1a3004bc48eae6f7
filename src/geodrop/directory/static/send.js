// Sending: negotiate with the located access unit, then upload with tus-js-client to the
// negotiated URL. The URL is kept in tus-js-client's URL storage under the file's
// fingerprint, so choosing the same file again after a reload or a lost connection
// resumes at the offset the server holds, on the same (signed) URL.

import { ApiError, apiError, describeError } from './api.js';
import { formatBytes, formatDuration } from './format.js';

// Files up to this size are hashed in the browser so the server can check the sha256 at
// completion; a larger one would have to be read into memory whole (crypto.subtle
// does not stream), and the server hashes it as it arrives instead.
const HASH_LIMIT = 64 * 1024 * 1024;
// tus-js-client retries a failed request after these delays (a lost connection).
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000];
// A stored upload URL this close to its expiry is not worth resuming.
const URL_MARGIN_SECONDS = 60;
const RATE_WINDOW_MS = 5000;
// The MIME types the server accepts (fileserver/uploads.py); others go as octet-stream.
const CONTENT_TYPE = /^[a-zA-Z0-9!#$&^_.+-]{1,64}\/[a-zA-Z0-9!#$&^_.+-]{1,64}$/;
const LIVE_EVERY_MS = 5000;

/** Bytes per second over the last few seconds of progress. */
class RateMeter {
  constructor() {
    this.samples = [];
  }

  add(bytes) {
    const now = performance.now();
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0][0] > RATE_WINDOW_MS) this.samples.shift();
  }

  rate() {
    if (this.samples.length < 2) return 0;
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    return t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
  }
}

export function parseReceivers(text) {
  return [...new Set(text.split(',').map((r) => r.trim()).filter(Boolean))];
}

async function sha256Hex(file) {
  const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// What a refused tus HEAD (which has no body) means for this upload.
const TUS_STATUS_MEANINGS = {
  403: 'the upload address is not valid for this upload',
  404: 'the upload is not on the server',
  410: 'the upload expired or was deleted',
};

/** The error of a failed tus request, as the API's errors read. */
function tusError(error) {
  const response = error && error.originalResponse;
  if (!response) return new ApiError(0, 'network', 'the connection to the upload server was lost');
  const status = response.getStatus();
  const body = response.getBody() || '';
  const failure = apiError(status, body, response.getHeader('Retry-After'));
  if (!body && TUS_STATUS_MEANINGS[status]) failure.message = TUS_STATUS_MEANINGS[status];
  return failure;
}

export class SendPanel {
  constructor(api, user, sent, root) {
    this.api = api;
    this.user = user;
    this.sent = sent;
    this.form = root.querySelector('#send-form');
    this.receivers = root.querySelector('#receivers');
    this.fileInput = root.querySelector('#file');
    this.chosen = root.querySelector('#file-chosen');
    this.dropZone = root.querySelector('#drop-zone');
    this.sendButton = root.querySelector('#send-button');
    this.pauseButton = root.querySelector('#pause-button');
    this.progressBlock = root.querySelector('#progress-block');
    this.progress = root.querySelector('#progress');
    this.progressLabel = root.querySelector('#progress-label');
    this.status = root.querySelector('#send-status');
    this.error = root.querySelector('#send-error');
    this.unfinished = root.querySelector('#unfinished');
    this.unfinishedList = root.querySelector('#unfinished-list');
    this.file = null;
    this.upload = null;
    this.state = 'idle';
    this.fromStorage = false;
    this.resumedPercent = null;
    this.lastLive = 0;
    this.listeners = [];
    this.chooseButton = root.querySelector('#choose-file');
    this.on(this.chooseButton, 'click', () => this.fileInput.click());
    this.on(this.fileInput, 'change', () => this.choose(this.fileInput.files[0] ?? null));
    this.on(this.form, 'submit', (event) => {
      event.preventDefault();
      this.send();
    });
    this.on(this.pauseButton, 'click', () => this.togglePause());
    this.on(this.dropZone, 'dragover', (event) => {
      event.preventDefault();
      this.dropZone.classList.add('dragging');
    });
    this.on(this.dropZone, 'dragleave', () => this.dropZone.classList.remove('dragging'));
    this.on(this.dropZone, 'drop', (event) => {
      event.preventDefault();
      this.dropZone.classList.remove('dragging');
      const file = event.dataTransfer.files[0];
      if (file && !this.busy()) this.choose(file);
    });
    // A connection that comes back resumes an upload that stopped for want of it.
    this.on(window, 'online', () => {
      if (this.state === 'failed' && this.upload) this.resume();
    });
    this.showUnfinished();
  }

  on(target, type, handler) {
    target.addEventListener(type, handler);
    this.listeners.push([target, type, handler]);
  }

  dispose() {
    if (this.upload && this.state === 'uploading') this.upload.abort();
    for (const [target, type, handler] of this.listeners) target.removeEventListener(type, handler);
    this.upload = null;
    this.setState('idle');
    this.unfinishedList.replaceChildren();
    this.progressBlock.hidden = true;
    this.status.textContent = '';
    this.error.textContent = '';
    this.chosen.textContent = '';
    this.fileInput.value = '';
    this.receivers.value = '';
  }

  fingerprintOf(file) {
    return `geodrop:${this.user}:${file.name}:${file.type}:${file.size}:${file.lastModified}`;
  }

  storage() {
    return window.tus.defaultOptions.urlStorage;
  }

  /** Unfinished uploads of this file whose signed URL is still good, newest first. */
  async pendingFor(file) {
    const stored = await this.storage().findUploadsByFingerprint(this.fingerprintOf(file));
    const now = Date.now() / 1000;
    const usable = [];
    for (const upload of stored) {
      const expires = Number(upload.metadata?.url_expires_at ?? 0);
      if (upload.uploadUrl && upload.size === file.size && expires - URL_MARGIN_SECONDS > now) {
        usable.push(upload);
      } else {
        await this.storage().removeUpload(upload.urlStorageKey);
      }
    }
    return usable.sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime));
  }

  async showUnfinished() {
    const prefix = `tus::geodrop:${this.user}:`;
    const all = await this.storage().findAllUploads();
    const mine = all.filter((u) => u.urlStorageKey.startsWith(prefix) && u.metadata);
    this.unfinished.hidden = mine.length === 0;
    this.unfinishedList.replaceChildren(
      ...mine.map((upload) => {
        const item = document.createElement('li');
        const when = new Date(upload.creationTime);
        item.textContent = `${upload.metadata.filename} (${formatBytes(upload.size)}) to ${upload.metadata.receivers}, started ${when.toLocaleString()}`;
        return item;
      }),
    );
  }

  async choose(file) {
    this.file = file;
    this.error.textContent = '';
    if (!file) {
      this.chosen.textContent = '';
      this.sendButton.disabled = true;
      return;
    }
    this.chosen.textContent = `${file.name} · ${formatBytes(file.size)}`;
    this.sendButton.disabled = this.busy();
    this.sendButton.textContent = 'Send';
    const [pending] = await this.pendingFor(file);
    if (pending) {
      this.sendButton.textContent = 'Resume upload';
      this.status.textContent = `An earlier upload of ${file.name} to ${pending.metadata.receivers} stopped before the end: Resume upload continues it.`;
      if (!this.receivers.value.trim()) this.receivers.value = pending.metadata.receivers;
    } else {
      this.status.textContent = '';
    }
  }

  busy() {
    return ['preparing', 'uploading', 'paused'].includes(this.state);
  }

  setState(state) {
    this.state = state;
    this.sendButton.disabled = this.busy() || !this.file;
    // One upload at a time: the file and its receivers stay as they are until it ends.
    this.receivers.disabled = this.busy();
    this.chooseButton.disabled = this.busy();
    this.fileInput.disabled = this.busy();
    this.pauseButton.hidden = !['uploading', 'paused', 'failed'].includes(state) || !this.upload;
    this.pauseButton.textContent = state === 'uploading' ? 'Pause' : 'Resume';
  }

  fail(error) {
    this.status.textContent = '';
    this.error.textContent = describeError(error);
    this.setState(this.upload ? 'failed' : 'idle');
  }

  async send() {
    if (this.busy()) return;
    this.error.textContent = '';
    const file = this.file;
    if (!file) {
      this.error.textContent = 'Choose a file to send first.';
      return;
    }
    this.upload = null;
    this.setState('preparing');
    try {
      const [pending] = await this.pendingFor(file);
      this.fromStorage = Boolean(pending);
      if (pending) {
        this.start(file, pending.metadata, (upload) => upload.resumeFromPreviousUpload(pending));
        this.status.textContent = `Resuming ${file.name}…`;
        return;
      }
      await this.negotiateAndStart(file);
    } catch (error) {
      this.fail(error);
    }
  }

  async negotiateAndStart(file) {
    const receivers = parseReceivers(this.receivers.value);
    if (!receivers.length) {
      this.setState('idle');
      this.error.textContent = 'Enter at least one receiver (a user id).';
      this.receivers.focus();
      return;
    }
    const body = {
      name: file.name,
      size: file.size,
      receivers,
      content_type: CONTENT_TYPE.test(file.type) ? file.type : 'application/octet-stream',
    };
    if (file.size <= HASH_LIMIT && window.crypto?.subtle) {
      this.status.textContent = `Checking ${file.name}…`;
      body.sha256 = await sha256Hex(file);
    }
    this.status.textContent = 'Asking your region for an upload address…';
    const offer = await this.api.negotiateUpload(body);
    this.sent.add({
      file_id: offer.file_id,
      name: file.name,
      size: file.size,
      receivers,
      sent_at: Date.now() / 1000,
    });
    const metadata = {
      filename: file.name,
      filetype: body.content_type,
      file_id: offer.file_id,
      receivers: receivers.join(', '),
      region: offer.region,
      link: offer.link,
      url_expires_at: String(offer.expires_at),
    };
    this.status.textContent = `Uploading to ${offer.region} over its ${offer.link} link.`;
    this.start(file, metadata, null, offer.upload_url);
  }

  /** Start a tus upload of `file` (to `uploadUrl`, or where `prepare` points it). */
  start(file, metadata, prepare, uploadUrl = null) {
    const meter = new RateMeter();
    this.resumedPercent = null;
    const fingerprint = this.fingerprintOf(file);
    const upload = new window.tus.Upload(file, {
      uploadUrl,
      metadata,
      fingerprint: () => Promise.resolve(fingerprint),
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      retryDelays: RETRY_DELAYS,
      onProgress: (sent, total) => {
        // The first progress of a resumed upload starts at the offset the server held.
        if (this.resumedPercent === null) this.resumedPercent = total ? Math.floor((100 * sent) / total) : 0;
        meter.add(sent);
        this.showProgress(sent, total, meter.rate());
      },
      onSuccess: () => this.finished(file, metadata),
      onError: (error) => this.failed(file, metadata, error),
    });
    if (prepare) prepare(upload);
    this.upload = upload;
    this.progressBlock.hidden = false;
    this.progress.value = 0;
    this.progressLabel.textContent = 'Starting…';
    this.setState('uploading');
    upload.start();
  }

  resumedNote() {
    return this.resumedPercent ? [`resumed at ${this.resumedPercent}%`] : [];
  }

  showProgress(sent, total, rate) {
    const percent = total ? Math.floor((100 * sent) / total) : 100;
    this.progress.value = percent;
    this.progress.dataset.bytes = String(sent);
    const parts = [`${formatBytes(sent)} of ${formatBytes(total)} (${percent}%)`];
    if (rate > 0 && this.state === 'uploading') {
      parts.push(`${formatBytes(rate)}/s`, `about ${formatDuration((total - sent) / rate)} left`);
    }
    this.progressLabel.textContent = [...parts, ...this.resumedNote()].join(' · ');
    // Screen readers hear the progress now and then, not at every event.
    const now = performance.now();
    if (now - this.lastLive > LIVE_EVERY_MS) {
      this.lastLive = now;
      this.status.textContent = `Uploading: ${percent}%`;
    }
  }

  async togglePause() {
    if (!this.upload) return;
    if (this.state === 'uploading') {
      this.setState('paused');
      await this.upload.abort();
      this.status.textContent = 'Paused. Resume continues where it stopped.';
    } else {
      this.resume();
    }
  }

  resume() {
    this.error.textContent = '';
    this.status.textContent = 'Resuming…';
    this.setState('uploading');
    this.upload.start();
  }

  finished(file, metadata) {
    this.progress.value = 100;
    this.progressLabel.textContent = [`${formatBytes(file.size)} sent`, ...this.resumedNote()].join(' · ');
    this.status.textContent = `Sent ${file.name} to ${metadata.receivers}. They will find it in their inbox.`;
    this.upload = null;
    this.file = null;
    this.fileInput.value = '';
    this.chosen.textContent = '';
    this.sendButton.textContent = 'Send';
    this.setState('done');
    this.showUnfinished();
    this.sent.refresh();
  }

  failed(file, metadata, error) {
    const cause = tusError(error);
    if ([403, 404, 410].includes(cause.status)) {
      // The signed URL is no good any more (expired, or the upload was deleted) and
      // tus-js-client has forgotten it.
      this.upload = null;
      this.sendButton.textContent = 'Send';
      if (this.fromStorage) {
        this.fromStorage = false;
        this.setState('preparing');
        this.status.textContent = `The earlier upload of ${file.name} can no longer be resumed: ${describeError(cause)} Starting again.`;
        this.negotiateAndStart(file).catch((failure) => this.fail(failure));
        return;
      }
      this.error.textContent = `${describeError(cause)} Send starts the upload of ${file.name} again.`;
      this.status.textContent = '';
      this.progressBlock.hidden = true;
      this.setState('idle');
      this.showUnfinished();
      return;
    }
    this.error.textContent = `${describeError(cause)} The upload of ${file.name} to ${metadata.receivers} stopped; Resume tries again.`;
    this.setState('failed');
    this.showUnfinished();
  }
}
