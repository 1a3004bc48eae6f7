// The operator status page: sign in with an operator's token, then read /v1/status
// once a second and show every region, its fallback and its links.

import { formatBytes } from '/app/format.js';

const TOKEN_KEY = 'geodrop.operatorToken';
const POLL_MS = 1000;
const COLUMNS = [
  ['Link', ''],
  ['Carrier', 'wide'],
  ['Capacity', 'num wide'],
  ['Active', 'num'],
  ['Rate', 'num'],
  ['Load', 'load'],
  ['Sent', 'num wide'],
  ['Received', 'num wide'],
];

const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY);
let timer = null;
// Bumped at every sign-in and sign-out, so an answer to an older session is ignored.
let session = 0;

function formatCapacity(mbps) {
  return mbps >= 1000 ? `${mbps / 1000} Gbit/s` : `${mbps} Mbit/s`;
}

function formatSeconds(seconds) {
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

/** An element with attributes and children (strings become text, never HTML). */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function showSignIn(message) {
  $('dashboard').hidden = true;
  $('session').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message || '';
  $('token').focus();
}

function showDashboard() {
  $('sign-in').hidden = true;
  $('dashboard').hidden = false;
  $('session').hidden = false;
}

function signOut(message) {
  session += 1;
  clearTimeout(timer);
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $('regions').replaceChildren();
  showSignIn(message);
}

async function poll(mine) {
  let answer;
  try {
    answer = await fetch('/v1/status', {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
  } catch {
    if (mine !== session) return;
    $('problem').textContent = 'The directory cannot be reached; retrying.';
    timer = setTimeout(() => poll(mine), POLL_MS);
    return;
  }
  if (mine !== session) return;
  if (answer.status === 401) {
    signOut('The token was refused: it is invalid or has expired.');
    return;
  }
  if (answer.status === 403) {
    signOut('This user is not one of the cluster’s operators (directory.operators).');
    return;
  }
  if (answer.ok) {
    try {
      render(await answer.json());
      $('problem').textContent = '';
    } catch {
      $('problem').textContent = 'The directory’s answer could not be read; retrying.';
    }
  } else {
    $('problem').textContent = `The directory answered ${answer.status}; retrying.`;
  }
  timer = setTimeout(() => poll(mine), POLL_MS);
}

function start() {
  session += 1;
  showDashboard();
  poll(session);
}

// -- rendering ----------------------------------------------------------------------

function regionCard(region) {
  const name = region.region;
  const titleId = `region-${name}`;
  const rows = region.links.map((link) =>
    el(
      'tr',
      { 'data-link': link.name },
      el('th', { scope: 'row' }, link.name),
      el('td', { class: 'wide' }, link.carrier),
      el('td', { class: 'num wide' }, formatCapacity(link.capacity_mbps)),
      el('td', { class: 'num', 'data-field': 'active' }),
      el('td', { class: 'num', 'data-field': 'rate' }),
      el('td', { 'data-field': 'load' }),
      el('td', { class: 'num wide', 'data-field': 'sent' }),
      el('td', { class: 'num wide', 'data-field': 'received' }),
    ),
  );
  const head = el(
    'tr',
    {},
    ...COLUMNS.map(([label, kind]) => el('th', kind ? { scope: 'col', class: kind } : { scope: 'col' }, label)),
  );
  const table = el(
    'table',
    {},
    el('caption', {}, `Links of ${name}`),
    el('thead', {}, head),
    el('tbody', {}, ...rows),
  );
  return el(
    'article',
    { class: 'region', 'data-region': name, 'aria-labelledby': titleId },
    el(
      'header',
      { class: 'region-head' },
      el('h3', { id: titleId }, name),
      el('span', { class: 'badge', 'data-field': 'health' }),
    ),
    el(
      'dl',
      { class: 'facts' },
      el('dt', {}, 'Last heartbeat'),
      el('dd', { 'data-field': 'heartbeat' }),
      el('dt', {}, 'Clients go to'),
      el('dd', { 'data-field': 'fallback' }),
      el('dt', {}, 'Fallback order'),
      el('dd', {}, region.fallback.length ? region.fallback.join(' → ') : 'none'),
      el('dt', {}, 'Access URL'),
      el('dd', {}, el('code', {}, region.access_url)),
    ),
    el(
      'div',
      { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': `Links of ${name}` },
      table,
    ),
  );
}

function field(root, name) {
  return root.querySelector(`[data-field="${name}"]`);
}

function updateRegion(card, region) {
  card.classList.toggle('up', region.alive);
  card.classList.toggle('down', !region.alive);
  field(card, 'health').textContent = region.alive ? 'Up' : 'Down';
  const beat = field(card, 'heartbeat');
  if (region.last_heartbeat_at === null) {
    beat.textContent = `none yet (${formatSeconds(region.seconds_since_heartbeat)} since the directory started)`;
  } else {
    const at = new Date(region.last_heartbeat_at * 1000).toLocaleTimeString();
    beat.textContent = `${formatSeconds(region.seconds_since_heartbeat)} ago (${at})`;
  }
  const fallback = field(card, 'fallback');
  fallback.classList.toggle('warn', region.clients_sent_to !== region.region);
  if (region.clients_sent_to === region.region) {
    fallback.textContent = `${region.region} (its own region)`;
  } else if (region.clients_sent_to) {
    fallback.textContent = `${region.clients_sent_to} (fallback)`;
  } else {
    fallback.textContent = 'nowhere: no fallback region is up (clients get 503)';
  }
  for (const link of region.links) {
    const row = card.querySelector(`tr[data-link="${link.name}"]`);
    if (!row) continue;
    field(row, 'active').textContent = String(link.active_transfers);
    field(row, 'rate').textContent = `${formatBytes(link.rate_bytes_per_second)}/s`;
    const load = Math.min(1, link.load);
    const meter = el('meter', { min: '0', max: '1', value: String(load), 'aria-label': `Load of ${link.name}` });
    field(row, 'load').replaceChildren(meter, ` ${Math.round(link.load * 100)}%`);
    field(row, 'sent').textContent = formatBytes(link.bytes_sent);
    field(row, 'received').textContent = formatBytes(link.bytes_received);
  }
}

// The cards are built once per set of regions and links and then updated in place, so
// the page does not flicker and keyboard focus stays where it is.
let shape = '';

function render(status) {
  const regions = $('regions');
  const newShape = JSON.stringify(status.regions.map((r) => [r.region, r.links.map((l) => l.name)]));
  if (newShape !== shape) {
    shape = newShape;
    regions.replaceChildren(...status.regions.map(regionCard));
  }
  for (const region of status.regions) {
    updateRegion(regions.querySelector(`[data-region="${region.region}"]`), region);
  }
  const down = status.regions.filter((r) => !r.alive);
  $('summary').textContent = down.length
    ? `${down.length} of ${status.regions.length} regions down: ${down
        .map((r) => (r.clients_sent_to ? `${r.region} → ${r.clients_sent_to}` : `${r.region} (no fallback up)`))
        .join(', ')}`
    : `All ${status.regions.length} regions up`;
  const updated = new Date(status.generated_at * 1000).toLocaleTimeString();
  $('updated').textContent = `Updated ${updated} · heartbeats every ${status.heartbeat_interval_seconds} s, down after ${status.heartbeat_timeout_seconds} s`;
}

// -- start ------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  token = value;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  shape = '';
  start();
});
$('sign-out').addEventListener('click', () => signOut(''));

if (token) {
  start();
} else {
  showSignIn('');
}
