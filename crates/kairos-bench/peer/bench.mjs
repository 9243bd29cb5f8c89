// The BullMQ side of `kairos-bench compare`: the create, burst and steady scenarios against a
// Redis that kairos-bench started (appendonly yes, appendfsync always).
//
//   node bench.mjs create --port P --clients 64 --secs 20
//   node bench.mjs burst  --port P --jobs 100000 --concurrency 64
//   node bench.mjs steady --port P --rate 10000 --secs 20 --concurrency 64
//
// Progress goes to stderr; the result is one JSON object on the last line of stdout.
// "Created" means Queue.add resolved, i.e. Redis ran the script and (appendfsync always)
// wrote the AOF before answering. The worker acknowledges each job by returning at once.
import { Queue, Worker } from 'bullmq';
import { performance } from 'node:perf_hooks';

const [mode, ...rest] = process.argv.slice(2);
const opt = {};
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, '')] = rest[i + 1];
const port = Number(opt.port);
const connection = { host: '127.0.0.1', port };
const QUEUE = 'kairos-bench';
const YEAR_MS = 365 * 24 * 3600 * 1000;
const payload = 'x'.repeat(64);

// Wall-clock milliseconds with sub-millisecond resolution.
const wallMs = () => performance.timeOrigin + performance.now();

function quantiles(samples) {
  if (samples.length === 0) return { p50_ms: 0, p90_ms: 0, p99_ms: 0, max_ms: 0 };
  const s = Float64Array.from(samples).sort();
  const q = (p) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: s[s.length - 1] };
}

function progress(label, start, count, of) {
  let last = 0;
  return setInterval(() => {
    const now = count();
    process.stderr.write(
      `  [peer ${label} ${((wallMs() - start) / 1000).toFixed(0).padStart(4)}s] ${now}${of ? '/' + of : ''}, ${now - last}/s\n`,
    );
    last = now;
  }, 1000);
}

async function create() {
  const clients = Number(opt.clients ?? 64);
  const secs = Number(opt.secs ?? 20);
  const queue = new Queue(QUEUE, { connection });
  await queue.waitUntilReady();
  let next = 0;
  let ok = 0;
  let errors = 0;
  let firstError = null;
  const latencies = [];
  const start = wallMs();
  const deadline = start + secs * 1000;
  const tick = progress('create', start, () => ok);
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (wallMs() < deadline && errors < 100) {
        const i = next++;
        const sent = performance.now();
        try {
          await queue.add('job', { payload }, { jobId: `create-${i}`, delay: YEAR_MS, removeOnComplete: true });
          latencies.push(performance.now() - sent);
          ok++;
        } catch (e) {
          errors++;
          firstError ??= String(e);
        }
      }
    }),
  );
  const elapsed = (wallMs() - start) / 1000;
  clearInterval(tick);
  await queue.close();
  return { mode, clients, jobs: ok, errors, first_error: firstError, secs: elapsed, jobs_per_s: ok / elapsed, ...quantiles(latencies) };
}

// Adds `count` jobs; job i comes due at dueAt(i) (wall ms). Returns the creation time in s.
async function addAll(queue, count, dueAt) {
  const start = wallMs();
  const chunk = 1000;
  const tick = progress('create', start, () => done, count);
  let done = 0;
  for (let from = 0; from < count; from += chunk) {
    const batch = [];
    const now = Date.now();
    for (let i = from; i < Math.min(count, from + chunk); i++) {
      batch.push({
        name: 'job',
        data: { i, payload },
        opts: { jobId: `j-${i}`, delay: Math.max(0, Math.round(dueAt(i) - now)), removeOnComplete: true },
      });
    }
    await queue.addBulk(batch);
    done += batch.length;
  }
  clearInterval(tick);
  return (wallMs() - start) / 1000;
}

// Runs a worker until `count` distinct jobs arrived (or `timeoutMs`); returns arrival times.
function startWorker(count, concurrency) {
  const arrivals = new Float64Array(count);
  let received = 0;
  let duplicates = 0;
  let resolveAll;
  const all = new Promise((r) => (resolveAll = r));
  const worker = new Worker(
    QUEUE,
    async (job) => {
      const i = job.data.i;
      if (arrivals[i] === 0) {
        arrivals[i] = wallMs();
        if (++received === count) resolveAll();
      } else {
        duplicates++;
      }
    },
    { connection, concurrency, autorun: true },
  );
  return { worker, arrivals, all, received: () => received, duplicates: () => duplicates };
}

async function deliver(label, count, dueAt, firstDue, lastDue, concurrency, timeoutMs) {
  const queue = new Queue(QUEUE, { connection });
  await queue.waitUntilReady();
  const w = startWorker(count, concurrency);
  await w.worker.waitUntilReady();
  const createS = await addAll(queue, count, dueAt);
  const createdAt = wallMs();
  if (createdAt >= firstDue) {
    await w.worker.close(true);
    await queue.close();
    return { mode, overran: true, create_s: createS };
  }
  const start = wallMs();
  const tick = progress(label, start, w.received, count);
  const timedOut = await Promise.race([
    w.all.then(() => false),
    new Promise((r) => setTimeout(() => r(true), Math.max(0, lastDue - wallMs()) + timeoutMs)),
  ]);
  clearInterval(tick);
  await new Promise((r) => setTimeout(r, 300));
  let last = 0;
  let first = Infinity;
  const late = [];
  let early = 0;
  for (let i = 0; i < count; i++) {
    const a = w.arrivals[i];
    if (a === 0) continue;
    last = Math.max(last, a);
    first = Math.min(first, a);
    const l = a - dueAt(i);
    if (l < 0) early++;
    late.push(Math.max(0, l));
  }
  const received = w.received();
  const duplicates = w.duplicates();
  await w.worker.close(true);
  await queue.close();
  const span = (last - firstDue) / 1000;
  const q = quantiles(late);
  return {
    mode,
    jobs: count,
    concurrency,
    create_s: createS,
    slack_s: (firstDue - createdAt) / 1000,
    delivered: received,
    duplicates,
    early,
    timed_out: timedOut,
    first_ms: received ? first - firstDue : null,
    last_s: span,
    delivered_per_s: span > 0 ? received / span : 0,
    late_p50_ms: q.p50_ms,
    late_p99_ms: q.p99_ms,
    late_max_ms: q.max_ms,
  };
}

async function main() {
  const concurrency = Number(opt.concurrency ?? 64);
  const lead = Number(opt.lead ?? 5) * 1000;
  if (mode === 'create') return create();
  if (mode === 'burst') {
    const jobs = Number(opt.jobs ?? 100000);
    const due = Date.now() + lead;
    return deliver('burst', jobs, () => due, due, due, concurrency, 120000);
  }
  if (mode === 'steady') {
    const rate = Number(opt.rate ?? 10000);
    const secs = Number(opt.secs ?? 20);
    const jobs = Math.round(rate * secs);
    const t0 = Date.now() + lead;
    const dueAt = (i) => t0 + (i * 1000) / rate;
    return deliver('steady', jobs, dueAt, t0, dueAt(jobs - 1), concurrency, 60000);
  }
  throw new Error(`unknown mode ${mode}: expected create, burst or steady`);
}

main().then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
  },
  (err) => {
    process.stderr.write(`peer failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
