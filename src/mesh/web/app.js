// The hub's page: one EventSource to the hub (never to nodes or the broker),
// DOM built with textContent only (node ids and details are data, never markup),
// charts by uPlot. No framework, no build step.
'use strict';

const $ = (id) => document.getElementById(id);
const PALETTE = ['#0969da', '#cf222e', '#1a7f37', '#8250df', '#bf8700', '#e16f24', '#1b7c83', '#bf3989', '#6e7781', '#0550ae', '#953800', '#116329'];
const color = (i) => PALETTE[i % PALETTE.length];

/** el('td', {class: 'x'}, 'text', child): strings become text nodes. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'title') e.title = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmtNs(ns) {
  if (ns === undefined || ns === null || !Number.isFinite(ns)) return '–';
  const a = Math.abs(ns);
  if (a < 1e3) return `${ns.toFixed(0)} ns`;
  if (a < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (a < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e9).toFixed(3)} s`;
}
const signed = (ns) => (ns === undefined || ns === null ? '–' : `${ns >= 0 ? '+' : ''}${fmtNs(ns)}`);
function fmtAge(ms) {
  if (ms === undefined || ms === null) return '–';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}
function badge(text, kind) {
  return el('span', { class: `badge ${kind || ''}` }, text);
}

const page = { control: false, nodes: [], selected: new Set(), triggers: [], details: new Map(), shown: undefined, history: { t: [], nodes: {}, agreementUs: [] } };

// ------------------------------------------------------------ header

function renderHeader(h) {
  const items = [
    ['hub time', h.hub.synchronized ? `stratum ${h.hub.stratum ?? '–'}, ref ${h.hub.reference ?? '–'}, ±${fmtNs(h.hub.errorBoundNs)}` : `NOT synchronized${h.hub.unsynchronizedReason ? `: ${h.hub.unsynchronizedReason}` : ''}`],
    ['NTP', h.hub.served === undefined ? 'not served' : `${h.hub.requestsPerSecond ?? 0} req/s, ${h.hub.served} served, ${h.hub.rateLimited} rate-limited`],
    ['broker', null],
    ['online', `${h.counts.online} / ${h.counts.nodes}`],
    ['synchronized', String(h.counts.synchronized)],
    [`within ${fmtNs(h.gateThresholdNs)}`, String(h.counts.ready)],
    ['agreement now', h.agreementNs === undefined ? '–' : fmtNs(h.agreementNs)],
    ['worst bound', h.worstBoundNs === undefined ? '–' : fmtNs(h.worstBoundNs)],
    ['version', h.version],
  ];
  const dl = $('summary');
  dl.replaceChildren(
    ...items.map(([k, v]) =>
      el('div', { class: `item-${k.replace(/\W+/g, '-')}` }, el('dt', {}, k), el('dd', {}, k === 'broker' ? badge(h.broker.connected ? `connected ${h.broker.url}` : `DISCONNECTED ${h.broker.url}`, h.broker.connected ? '' : 'bad') : v)),
    ),
  );
}

// ------------------------------------------------------------ nodes

function lastTriggerCell(t) {
  if (!t) return '–';
  const parts = [];
  if (t.ack === 'rejected') parts.push(badge(`rejected: ${t.reason ?? ''}`, 'bad'));
  else if (t.ack === 'cancelled') parts.push(badge('cancelled', 'warn'));
  else if (t.ack === 'scheduled') {
    const done = t.expectedFires !== undefined && t.fires >= t.expectedFires;
    parts.push(badge(`fired ${t.fires}/${t.expectedFires ?? '?'}`, done ? '' : 'info'));
  } else parts.push(badge(`reports ${t.fires}`, 'info'));
  if (t.latenessMaxNs !== undefined) parts.push(` late ≤ ${fmtNs(t.latenessMaxNs)}`);
  if (t.trueErrorMaxNs !== undefined) parts.push(`, true error ≤ ${fmtNs(t.trueErrorMaxNs)}`);
  else if (t.errorBoundMaxNs !== undefined) parts.push(`, bound ≤ ${fmtNs(t.errorBoundMaxNs)}`);
  if (t.exposureErrorNs !== undefined) parts.push(`, exposure ${fmtNs(t.exposureErrorNs)}`);
  if (t.error) parts.push(el('span', { class: 'error' }, ` ${t.error}`));
  return el('span', { title: `${t.triggerId}${t.detail ? `: ${t.detail}` : ''}` }, ...parts);
}

function renderNodes(nodes) {
  const body = $('nodes').tBodies[0];
  const rows = nodes.map((n) => {
    const src = n.source;
    const status = n.online ? badge(n.ready ? 'online' : 'online, not ready', n.ready ? '' : 'warn') : badge('offline', 'bad');
    const rejected = Object.entries(n.rejections || {}).map(([k, v]) => `${k} ${v}`).join(', ');
    const tr = el(
      'tr',
      { class: n.online ? 'online' : 'offline', 'data-node': n.id },
      page.control ? el('td', {}, el('input', { type: 'checkbox', 'aria-label': `select ${n.id}`, checked: page.selected.has(n.id), onchange: (e) => (e.target.checked ? page.selected.add(n.id) : page.selected.delete(n.id)) })) : undefined,
      el('td', { class: 'id' }, n.id),
      el('td', { class: 'status', title: n.offlineWhy || n.notReadyWhy }, status, n.online ? '' : ` ${n.offlineWhy ?? ''}`),
      el('td', { class: 'seen' }, fmtAge(n.lastSeenAgeMs)),
      el('td', { class: 'sync' }, n.synchronized ? 'yes' : 'NO'),
      el('td', { class: 'offset' }, signed(n.hubOffsetNs)),
      el('td', { class: 'bound' }, n.errorBoundNs === null ? 'unbounded' : fmtNs(n.errorBoundNs)),
      el('td', {}, n.frequencyPpm === undefined ? '–' : `${n.frequencyPpm.toFixed(2)} ppm`),
      el('td', { title: src && src.lastError }, src ? `${src.address} ${src.state}, reach ${src.reach}, poll ${src.pollSeconds ?? '?'} s, sample ${fmtAge(src.lastSampleAgeMs)} ago` : 'system clock'),
      el('td', { class: n.versionMismatch ? 'mismatch' : '' }, n.version ?? '?'),
      el('td', {}, (n.actions || []).join(', ')),
      el('td', {}, String(n.pending)),
      el('td', { class: 'last-trigger' }, lastTriggerCell(n.lastTrigger)),
      el('td', {}, rejected || '0'),
      el('td', { class: 'warnings' }, (n.warnings || []).join('; ')),
      page.control ? el('td', {}, el('button', { type: 'button', class: 'identify', disabled: !n.online, onclick: () => identify(n.id) }, 'identify')) : undefined,
    );
    return tr;
  });
  body.replaceChildren(...rows);
}

// ------------------------------------------------------------ charts

const charts = {};
function chartWidth(id) {
  return Math.max(480, Math.min(900, ($(id).parentElement.clientWidth || 600) - 10));
}

/** (Re)creates a chart when its series change, else only swaps the data. */
function plot(id, key, seriesNames, data, extra) {
  const c = charts[id];
  if (c && c.key === key) {
    c.u.setData(data);
    return;
  }
  if (c) c.u.destroy();
  const opts = {
    width: chartWidth(id),
    height: 220,
    legend: { show: true },
    scales: { x: { time: extra?.time !== false } },
    series: [{}, ...seriesNames.map((name, i) => ({ label: name, stroke: color(i), width: 2, points: { show: extra?.points ?? false }, spanGaps: false, ...(extra?.series?.[i] || {}) }))],
    axes: [{}, { size: 70 }],
  };
  if (extra?.xValues) opts.axes[0] = { values: extra.xValues };
  charts[id] = { key, u: new uPlot(opts, data, $(id)) };
}

function renderHistory() {
  const h = page.history;
  const ids = Object.keys(h.nodes).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (ids.length) plot('offsets-chart', ids.join('\u0000'), ids, [h.t, ...ids.map((id) => h.nodes[id])]);
  plot('agreement-chart', 'agreement', ['max − min'], [h.t, h.agreementUs]);
}

function appendPoint(p) {
  if (!p || p.t === undefined) return;
  const h = page.history;
  if (h.t.length && h.t[h.t.length - 1] >= p.t) return;
  h.t.push(p.t);
  h.agreementUs.push(p.agreementUs ?? null);
  for (const [id, v] of Object.entries(p.nodes || {})) {
    if (!h.nodes[id]) h.nodes[id] = new Array(h.t.length - 1).fill(null);
    h.nodes[id].push(v ?? null);
  }
  for (const s of Object.values(h.nodes)) while (s.length < h.t.length) s.push(null);
  const max = 300;
  while (h.t.length > max) {
    h.t.shift();
    h.agreementUs.shift();
    for (const s of Object.values(h.nodes)) s.shift();
  }
  renderHistory();
}

// ------------------------------------------------------------ triggers

const STATUS_KIND = { waiting: 'info', pending: 'info', fired: '', incomplete: 'warn', 'not-ready': 'bad', failed: 'bad', cancelled: 'warn' };

function describeAction(a) {
  if (a.kind === 'blink') return `blink line ${a.line} ×${a.count}`;
  if (a.kind === 'capture') return `capture${a.name ? ` ${a.name}` : ''}`;
  return a.kind;
}

function renderTriggers() {
  const list = $('triggers');
  list.replaceChildren(
    ...page.triggers.map((t) =>
      el(
        'li',
        { class: t.id === page.shown ? 'selected' : '', 'data-trigger': t.id, onclick: () => showTrigger(t.id) },
        badge(t.status, STATUS_KIND[t.status]),
        ` ${t.kind === 'identify' ? `identify ${t.nodes?.[0] ?? ''}` : describeAction(t.action)} → ${t.targets ? t.targets.length : t.nodes ? t.nodes.length : 'all'} node(s); acked ${t.acked}, fired ${t.fired}/${t.expected ?? '?'}`,
        t.spreadMaxNs !== undefined ? `, spread ≤ ${fmtNs(t.spreadMaxNs)}` : '',
        t.error ? el('span', { class: 'error' }, ` ${t.error}`) : '',
        t.status === 'pending' && page.control ? el('button', { type: 'button', class: 'cancel', onclick: (e) => { e.stopPropagation(); cancel(t.id); } }, 'cancel') : '',
      ),
    ),
  );
}

function renderDetail(d) {
  $('trigger-detail').hidden = false;
  $('td-title').textContent = `${d.triggerId ?? d.id}: ${d.status}`;
  $('td-summary').textContent = `${describeAction(d.action)}; ${d.startNs ? `first instant ${new Date(Number(BigInt(d.startNs) / 1000000n)).toISOString()}, chosen ${Math.round(d.leadMs)} ms ahead` : 'not published'}${d.laggards ? `; held up by ${d.laggards.map((l) => `${l.node} (${l.why})`).join(', ')}` : ''}`;
  const body = $('td-rows').tBodies[0];
  body.replaceChildren(
    ...d.rows.map((r) =>
      el('tr', {}, el('td', {}, r.node), el('td', {}, r.ack + (r.reason ? `: ${r.reason}` : '')), el('td', {}, `${r.fires}/${r.expectedFires ?? '?'}`), el('td', {}, fmtNs(r.latenessMaxNs)), el('td', {}, fmtNs(r.errorBoundNs)), el('td', {}, fmtNs(r.trueErrorMaxNs)), el('td', {}, r.detail ?? '')),
    ),
  );
  const p = d.plot;
  const x = p.edges.map((_, i) => i);
  const labels = (u, ticks) => ticks.map((i) => p.edges[i] ?? '');
  if (x.length) {
    const hasTrue = p.trueSpreadNs.some((v) => v !== null);
    const names = hasTrue ? ['reported', 'true'] : ['reported'];
    const series = [p.spreadNs.map((v) => v / 1e3), ...(hasTrue ? [p.trueSpreadNs.map((v) => (v === null ? null : v / 1e3))] : [])];
    plot('spread-chart', `${d.id}:${names}`, names, [x, ...series], { time: false, points: true, xValues: labels });
    const nodes = Object.keys(p.lateness);
    plot('lateness-chart', `${d.id}:${nodes.join(',')}`, nodes, [x, ...nodes.map((n) => p.lateness[n].map((v) => (v === null ? null : v / 1e3)))], { time: false, points: true, xValues: labels });
  }
}

async function showTrigger(id) {
  page.shown = id;
  renderTriggers();
  const cached = page.details.get(id);
  if (cached) renderDetail(cached);
  const res = await fetch(`/api/triggers/${encodeURIComponent(id)}`);
  if (res.ok) {
    const d = await res.json();
    page.details.set(id, d);
    if (page.shown === id) renderDetail(d);
  }
}

// ------------------------------------------------------------ controls

function token() {
  return $('f-token').value.trim();
}

async function post(path, body) {
  const err = $('fire-error');
  err.textContent = '';
  sessionStorage.setItem('lockstep-token', token());
  const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token()}` }, body: JSON.stringify(body) });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) {
    err.textContent = `${res.status}: ${answer.message ?? res.statusText}`;
    return undefined;
  }
  if (answer.id) {
    page.shown = answer.id;
    upsertTrigger(answer);
  }
  return answer;
}

function upsertTrigger(summary) {
  const i = page.triggers.findIndex((t) => t.id === summary.id);
  if (i >= 0) page.triggers[i] = { ...page.triggers[i], ...summary };
  else page.triggers.unshift(summary);
  renderTriggers();
}

function actionFromForm() {
  if ($('f-kind').value === 'capture') {
    const a = { kind: 'capture' };
    if ($('f-name').value.trim()) a.name = $('f-name').value.trim();
    return a;
  }
  const ns = (text) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)\s*$/.exec(text);
    if (!m) throw new Error(`'${text}' is not a duration (100ms, 1s)`);
    return Math.round(Number(m[1]) * { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9 }[m[2]]);
  };
  const line = $('f-line').value.trim();
  return { kind: 'blink', line: /^\d+$/.test(line) ? Number(line) : line, onNs: ns($('f-on').value), periodNs: ns($('f-every').value), count: Number($('f-count').value) };
}

async function fire(e) {
  e.preventDefault();
  let action;
  try {
    action = actionFromForm();
  } catch (error) {
    $('fire-error').textContent = error.message;
    return;
  }
  const body = { action, readyWithin: $('f-ready').value.trim() };
  if ($('f-targets').value === 'selected') {
    if (page.selected.size === 0) {
      $('fire-error').textContent = 'select at least one node (the boxes in the first column)';
      return;
    }
    body.nodes = [...page.selected];
  }
  await post('/api/trigger', body);
}

function identify(node) {
  const line = $('f-line').value.trim();
  return post('/api/identify', { node, line: /^\d+$/.test(line) ? Number(line) : line });
}

function cancel(id) {
  return post('/api/cancel', { id }).then((d) => d && (page.details.set(d.id, d), upsertTrigger(d), page.shown === d.id && renderDetail(d)));
}

// ------------------------------------------------------------ the stream

function onState(s) {
  if (s.control !== page.control || !page.started) {
    page.started = true;
    page.control = s.control;
    $('controls').hidden = !s.control;
    for (const th of document.querySelectorAll('.control-only')) th.hidden = !s.control;
    if (!$('f-ready').value) $('f-ready').value = fmtNs(s.gateThresholdNs).replace(' ', '').replace('µs', 'us');
  }
  renderHeader(s.header);
  page.nodes = s.nodes;
  renderNodes(s.nodes);
  if (s.triggers) {
    page.triggers = s.triggers;
    renderTriggers();
  }
  appendPoint(s.point);
  $('stream').textContent = `live ${new Date().toLocaleTimeString()}`;
  $('stream').className = 'badge';
}

function connect() {
  const source = new EventSource('/api/events');
  source.addEventListener('history', (e) => {
    page.history = JSON.parse(e.data);
    renderHistory();
  });
  source.addEventListener('state', (e) => onState(JSON.parse(e.data)));
  source.addEventListener('trigger', (e) => {
    const d = JSON.parse(e.data);
    page.details.set(d.id, d);
    upsertTrigger(d);
    if (page.shown === d.id || page.shown === undefined) {
      page.shown = d.id;
      renderDetail(d);
    }
  });
  // EventSource reconnects by itself (the hub sends retry: 2000); say so instead of freezing silently.
  source.onerror = () => {
    $('stream').textContent = 'stream lost: reconnecting…';
    $('stream').className = 'badge bad';
  };
}

$('fire-form').addEventListener('submit', fire);
$('f-kind').addEventListener('change', () => {
  const capture = $('f-kind').value === 'capture';
  for (const l of document.querySelectorAll('.blink-only')) l.hidden = capture;
  for (const l of document.querySelectorAll('.capture-only')) l.hidden = !capture;
});
$('f-token').value = sessionStorage.getItem('lockstep-token') || '';
connect();
