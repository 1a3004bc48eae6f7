// geodrop's HTTP API: the directory (this page's origin) and the access unit it locates.
// Every refusal is `{"error": {"code", "message"}}` (DESIGN.md §7); describeError turns
// one into a sentence a person can act on.

const LOCATE_TTL_MS = 60_000;

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when no answer came (network).
   * @param {string} code the error body's code.
   * @param {string} message the error body's message.
   * @param {number|null} retryAfter seconds, from Retry-After.
   */
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function retryAfterSeconds(value) {
  const seconds = Number.parseInt(value ?? '', 10);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

/** An ApiError from a status, a body text (maybe JSON) and a Retry-After value. */
export function apiError(status, bodyText, retryAfter) {
  let code = 'http_error';
  let message = `the server answered ${status}`;
  try {
    const body = JSON.parse(bodyText);
    if (body && body.error) {
      code = String(body.error.code ?? code);
      message = String(body.error.message ?? message);
    }
  } catch {
    // Not JSON (a proxy's page, a HEAD answer): the status says enough.
  }
  return new ApiError(status, code, message, retryAfterSeconds(retryAfter));
}

async function errorOf(response) {
  const text = await response.text().catch(() => '');
  return apiError(response.status, text, response.headers.get('Retry-After'));
}

function later(error) {
  return error.retryAfter != null ? ` Try again in ${error.retryAfter} s.` : ' Try again later.';
}

function sentence(message) {
  const text = String(message || '').trim();
  if (!text) return '';
  const capital = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/** A message for any failure: what happened, in the server's words, and what to do. */
export function describeError(error) {
  if (!(error instanceof ApiError)) {
    return `Something went wrong: ${error && error.message ? error.message : error}`;
  }
  const detail = sentence(error.message);
  switch (error.status) {
    case 0:
      return `Network problem: ${detail} Check your connection; geodrop keeps what was sent.`;
    case 400:
      return `The request was refused: ${detail}`;
    case 401:
      return `Your token was not accepted: ${detail} Sign in again with a fresh token.`;
    case 403:
      return `Not allowed: ${detail}`;
    case 404:
      return `Not found: ${detail} It was deleted, or it is not meant for you.`;
    case 409:
      return `Conflict: ${detail} Try again.`;
    case 410:
      return `Expired: ${detail} It is no longer available.`;
    case 413:
      return `Too large: ${detail}`;
    case 415:
      return `Unsupported content: ${detail}`;
    case 416:
      return `Bad range: ${detail}`;
    case 429:
      return error.code === 'quota_exceeded'
        ? `Over your quota: ${detail}${later(error)}`
        : `Too many requests: ${detail}${later(error)}`;
    case 460:
      return `The file changed while it was being sent: ${detail}`;
    case 503:
      return `Region down: ${detail}${later(error)}`;
    case 507:
      return `Storage full: ${detail}${later(error)}`;
    default:
      return error.status >= 500
        ? `Server error (${error.status}): ${detail}${later(error)}`
        : `Refused (${error.status}): ${detail}`;
  }
}

export class Api {
  /**
   * @param {string} token the user's bearer token.
   * @param {(error: ApiError) => void} onUnauthorized called on any 401.
   */
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
    this.located = null;
    this.locatedAt = 0;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  /** A JSON request; throws ApiError for a refusal or an unreachable server. */
  async request(url, { method = 'GET', json = undefined, signal = undefined } = {}) {
    const headers = this.headers({ Accept: 'application/json' });
    if (json !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        cache: 'no-store',
        signal,
      });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError(0, 'network', `cannot reach ${new URL(url, location.href).host}`);
    }
    if (!response.ok) {
      const error = await errorOf(response);
      this.failed(error);
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  failed(error) {
    if (error.status === 401 && this.onUnauthorized) this.onUnauthorized(error);
    // The region may be down or moved: ask the directory again next time.
    if (error.status === 0 || error.status === 503) this.located = null;
  }

  /** Who the token belongs to (validates it): `{user, entries, cursor}` of the inbox. */
  whoami() {
    return this.request('/v1/inbox?after=0');
  }

  /** Where the directory places this browser: region, carrier, access_url (cached a minute). */
  async locate() {
    if (this.located && Date.now() - this.locatedAt < LOCATE_TTL_MS) return this.located;
    this.located = await this.request('/v1/locate');
    this.locatedAt = Date.now();
    return this.located;
  }

  async negotiateUpload(body) {
    const { access_url: accessUrl } = await this.locate();
    return this.request(`${accessUrl}/v1/uploads`, { method: 'POST', json: body });
  }

  async negotiateDownload(fileId) {
    const { access_url: accessUrl } = await this.locate();
    return this.request(`${accessUrl}/v1/downloads`, { method: 'POST', json: { file_id: fileId } });
  }

  async fileStatus(fileId) {
    const { access_url: accessUrl } = await this.locate();
    return this.request(`${accessUrl}/v1/files/${encodeURIComponent(fileId)}/status`);
  }

  /**
   * The inbox event stream, opened with fetch: EventSource cannot send the token in a
   * header, and a token in a URL ends up in logs and histories.
   */
  async openEvents(lastEventId, signal) {
    const headers = this.headers({ Accept: 'text/event-stream' });
    if (lastEventId) headers['Last-Event-ID'] = String(lastEventId);
    let response;
    try {
      response = await fetch('/v1/inbox/events', { headers, cache: 'no-store', signal });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError(0, 'network', 'cannot reach the directory');
    }
    if (!response.ok) {
      const error = await errorOf(response);
      this.failed(error);
      throw error;
    }
    return response;
  }
}
