// Evaluates a batch of IAM authorization requests with @cloud-copilot/iam-simulate, offline.
//
// Input (JSON on stdin):
//   { "policies": { "<id>": <policy document>, ... },
//     "requests": [ { "principal": "<ARN>" | null (anonymous), "action": "s3:GetObject",
//                     "resource": "<ARN>", "resourceAccount": "<12 digits>",
//                     "context": { "<key>": "<value>" | ["<value>", ...] },
//                     "identityPolicies": ["<id>", ...], "resourcePolicy": "<id>" | null }, ... ],
//     "workers": 2 }
// Output (JSON on stdout), one result per request, in order:
//   { "evaluator": "@cloud-copilot/iam-simulate@<version>",
//     "results": [ { "decision": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied" | "Error",
//                    "allow": ["resource:<sid>", "identity:<policy>:<sid>"], "deny": [...],
//                    "ignoredContextKeys": [...], "fallback": "<why>", "error": "<message>" } ] }
//
// One process per batch: policies are validated once per worker, not once per request, and the
// requests are split across worker threads (default: one per core).
//
// Every request goes through runSimulation, the package's validated entry point. Two additions,
// both measured in tests/security/test_evaluator.py:
// - Speed: iam-simulate looks up the resource types and allowed context keys of every request
//   (pure functions of service, action and ARN) twice; that is 80 % of its run time. They are
//   memoized here. IAM_SIMULATE_NO_MEMO=1 turns this off.
// - The one known gap: runSimulation drops `kms:EncryptionContext:<key>` context keys (it only
//   matches variable keys written `prefix/<key>`), so every key-policy condition on the
//   encryption context would see the key as absent. When that is the only key dropped, the
//   request is decided again by runUnsafeSimulation (the package's unvalidated entry point)
//   with exactly the validated context plus those keys, and the result says so in "fallback".

import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const simulateEntry = require.resolve('@cloud-copilot/iam-simulate') // dist/cjs/index.js
const simulate = require(simulateEntry)
// iam-simulate's own dependency, at exactly the version it resolved (no second copy).
const iamPolicy = require(require.resolve('@cloud-copilot/iam-policy', { paths: [simulateEntry] }))

const ENCRYPTION_CONTEXT = /^kms:encryptioncontext:/i

function memoize(modulePath, name, keyOf) {
  let module
  try {
    module = require(join(dirname(simulateEntry), modulePath))
  } catch {
    return false
  }
  const original = module[name]
  if (typeof original !== 'function') return false
  const cache = new Map()
  module[name] = function (...args) {
    const key = keyOf(...args)
    if (key === undefined) return original.apply(this, args)
    if (!cache.has(key)) cache.set(key, original.apply(this, args))
    return cache.get(key)
  }
  return module[name] !== original
}

function enableMemoization() {
  if (process.env.IAM_SIMULATE_NO_MEMO === '1') return false
  const resourceTypes = memoize(
    'simulation_engine/resourceTypes.js',
    'getResourceTypesForAction',
    (service, action, resource) => `${service}\u0000${action}\u0000${resource}`
  )
  const contextKeys = memoize(
    'simulation_engine/contextKeys.js',
    'allowedContextKeysForRequest',
    (service, action, resource, abac, suggestedResourceType) =>
      suggestedResourceType === undefined
        ? `${service}\u0000${action}\u0000${resource}\u0000${abac}`
        : undefined
  )
  return resourceTypes && contextKeys
}

function decisiveStatements(analysis, kind) {
  const identity = analysis?.identityAnalysis?.[kind] ?? []
  const resource = analysis?.resourceAnalysis?.[kind] ?? []
  return [
    ...identity.map((s) => `identity:${s.policyId}:${s.explain.identifier}`),
    ...resource.map((s) => `resource:${s.explain.identifier}`)
  ]
}

async function evaluate(policies, requests) {
  const validated = new Map()
  const policy = (id, kind) => {
    const cacheKey = `${kind}\u0000${id}`
    if (!validated.has(cacheKey)) {
      const validate =
        kind === 'identity' ? iamPolicy.validateIdentityPolicy : iamPolicy.validateResourcePolicy
      validated.set(cacheKey, iamPolicy.createValidatedPolicy(policies[id], validate, { name: id }))
    }
    return validated.get(cacheKey)
  }
  const results = []
  for (const request of requests) {
    const simulation = {
      request: {
        principal: request.principal ?? simulate.anonymousPrincipal,
        action: request.action,
        resource: { resource: request.resource, accountId: request.resourceAccount },
        contextVariables: request.context ?? {}
      },
      identityPolicies: (request.identityPolicies ?? []).map((id) => ({
        name: id,
        policy: policy(id, 'identity')
      })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: request.resourcePolicy ? policy(request.resourcePolicy, 'resource') : undefined
    }
    let response
    try {
      response = await simulate.runSimulation(simulation, {})
    } catch (err) {
      results.push({ decision: 'Error', error: String(err) })
      continue
    }
    if (response.resultType === 'error') {
      results.push({ decision: 'Error', error: JSON.stringify(response.errors) })
      continue
    }
    if (response.resultType !== 'single') {
      // Only requests naming a resource with a wildcard produce these; ours name concrete ARNs.
      results.push({ decision: 'Error', error: `unexpected result type ${response.resultType}` })
      continue
    }
    const analysis = response.result.analysis
    const ignored = response.result.ignoredContextKeys ?? []
    const result = {
      decision: response.overallResult,
      allow: decisiveStatements(analysis, 'allowStatements'),
      deny: decisiveStatements(analysis, 'denyStatements'),
      ignoredContextKeys: ignored
    }
    const dropped = ignored.filter((key) => ENCRYPTION_CONTEXT.test(key))
    if (dropped.length > 0 && dropped.length === ignored.length) {
      try {
        result.decision = simulate.runUnsafeSimulation(simulation, {})
      } catch (err) {
        results.push({ decision: 'Error', error: `fallback: ${String(err)}` })
        continue
      }
      result.ignoredContextKeys = []
      result.fallback = `runUnsafeSimulation, keeping ${dropped.join(', ')}`
      result.allow = []
      result.deny = []
    }
    results.push(result)
  }
  return results
}

if (isMainThread) {
  const batch = JSON.parse(readFileSync(0, 'utf8'))
  const requests = batch.requests ?? []
  const workers = Math.max(1, Math.min(batch.workers ?? availableParallelism(), requests.length))
  const size = Math.ceil(requests.length / workers)
  const chunks = Array.from({ length: workers }, (_, i) => requests.slice(i * size, (i + 1) * size))
  const parts = await Promise.all(
    chunks.map(
      (chunk) =>
        new Promise((resolve, reject) => {
          const worker = new Worker(new URL(import.meta.url), {
            workerData: { policies: batch.policies ?? {}, requests: chunk }
          })
          worker.once('message', resolve)
          worker.once('error', reject)
        })
    )
  )
  const version = JSON.parse(readFileSync(join(dirname(simulateEntry), '../../package.json')))
    .version
  process.stdout.write(
    JSON.stringify({
      evaluator: `@cloud-copilot/iam-simulate@${version}`,
      memoized: parts.every((p) => p.memoized),
      results: parts.flatMap((p) => p.results)
    })
  )
} else {
  const memoized = enableMemoization()
  parentPort.postMessage({ memoized, results: await evaluate(workerData.policies, workerData.requests) })
}
