// The Portcullis dashboard page: polls /dashboard/state and renders it; the explain form posts to
// /dashboard/explain. Runs under `script-src 'self'; style-src 'self'`: no inline script or style, no
// innerHTML with data (every value goes in as text), charts are SVG elements with attributes only.
const POLL_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';

/** Element builder: h('td', { class: 'x', 'data-k': 'v' }, 'text', child...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A table; each cell carries its column name (`data-label`), shown beside it when a phone stacks the rows. */
function table(headers, rows, cls) {
  for (const row of rows) {
    [...row.children].forEach((td, i) => {
      if (headers[i] !== undefined && !td.hasAttribute('colspan')) td.dataset.label = headers[i];
      const cell = h('div', { class: 'cell' });
      cell.append(...td.childNodes);
      td.append(cell);
    });
  }
  return h('div', { class: 'scroll' },
    h('table', { class: cls },
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
      h('tbody', {}, rows)));
}

function ago(ms, now) {
  if (ms === null || ms === undefined) return 'never';
  const d = Math.round((now - ms) / 1000);
  const future = d < 0;
  const s = Math.abs(d);
  const text = s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : s < 86400 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

function when(ms, now) {
  if (ms === null || ms === undefined) return h('span', { class: 'muted' }, 'never');
  return h('time', { datetime: new Date(ms).toISOString(), title: new Date(ms).toISOString() }, ago(ms, now));
}

const num = (n, digits = 1) => (n === null || n === undefined ? '–' : n >= 100 ? String(Math.round(n)) : n.toFixed(digits));
const pct = (r) => (r === null || r === undefined ? '–' : `${(r * 100).toFixed(r > 0 && r < 0.01 ? 2 : 1)} %`);

/** A small line chart of one series (values >= 0); the max is written beside it. */
function spark(values, cls, label) {
  const w = 160;
  const hgt = 32;
  const box = svg('svg', { viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, class: `spark ${cls}`, role: 'img', 'aria-label': label });
  const max = Math.max(...values.filter((v) => typeof v === 'number'), 0);
  const n = values.length;
  if (n >= 2 && max > 0) {
    const pts = values.map((v, i) => `${((i / (n - 1)) * w).toFixed(1)},${(hgt - 1 - ((v ?? 0) / max) * (hgt - 2)).toFixed(1)}`).join(' ');
    box.append(svg('polyline', { points: pts, fill: 'none', class: 'line' }));
  } else {
    box.append(svg('line', { x1: 0, y1: hgt - 1, x2: w, y2: hgt - 1, class: 'line flat' }));
  }
  return box;
}

function badge(text, kind) {
  return h('span', { class: `badge ${kind}` }, text);
}

/** Keeps open <details> open across re-renders (by their data-key). */
function openKeys(root) {
  return new Set([...root.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
}

function renderRoutes(state) {
  const root = document.getElementById('routes-body');
  const keep = openKeys(root);
  const live = state.live;
  document.getElementById('routes-note').textContent = live
    ? `Rates, error share and latency over the last ${Math.max(1, Math.round(live.window_ms / 60000))} min (charts: one point per ${live.interval_ms / 1000} s).`
      + (live.unrouted && live.unrouted.rps > 0 ? ` Requests no route takes: ${num(live.unrouted.rps, 2)}/s.` : '')
    : '';
  const cards = state.routes.map((r) => {
    const l = r.live;
    const series = l ? l.series : [];
    const chain = r.filters.map((f, i) => h('li', { class: 'chip', title: JSON.stringify(f) }, `${i + 1}. ${f.filter}`));
    const denies = l && l.top_denies.length
      ? h('ul', { class: 'denies' }, l.top_denies.map((d) => h('li', {}, h('code', {}, d.reason), h('span', { class: 'muted' }, ` (${d.filter})`), ` × ${d.count}`)))
      : h('p', { class: 'muted small' }, 'no denies in the window');
    const key = `route:${r.route}`;
    return h('article', { class: 'card route', 'data-route': r.route },
      h('header', {}, h('h3', {}, r.route), h('code', { class: 'match' }, r.match)),
      h('p', { class: 'upstream' }, r.upstream ? ['→ ', h('strong', {}, r.upstream.name), ' ', h('span', { class: 'muted' }, r.upstream.targets ? `${r.upstream.targets.length} targets` : r.upstream.url)] : h('span', { class: 'muted' }, 'answered by its filters (no upstream)')),
      h('ol', { class: 'chain', 'aria-label': 'filter chain' }, chain.length ? chain : h('li', { class: 'muted' }, 'no filters')),
      h('dl', { class: 'stats' },
        h('div', {}, h('dt', {}, 'req/s'), h('dd', { 'data-stat': 'rps' }, num(l?.rps, 2))),
        h('div', {}, h('dt', {}, 'errors'), h('dd', { 'data-stat': 'errors', class: l && l.error_ratio > 0.01 ? 'bad' : '' }, pct(l?.error_ratio))),
        h('div', {}, h('dt', {}, 'p50'), h('dd', { 'data-stat': 'p50' }, l?.p50_ms == null ? '–' : `${num(l.p50_ms)} ms`)),
        h('div', {}, h('dt', {}, 'p99'), h('dd', { 'data-stat': 'p99' }, l?.p99_ms == null ? '–' : `${num(l.p99_ms)} ms`))),
      h('div', { class: 'charts' },
        h('figure', {}, spark(series.map((p) => p.rps), 'rps', 'requests per second'), h('figcaption', {}, 'req/s')),
        h('figure', {}, spark(series.map((p) => p.error_rps), 'err', 'errors per second'), h('figcaption', {}, '5xx/s')),
        h('figure', {}, spark(series.map((p) => p.p99_ms), 'lat', 'p99 latency'), h('figcaption', {}, 'p99'))),
      h('div', { class: 'deny-box' }, h('h4', {}, 'Top deny reasons'), denies),
      h('details', { 'data-key': key, open: keep.has(key) }, h('summary', {}, 'explain view (JSON)'), h('pre', {}, JSON.stringify({ ...r, live: undefined }, null, 2))));
  });
  root.replaceChildren(...cards);
}

function targetState(t) {
  if (t.state === 'ejected') return badge('ejected', 'bad');
  if (t.state === 'failing_check') return badge('failing check', 'bad');
  return badge('healthy', 'good');
}

function renderUpstreams(state) {
  const now = state.now;
  const root = document.getElementById('upstreams-body');
  if (!state.upstreams.length) return root.replaceChildren(h('p', { class: 'muted' }, 'no upstreams'));
  root.replaceChildren(...state.upstreams.map((u) => h('article', { class: 'card wide', 'data-upstream': u.name },
    h('header', {}, h('h3', {}, u.name), h('span', { class: 'muted' }, `${u.balance}${u.http2 ? ', h2' : ''}${u.active_check ? `, checks ${u.active_check.path} every ${u.active_check.interval_ms / 1000} s` : ''}`)),
    table(['target', 'state', 'failures', 'ejections', 'last ejection', 'in flight', 'pool'], u.targets.map((t) => {
      const e = t.last_ejection;
      return h('tr', { 'data-target': t.url, 'data-state': t.state },
        h('td', {}, h('code', {}, t.url), t.weight !== 1 ? h('span', { class: 'muted' }, ` ×${t.weight}`) : null),
        h('td', {}, targetState(t), t.last_check ? h('div', { class: 'small muted' }, `check: ${t.last_check.detail}`) : null),
        h('td', {}, String(t.failures_in_a_row)),
        h('td', {}, `${t.ejections_total} total`, t.ejections_in_a_row ? h('div', { class: 'small muted' }, `${t.ejections_in_a_row} in a row`) : null),
        h('td', { class: 'ejection' }, e ? [h('code', {}, e.reason), ' ', when(e.at, now), e.active ? h('div', { class: 'small' }, `back ${ago(e.until, now)}`) : null] : h('span', { class: 'muted' }, 'none')),
        h('td', {}, String(t.inflight)),
        h('td', {}, h('meter', { min: 0, max: u.max_connections, value: t.pool.connected, title: `${t.pool.connected} of ${u.max_connections} connections` }),
          h('div', { class: 'small muted' }, `${t.pool.connected}/${u.max_connections} conn, ${t.pool.running} busy, ${t.pool.pending + t.pool.queued} waiting`)));
    }), 'targets'))));
}

function renderRateLimits(state) {
  const now = state.now;
  const rl = state.rate_limits;
  const root = document.getElementById('ratelimits-body');
  const stores = rl.stores.map((s) => {
    let head;
    if (s.store === 'memory') head = [badge('in process', 'neutral'), ' counts kept in this process (no Redis)'];
    else if (s.up) head = [badge('Redis up', 'good'), ' limits shared through ', h('code', {}, s.store)];
    else head = [badge(s.reason === 'connecting' ? 'connecting' : 'Redis down', 'bad'), ' ', h('strong', { 'data-failure-mode': s.on_redis_failure }, `on_redis_failure: ${s.on_redis_failure}`), ' in force (', s.on_redis_failure === 'deny' ? '503 ratelimit_unavailable' : s.on_redis_failure === 'allow' ? 'no limits' : 'counted in process', ')'];
    return h('article', { class: 'card wide', 'data-store': s.store, 'data-up': String(s.up) },
      h('p', { class: 'store-state' }, head),
      s.store !== 'memory' ? h('p', { class: 'small muted' }, `since `, when(s.since, now), ` (${s.reason}); failure mode: ${s.on_redis_failure}${s.required ? '; /readyz fails while down' : ''}`) : null);
  });
  const hits = rl.limits_hit.length
    ? table(['limit', 'route', 'limited'], rl.limits_hit.map((x) => h('tr', {}, h('td', {}, h('code', {}, x.limit)), h('td', {}, x.route), h('td', {}, String(x.count)))), 'hits')
    : h('p', { class: 'muted' }, 'no request was limited in the window');
  root.replaceChildren(...(stores.length ? stores : [h('p', { class: 'muted' }, 'no rate limits in this policy')]), h('h3', {}, 'Limits most often hit'), hits);
}

function renderIdentity(state) {
  const now = state.now;
  const root = document.getElementById('identity-body');
  if (!state.identity.length) return root.replaceChildren(h('p', { class: 'muted' }, 'no authentication providers'));
  root.replaceChildren(...state.identity.map((p) => {
    if (p.kind === 'jwt') {
      return h('article', { class: 'card wide', 'data-provider': p.provider },
        h('header', {}, h('h3', {}, p.provider), h('span', { class: 'muted' }, p.source === 'jwks' ? 'JWT, JWKS' : 'JWT, inline keys')),
        p.source === 'jwks' ? h('p', {}, h('code', {}, p.url)) : null,
        h('p', {}, 'key ids: ', p.key_ids.length ? p.key_ids.map((k) => h('code', { class: 'kid' }, k)) : h('span', { class: 'bad' }, 'none loaded')),
        p.source === 'jwks' ? h('p', { class: 'small' }, 'last refresh ', when(p.last_refresh, now), ', last attempt ', when(p.last_attempt, now), p.last_error ? [' — ', h('span', { class: 'bad' }, p.last_error)] : null) : null);
    }
    return h('article', { class: 'card wide', 'data-provider': p.provider },
      h('header', {}, h('h3', {}, p.provider), h('span', { class: 'muted' }, 'forward auth')),
      h('p', {}, h('code', {}, p.url), ' ', badge(p.state.replace(/_/g, ' '), p.state === 'failing' ? 'bad' : p.state === 'answering' ? 'good' : 'neutral')),
      h('p', { class: 'small' }, 'last answer ', when(p.last_answer, now), ', last failure ', when(p.last_failure, now), p.last_failure_reason ? ` (${p.last_failure_reason})` : ''));
  }));
}

function renderPolicy(state) {
  const now = state.now;
  const p = state.policy;
  document.getElementById('policy-body').replaceChildren(
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'hash'), h('dd', {}, h('code', { id: 'policy-hash' }, p.hash))),
      h('div', {}, h('dt', {}, 'mode'), h('dd', {}, p.mode === 'production' ? badge('production', 'good') : badge('development', 'warn'))),
      h('div', {}, h('dt', {}, 'loaded'), h('dd', {}, when(p.loaded_at, now))),
      h('div', {}, h('dt', {}, 'file'), h('dd', {}, h('code', {}, p.file))),
      h('div', {}, h('dt', {}, 'workers'), h('dd', {}, String(p.workers))),
      h('div', {}, h('dt', {}, 'in flight'), h('dd', {}, String(state.gateway.inflight), state.gateway.draining ? badge('draining', 'warn') : null))),
    h('h3', {}, 'Reload history'),
    p.reloads.length
      ? table(['when', 'result', 'detail'], p.reloads.map((r) => h('tr', { class: r.ok ? 'ok' : 'refused', 'data-reload': r.ok ? 'ok' : 'refused' },
        h('td', {}, when(r.at, now)),
        h('td', {}, r.ok ? badge('reloaded', 'good') : badge('refused', 'bad')),
        h('td', {}, r.ok ? h('code', {}, r.hash) : h('pre', { class: 'errors' }, r.errors.join('\n'))))), 'reloads')
      : h('p', { class: 'muted' }, 'no reload since start'));
  const certs = state.certificates;
  document.getElementById('certs-body').replaceChildren(certs.length
    ? table(['listener', 'subject', 'expires', 'days left'], certs.map((c) => c.error
      ? h('tr', {}, h('td', {}, c.listener), h('td', { colspan: 3, class: 'bad' }, `cannot read ${c.file}: ${c.error}`))
      : h('tr', { class: c.warning ? 'warning' : '', 'data-cert': c.listener },
        h('td', {}, c.listener),
        h('td', {}, h('code', {}, c.subject), c.san ? h('div', { class: 'small muted' }, c.san) : null),
        h('td', {}, h('time', { datetime: new Date(c.not_after).toISOString() }, new Date(c.not_after).toISOString().slice(0, 10))),
        h('td', {}, c.warning ? badge(`${c.days_left} d — renew`, 'bad') : `${c.days_left} d`))), 'certs')
    : h('p', { class: 'muted' }, 'no TLS listener'));
}

function render(state) {
  const p = state.policy;
  document.getElementById('summary').textContent = `${p.mode} · policy ${p.hash} · ${state.routes.length} routes · ${state.upstreams.length} upstreams · up ${ago(Date.now() - state.gateway.uptime_s * 1000, Date.now()).replace(' ago', '')}`;
  renderRoutes(state);
  renderUpstreams(state);
  renderRateLimits(state);
  renderIdentity(state);
  renderPolicy(state);
}

function setConn(kind, text) {
  const el = document.getElementById('conn');
  el.dataset.state = kind;
  el.textContent = text;
}

async function poll() {
  try {
    const res = await fetch('/dashboard/state', { cache: 'no-store', headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
    setConn('live', 'live');
  } catch (err) {
    setConn('down', `no answer (${err.message})`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function parseHeaders(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`header "${line}": expected "Name: value"`);
    out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}

function showExplain(text, out) {
  document.getElementById('explain-result').hidden = false;
  document.getElementById('explain-json').textContent = text;
  const a = out.answer ?? {};
  const answer = document.getElementById('explain-answer');
  answer.replaceChildren(h('span', {},
    out.route ? ['route ', h('strong', {}, out.route), ' (', h('code', {}, out.match), ') → '] : 'no route → ',
    a.forward ? badge(`forwarded to ${a.forward}`, 'good') : badge(`${a.status} ${a.reason}`, 'bad'),
    a.filter ? h('span', { class: 'muted' }, ` by ${a.filter}`) : null));
  answer.dataset.answer = a.forward ? `forward ${a.forward}` : `${a.status} ${a.reason}`;
  const rows = (out.decisions ?? []).map((d, i) => h('tr', { 'data-decision': d.decision },
    h('td', {}, String(i + 1)), h('td', {}, d.filter),
    h('td', {}, badge(d.decision.replace(/_/g, ' '), d.decision === 'deny' ? 'bad' : d.decision === 'continue' ? 'good' : 'neutral')),
    h('td', {}, d.reason ? h('code', {}, d.reason) : '', d.detail ? h('div', { class: 'small muted' }, d.detail) : null)));
  document.querySelector('#explain-decisions tbody').replaceChildren(...rows);
}

async function explain(event) {
  event.preventDefault();
  const button = document.getElementById('explain-submit');
  button.disabled = true;
  try {
    const body = JSON.stringify({
      method: document.getElementById('explain-method').value.trim(),
      url: document.getElementById('explain-url').value.trim(),
      headers: parseHeaders(document.getElementById('explain-headers').value),
      client_ip: document.getElementById('explain-client-ip').value.trim(),
    });
    const res = await fetch('/dashboard/explain', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const text = await res.text();
    const out = JSON.parse(text);
    if (!res.ok) showExplain(text, { answer: { status: res.status, reason: out.reason }, decisions: [] });
    else showExplain(text, out);
  } catch (err) {
    showExplain(String(err.message), { answer: { status: 0, reason: err.message }, decisions: [] });
  } finally {
    button.disabled = false;
  }
}

document.getElementById('explain-form').addEventListener('submit', explain);
poll();
