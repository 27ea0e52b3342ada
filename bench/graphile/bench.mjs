// The graphile-worker side of switchyard's side-by-side throughput benchmark (issue #14).
//
// Each job does what a switchyard mutation does at its core: in ONE transaction it bumps a
// document row (jsonb_set + version + 1) and inserts an audit row for it. Jobs are spread
// round-robin over --topologies documents, so concurrent jobs contend for hot rows as
// mutations of the same topology do.
//
// Modes (each prints ONE JSON line to stdout; graphile-worker's own warnings go to stderr):
//   end_to_end  the worker runs while --producers concurrent producers add jobs one at a time
//               (each awaits its own addJob) until --jobs were added; timed from the first add
//               to the last job done. Latency per job: from just before its addJob to the
//               commit of its transaction in the task handler.
//   burn_down   --jobs jobs are queued first (addJobs in bulk), then the worker starts; timed
//               from starting the worker to the last job done.
// Configs: "default" (graphile-worker's defaults apart from concurrency and pool size) and
// "batching" (0.17's local queue plus batched job completion); see CONFIGS below.
//
// Every run starts from a clean slate: the bench tables and the graphile_worker schema are
// dropped and recreated, so runs are independent. The database must therefore be a scratch one
// (its name must contain "bench"); scripts/bench-graphile creates one.
//
// Usage: node bench.mjs [--database-url URL] [--jobs 20000] [--producers 64]
//          [--producer-pool 32] [--topologies 200] [--concurrency 10]
//          [--config default|batching|all] [--mode end_to_end|burn_down|all] [--timeout 600]
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import pg from "pg";
import { Logger, makeWorkerUtils, run, runMigrations } from "graphile-worker";

const require = createRequire(import.meta.url);
const GRAPHILE_VERSION = require("graphile-worker/package.json").version;
const TASK = "bench_mutation";

// The configs compared. Both size graphile-worker's own pool as its docs recommend ("If in
// doubt, we recommend setting it to `10` or `concurrentJobs + 2`, whichever is larger":
// worker.maxPoolSize in graphile-worker 0.17.3 dist/index.d.ts and website/docs/config.md), so
// the only difference between them is the batching options.
const CONFIGS = {
  // graphile-worker's defaults: localQueue.size -1, completeJobBatchDelay -1 and
  // failJobBatchDelay -1 (all disabled), pollInterval 2000 (new jobs are picked up through
  // LISTEN/NOTIFY, polling only covers future/retried jobs), prepared statements on.
  default: () => ({}),
  // The batching settings of graphile-worker's performance page
  // (website/docs/performance.md, "Quick stats" and "With batching" of graphile/worker), which
  // its authors used for their own throughput numbers:
  //  - localQueue.size: the pool fetches (and locks) up to `size` jobs in one query and hands
  //    them to its workers from memory, so a worker starts its next job without a round trip
  //    to the database; -1 (the default) disables it. (index.d.ts: "A good starting point is
  //    often `concurrentJobs + 1` ... if you have very high throughput and extremely fast
  //    tasks then a much higher number may make sense"; the perf test uses 500.)
  //  - completeJobBatchDelay: ms to wait after a completeJob to batch further completions
  //    into the same round trip; -1 (the default) disables it, "Even setting this to `0` can
  //    be impactful". The trade-off: completed jobs stay locked until the batch runs.
  //  - failJobBatchDelay: the same for failJob (permanent and retryable failures).
  // Introduced in 0.17.0 (RELEASE_NOTES.md, graphile/worker PR #595).
  batching: () => ({
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  }),
};
const MODES = ["end_to_end", "burn_down"];

function parseOptions() {
  const { values } = parseArgs({
    options: {
      "database-url": { type: "string" },
      jobs: { type: "string", default: "20000" },
      producers: { type: "string", default: "64" },
      "producer-pool": { type: "string" },
      topologies: { type: "string", default: "200" },
      // 10 concurrent jobs per worker process. graphile-worker's own default is 1
      // (concurrentJobs, "@defaultValue `1`"), which is meant for slow jobs; its performance
      // page starts its batching advice from `let concurrentJobs = 10; // Set this to whatever
      // suits`, and 10 matches its default pool size. Each job here is one short, database-bound
      // transaction, and the machine has 2 cores shared with Postgres, so 10 keeps enough
      // transactions in flight without oversubscribing it.
      concurrency: { type: "string", default: "10" },
      config: { type: "string", default: "all" },
      mode: { type: "string", default: "all" },
      timeout: { type: "string", default: "600" },
    },
    strict: true,
  });
  const databaseUrl = values["database-url"] ?? process.env.DATABASE_URL;
  if (!databaseUrl) fail("give --database-url or set DATABASE_URL");
  const producers = positive(values.producers, "--producers");
  const options = {
    databaseUrl,
    jobs: positive(values.jobs, "--jobs"),
    producers,
    // Producers share a pool: 64 producers each with a connection of their own, next to the
    // worker's pools, would crowd Postgres's default max_connections (100) on a shared machine.
    producerPool: positive(values["producer-pool"] ?? String(Math.min(producers, 32)), "--producer-pool"),
    topologies: positive(values.topologies, "--topologies"),
    concurrency: positive(values.concurrency, "--concurrency"),
    timeoutMs: positive(values.timeout, "--timeout") * 1000,
    configs: pick(values.config, Object.keys(CONFIGS), "--config"),
    modes: pick(values.mode, MODES, "--mode"),
  };
  const dbName = new URL(databaseUrl).pathname.slice(1);
  if (!dbName.includes("bench")) {
    fail(`refusing to drop tables and the graphile_worker schema in database "${dbName}": ` +
      `use a scratch database whose name contains "bench" (scripts/bench-graphile makes one)`);
  }
  return options;
}

function positive(text, flag) {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) fail(`${flag} must be a positive integer, got "${text}"`);
  return n;
}

function pick(value, allowed, flag) {
  if (value === "all") return allowed;
  if (!allowed.includes(value)) fail(`${flag} must be one of ${allowed.join(", ")} or all`);
  return [value];
}

function fail(message) {
  console.error(`bench-graphile: ${message}`);
  process.exit(2);
}

// Drops info and debug messages (graphile-worker logs every worker start and stop at info).
const quietLogger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

// Recreates the bench tables and graphile-worker's schema, so each run starts empty.
async function resetDatabase(options) {
  const client = new pg.Client({ connectionString: options.databaseUrl });
  await client.connect();
  try {
    await client.query("set client_min_messages = warning");
    await client.query("drop schema if exists graphile_worker cascade");
    await client.query("drop table if exists bench_audit, bench_documents");
    await client.query(`create table bench_documents (
      id bigint primary key,
      version bigint not null default 0,
      body jsonb not null default '{}'::jsonb)`);
    await client.query(`create table bench_audit (
      id bigserial primary key,
      document_id bigint not null references bench_documents (id),
      version bigint not null,
      payload jsonb not null,
      created_at timestamptz not null default now())`);
    await client.query(
      `insert into bench_documents (id, body)
       select i, jsonb_build_object('name', 'topology-' || i, 'nodes', '[]'::jsonb, 'seq', 0)
       from generate_series(1, $1::int) as i`,
      [options.topologies],
    );
    // Flush the setup's dirty pages now rather than during the timed run.
    await client.query("checkpoint").catch(() => {});
  } finally {
    await client.end();
  }
  await runMigrations({ connectionString: options.databaseUrl, logger: quietLogger });
}

// Counts finished jobs and keeps per-job timestamps; `done` resolves when all have finished
// and rejects on the first failure (jobs get one attempt, so a failure never retries silently).
class Tracker {
  constructor(jobs) {
    this.jobs = jobs;
    this.addedAt = new Float64Array(jobs);
    this.finishedAt = new Float64Array(jobs);
    this.finished = 0;
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Rejections are awaited later; this keeps an early one from counting as unhandled.
    this.done.catch(() => {});
  }

  finish(seq) {
    if (this.finishedAt[seq] !== 0) {
      this.reject(new Error(`job ${seq} ran twice`));
      return;
    }
    this.finishedAt[seq] = performance.now();
    this.finished += 1;
    if (this.finished === this.jobs) this.resolve();
  }

  lastFinish() {
    return this.finishedAt.reduce((a, b) => Math.max(a, b), 0);
  }
}

// The task: bump the document and write its audit row in one transaction, on a pool of the
// application's own (as an app would), sized to the worker's concurrency.
function makeTaskList(appPool, tracker) {
  return {
    [TASK]: async (payload) => {
      const client = await appPool.connect();
      try {
        await client.query("begin");
        const { rows } = await client.query(
          `update bench_documents
           set body = jsonb_set(body, '{seq}', to_jsonb($2::bigint)), version = version + 1
           where id = $1 returning version`,
          [payload.document, payload.seq],
        );
        if (rows.length !== 1) throw new Error(`document ${payload.document} missing`);
        await client.query(
          "insert into bench_audit (document_id, version, payload) values ($1, $2, $3)",
          [payload.document, rows[0].version, payload],
        );
        await client.query("commit");
      } catch (error) {
        await client.query("rollback").catch(() => {});
        tracker.reject(error);
        throw error;
      } finally {
        client.release();
      }
      tracker.finish(payload.seq);
    },
  };
}

function jobPayload(seq, options) {
  return { seq, document: (seq % options.topologies) + 1, note: `mutation ${seq}` };
}

function workerPreset(config, options) {
  return {
    worker: {
      connectionString: options.databaseUrl,
      concurrentJobs: options.concurrency,
      maxPoolSize: Math.max(10, options.concurrency + 2),
      logger: quietLogger,
      ...CONFIGS[config](),
    },
  };
}

async function startWorker(config, options, tracker, appPool) {
  return run({
    preset: workerPreset(config, options),
    taskList: makeTaskList(appPool, tracker),
    parsedCronItems: [], // no cron: skips looking for a crontab file
    noHandleSignals: true,
  });
}

async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Producers add one job at a time each, while the worker runs.
async function endToEnd(config, options, tracker, appPool, utils) {
  const runner = await startWorker(config, options, tracker, appPool);
  let next = 0;
  let addedBy = 0;
  const producer = async () => {
    while (next < options.jobs) {
      const seq = next++;
      tracker.addedAt[seq] = performance.now();
      await utils.addJob(TASK, jobPayload(seq, options), { maxAttempts: 1 });
    }
  };
  const started = performance.now();
  try {
    const producing = Promise.all(Array.from({ length: options.producers }, producer))
      .then(() => { addedBy = performance.now(); });
    await withTimeout(Promise.all([producing, tracker.done]), options.timeoutMs, "end_to_end");
  } finally {
    await runner.stop();
  }
  const latencies = Array.from(tracker.finishedAt, (t, i) => t - tracker.addedAt[i]);
  return { started, latencies, addSeconds: (addedBy - started) / 1000 };
}

// All jobs are queued first (in bulk), then the worker drains them.
async function burnDown(config, options, tracker, appPool, utils) {
  const chunk = 5000;
  for (let from = 0; from < options.jobs; from += chunk) {
    const specs = [];
    for (let seq = from; seq < Math.min(from + chunk, options.jobs); seq++) {
      specs.push({ identifier: TASK, payload: jobPayload(seq, options), maxAttempts: 1 });
    }
    await utils.addJobs(specs);
  }
  const started = performance.now();
  const runner = await startWorker(config, options, tracker, appPool);
  try {
    await withTimeout(tracker.done, options.timeoutMs, "burn_down");
  } finally {
    await runner.stop();
  }
  return { started, latencies: null, addSeconds: null };
}

// Checks the outcome in the database: one audit row and one version bump per job, and every
// job gone from the queue. graphile-worker 0.17 does not await a job's completeJob (without
// batching it is fired and forgotten, worker.js), so the last deletions may land just after
// runner.stop() returns: the queue gets a few seconds to empty.
async function verify(options, utils) {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const { rows } = await utils.withPgClient((client) => client.query(
      `select (select count(*) from bench_audit)::int as audits,
              (select coalesce(sum(version), 0) from bench_documents)::int as versions,
              (select count(*) from graphile_worker.jobs)::int as left_in_queue`,
    ));
    const { audits, versions, left_in_queue: left } = rows[0];
    if (audits === options.jobs && versions === options.jobs && left === 0) return;
    if (left === 0 || performance.now() > deadline) {
      throw new Error(`expected ${options.jobs} audit rows and version bumps and an empty queue, ` +
        `found ${audits} audit rows, ${versions} version bumps, ${left} jobs left`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function percentile(sorted, p) {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, index)] * 100) / 100;
}

async function benchOnce(config, mode, options) {
  await resetDatabase(options);
  const tracker = new Tracker(options.jobs);
  const appPool = new pg.Pool({ connectionString: options.databaseUrl, max: options.concurrency });
  const utils = await makeWorkerUtils({
    connectionString: options.databaseUrl,
    maxPoolSize: options.producerPool,
    logger: quietLogger,
  });
  try {
    const measure = mode === "end_to_end" ? endToEnd : burnDown;
    const { started, latencies, addSeconds } = await measure(config, options, tracker, appPool, utils);
    const seconds = (tracker.lastFinish() - started) / 1000;
    await verify(options, utils);
    const sorted = latencies && Float64Array.from(latencies).sort();
    return {
      system: "graphile-worker",
      version: GRAPHILE_VERSION,
      config,
      mode,
      jobs: options.jobs,
      concurrency: options.concurrency,
      producers: mode === "end_to_end" ? options.producers : null,
      producer_pool: mode === "end_to_end" ? options.producerPool : null,
      topologies: options.topologies,
      seconds: Math.round(seconds * 1000) / 1000,
      per_second: Math.round((options.jobs / seconds) * 10) / 10,
      // end_to_end: how long the producers took to add every job (the add side's own pace).
      add_seconds: addSeconds && Math.round(addSeconds * 1000) / 1000,
      latency_ms: sorted && { p50: percentile(sorted, 50), p99: percentile(sorted, 99) },
    };
  } finally {
    await utils.release();
    await appPool.end();
  }
}

async function main() {
  const options = parseOptions();
  for (const config of options.configs) {
    for (const mode of options.modes) {
      const line = await benchOnce(config, mode, options);
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  }
}

main().catch((error) => {
  console.error(`bench-graphile: ${error.stack ?? error}`);
  process.exit(1);
});
