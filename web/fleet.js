// The fleet page: plain JavaScript, no build. Every string that came from a device (ids, sensor
// names, units, reasons) goes into the page as text (textContent, setAttribute), never as markup.
// A module (strict by itself); uPlot is the global its own script defines before this one runs.
import { formatDuration } from '/static/duration.js';

const WINDOWS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };
const TROUBLE_TEXT = { offline: 'offline', lag: 'behind', backlog: 'backlog', gaps: 'open gaps' };
const REFRESH_MS = 15000;

/** An element with attributes and children; strings become text nodes. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const duration = (ms) => (ms === null || ms === undefined ? '–' : formatDuration(Math.max(0, ms)));
const num = (n) => (n === null || n === undefined ? '–' : n.toLocaleString('en-US'));
const time = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–');
const deviceHref = (id) => '/devices/' + encodeURIComponent(id);

async function getJson(url) {
  const r = await fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${url}: ${r.status} ${body.error || r.statusText}`);
  return body;
}

function showError(main, err) {
  main.replaceChildren(el('p', { class: 'error' }, String(err.message || err)));
}

// ---- the fleet table ----

const COLUMNS = [
  { key: 'device', title: 'Device', value: (d) => d.device },
  { key: 'state', title: 'State', value: (d) => d.state },
  { key: 'lastSeenAgoMs', title: 'Last seen', value: (d) => d.lastSeenAgoMs, text: (d) => (d.lastSeenAgoMs === null ? '–' : duration(d.lastSeenAgoMs) + ' ago'), num: true },
  { key: 'lagMs', title: 'Lag', value: (d) => d.lagMs, text: (d) => duration(d.lagMs), num: true },
  { key: 'pending', title: 'Pending', value: (d) => d.pending, num: true },
  { key: 'readingsStored', title: 'Stored', value: (d) => d.readingsStored, num: true },
  { key: 'openGaps', title: 'Open gaps', value: (d) => d.openGaps.ranges, text: (d) => (d.openGaps.ranges === 0 ? '0' : `${num(d.openGaps.ranges)} (${num(d.openGaps.readings)} readings)`), num: true },
  { key: 'droppedAnnounced', title: 'Dropped', value: (d) => d.droppedAnnounced, num: true },
  { key: 'duplicatesAbsorbed', title: 'Duplicates', value: (d) => d.duplicatesAbsorbed, num: true },
  { key: 'rejectedMessages', title: 'Rejected', value: (d) => d.rejectedMessages, num: true },
];

// troubled devices first, most troubles first, then by name; a click on a header sorts by that column
let sortBy = { key: 'trouble', dir: 1 };

function compare(a, b) {
  if (sortBy.key === 'trouble') return b.trouble.length - a.trouble.length || (a.device < b.device ? -1 : a.device > b.device ? 1 : 0);
  const col = COLUMNS.find((c) => c.key === sortBy.key);
  const x = col.value(a);
  const y = col.value(b);
  if (x === y) return 0;
  if (x === null) return 1;
  if (y === null) return -1;
  return (x < y ? -1 : 1) * sortBy.dir;
}

async function fleetView(main) {
  let data;
  try {
    data = await getJson('/api/devices');
  } catch (err) {
    return showError(main, err);
  }
  document.getElementById('updated').textContent = `as of ${time(data.generatedAt)}`;
  const troubled = data.devices.filter((d) => d.trouble.length > 0).length;
  const head = el('tr', {});
  for (const c of [{ key: 'trouble', title: 'Trouble' }, ...COLUMNS]) {
    const th = el('th', { 'data-key': c.key, class: c.num ? 'num' : undefined, 'aria-sort': sortBy.key === c.key ? (sortBy.dir > 0 ? 'ascending' : 'descending') : undefined }, c.title);
    th.addEventListener('click', () => {
      sortBy = { key: c.key, dir: sortBy.key === c.key ? -sortBy.dir : 1 };
      fleetView(main);
    });
    head.append(th);
  }
  const body = el('tbody', {});
  for (const d of [...data.devices].sort(compare)) {
    const tr = el('tr', { class: d.trouble.length > 0 ? 'trouble' : undefined, 'data-device': d.device });
    const badges = el('td', { 'data-key': 'trouble' });
    for (const t of d.trouble) badges.append(el('span', { class: `badge ${t}` }, TROUBLE_TEXT[t] || t));
    tr.append(badges);
    for (const c of COLUMNS) {
      const v = c.value(d);
      const content = c.key === 'device' ? el('a', { href: deviceHref(d.device) }, d.device) : c.text ? c.text(d) : c.num ? num(v) : v;
      tr.append(el('td', { 'data-key': c.key, 'data-value': v === null ? '' : v, class: c.num ? 'num' : c.key === 'state' ? `state ${v}` : undefined }, content));
    }
    body.append(tr);
  }
  const summary = el('p', { class: 'note' }, `${data.devices.length} devices, ${troubled} needing a look (offline, behind by more than ${duration(data.thresholds.lagMs)}, more than ${num(data.thresholds.pending)} readings pending, or open gaps)`);
  const rejected = Object.entries(data.rejectedMessages || {});
  if (rejected.length > 0) summary.append(el('br', {}), `rejected messages (the rejected_messages table): ${rejected.map(([reason, n]) => `${reason} ${num(n)}`).join(', ')}`);
  main.replaceChildren(summary, data.devices.length === 0 ? el('p', { class: 'note' }, 'no devices yet') : el('table', { id: 'fleet' }, el('thead', {}, head), body));
}

// ---- one device ----

function chart(container, title, series, data, bands, height, range) {
  const width = Math.max(300, container.clientWidth || 900);
  const opts = {
    title,
    width,
    height,
    series,
    // the whole window, so that a device silent for part of it shows as such
    scales: { x: { time: true, range: () => [range[0] / 1000, range[1] / 1000] } },
    // UTC, as every other time on the page (and the collector's logs)
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    axes: [{}, { size: 60 }],
    hooks: {
      // holes the collector knows of, behind the lines: open (may still arrive) and dropped (announced lost)
      drawClear: [
        (u) => {
          const ctx = u.ctx;
          for (const b of bands) {
            const x0 = u.valToPos(b.from / 1000, 'x', true);
            const x1 = u.valToPos(b.to / 1000, 'x', true);
            ctx.fillStyle = b.state === 'open' ? 'rgba(230, 140, 0, 0.25)' : 'rgba(200, 30, 30, 0.22)';
            ctx.fillRect(Math.min(x0, x1), u.bbox.top, Math.max(2, Math.abs(x1 - x0)), u.bbox.height);
          }
        },
      ],
    },
  };
  return new uPlot(opts, data, container);
}

async function sensorChart(box, id, s, win, now) {
  const from = now - WINDOWS[win];
  const q = new URLSearchParams({ sensor: s.sensor, from: String(from), to: String(now) });
  const data = await getJson(`/api/devices/${encodeURIComponent(id)}/series?${q}`);
  const pts = data.points;
  const xs = pts.map((p) => p[0] / 1000);
  const bands = data.gaps.map((g) => ({ state: g.state, from: g.afterMs ?? from, to: g.beforeMs ?? now }));
  box.setAttribute('data-points', String(pts.filter((p) => p[4] > 0).length));
  box.setAttribute('data-breaks', String(pts.filter((p) => p[4] === 0).length));
  box.setAttribute('data-bands', String(bands.length));
  if (pts.length === 0) return box.append(el('p', { class: 'note' }, 'no readings in this window'));
  const unit = s.unit ? ` (${s.unit})` : '';
  chart(
    box,
    `${s.sensor}${unit}, ${duration(data.bucketMs).replace(/\.0 /, ' ')} buckets`,
    [{}, { label: 'min', stroke: '#9ab', width: 1 }, { label: 'mean', stroke: '#1565c0', width: 2 }, { label: 'max', stroke: '#9ab', width: 1 }],
    [xs, pts.map((p) => p[1]), pts.map((p) => p[2]), pts.map((p) => p[3])],
    bands.map((b) => ({ ...b, from: Math.max(b.from, from), to: Math.min(b.to, now) })),
    220,
    [from, now],
  );
}

async function backlogChart(box, id, win, now) {
  const q = new URLSearchParams({ from: String(now - WINDOWS[win]), to: String(now) });
  const data = await getJson(`/api/devices/${encodeURIComponent(id)}/backlog?${q}`);
  box.setAttribute('data-points', String(data.points.length));
  if (data.points.length === 0) return box.append(el('p', { class: 'note' }, 'no status messages in this window'));
  chart(box, 'readings pending on the device (from its status messages)', [{}, { label: 'pending', stroke: '#6a1b9a', width: 2, fill: 'rgba(106, 27, 154, 0.1)' }], [data.points.map((p) => p[0] / 1000), data.points.map((p) => p[1])], [], 160, [now - WINDOWS[win], now]);
}

function gapTable(gaps, truncated) {
  if (gaps.length === 0) return el('p', { class: 'note' }, 'no gaps: every seq from 1 to the highest is stored');
  const body = el('tbody', {});
  for (const g of gaps) {
    body.append(
      el('tr', { class: `gap ${g.state}` }, el('td', { class: 'num' }, g.from === g.to ? num(g.from) : `${num(g.from)}–${num(g.to)}`), el('td', { class: 'num' }, num(g.readings)), el('td', {}, g.state), el('td', {}, time(g.openedAt)), el('td', {}, time(g.closedAt)), el('td', {}, g.reason || '')),
    );
  }
  const t = el('table', { id: 'gaps' }, el('thead', {}, el('tr', {}, ...['Seqs', 'Readings', 'State', 'Opened', 'Closed', 'Reason'].map((h) => el('th', {}, h)))), body);
  return truncated ? el('div', {}, t, el('p', { class: 'note' }, 'more gaps not shown (edge-sensor fleet --gaps DEVICE lists them all)')) : t;
}

async function deviceView(main, id) {
  const win = WINDOWS[new URLSearchParams(location.search).get('window')] ? new URLSearchParams(location.search).get('window') : '24h';
  let data;
  try {
    data = await getJson(`/api/devices/${encodeURIComponent(id)}`);
  } catch (err) {
    return showError(main, err);
  }
  const d = data.device;
  document.title = `${d.device} – edge-sensor fleet`;
  document.getElementById('updated').textContent = `as of ${time(data.generatedAt)}`;
  const facts = el('dl', { class: 'facts' });
  const fact = (k, v) => facts.append(el('dt', {}, k), el('dd', {}, v));
  fact('state', d.state);
  fact('last seen', d.lastSeenAgoMs === null ? '–' : `${duration(d.lastSeenAgoMs)} ago`);
  fact('lag', duration(d.lagMs));
  fact('pending', num(d.pending));
  fact('stored', num(d.readingsStored));
  fact('open gaps', `${num(d.openGaps.ranges)} (${num(d.openGaps.readings)} readings)`);
  fact('dropped', num(d.droppedAnnounced));
  fact('duplicates', num(d.duplicatesAbsorbed));
  const badges = el('span', {});
  for (const t of d.trouble) badges.append(el('span', { class: `badge ${t}` }, TROUBLE_TEXT[t] || t));
  const picker = el('nav', { class: 'windows' }, 'window: ');
  for (const w of Object.keys(WINDOWS)) picker.append(w === win ? el('strong', {}, w) : el('a', { href: `${deviceHref(d.device)}?window=${w}` }, w));
  const legend = el('p', { class: 'legend' }, 'times in UTC; ', el('span', { class: 'swatch open' }), 'open gap (may still arrive) ', el('span', { class: 'swatch dropped' }), 'dropped (announced lost by the device)');
  const charts = el('div', { id: 'charts' });
  main.replaceChildren(el('h1', {}, d.device, ' ', badges), facts, picker, legend, charts, el('h2', {}, 'Backlog'), el('div', { id: 'backlog', class: 'chart' }), el('h2', {}, 'Gaps'), gapTable(data.gaps, data.gapsTruncated));
  const now = Date.parse(data.generatedAt);
  const jobs = [];
  if (data.sensors.length === 0) charts.append(el('p', { class: 'note' }, 'no readings stored yet'));
  for (const s of data.sensors) {
    const box = el('div', { class: 'chart', 'data-sensor': s.sensor });
    charts.append(el('h2', {}, s.sensor, s.unit ? el('span', { class: 'unit' }, ` ${s.unit}`) : null, s.description ? el('span', { class: 'desc' }, ` ${s.description}`) : null), box);
    jobs.push(sensorChart(box, d.device, s, win, now).catch((err) => box.append(el('p', { class: 'error' }, err.message))));
  }
  const bl = document.getElementById('backlog');
  jobs.push(backlogChart(bl, d.device, win, now).catch((err) => bl.append(el('p', { class: 'error' }, err.message))));
  await Promise.all(jobs);
  main.setAttribute('data-ready', 'true');
}

function route() {
  const main = document.getElementById('main');
  const m = /^\/devices\/([^/]+)$/.exec(location.pathname);
  if (m) return deviceView(main, decodeURIComponent(m[1]));
  const refresh = () => fleetView(main).then(() => main.setAttribute('data-ready', 'true'));
  refresh();
  setInterval(refresh, REFRESH_MS);
}

route();
